"""The ``disagg`` command line: a thin click layer over the planner's modules.

Every command reports user mistakes (:class:`~planner.errors.PlannerError`) as one
paragraph on stderr with a non-zero exit status (2 for bad input, 1 for an
unanswerable question); ``--debug`` shows the traceback instead. Output paths are
checked before any work, and output folders are written as one set by
:mod:`planner.output_folder` (single files atomically by :mod:`planner.report`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from planner import __version__
from planner.cli_options import (
    MAX_BATCH,
    MAX_LAYOUT_SIZE,
    MAX_LOAD_SCALE,
    MAX_RATIO,
    MAX_TIME_LIMIT_S,
    MAX_TOKENS,
    MAX_TOKENS_PER_S_PER_USER,
    finite,
)
from planner.errors import InfeasibleError, PlannerError, SpecError
from planner.jsonable import json_text
from planner.lazy_default import LazyDefaultOption
from planner.output_folder import check_output_folder, check_writable, write_output_set
from planner.progress import reporting
from planner.report import write_text_atomic
from planner.run_limits import SWEEP_RESUME_TEXT, run_deadline

if TYPE_CHECKING:  # the commands import pandas and the performance model when they run: --help stays light
    import pandas as pd

    from planner.thin_blocks import BlockSupport

_PRECISIONS = click.Choice(["bf16", "fp8", "fp4"])
_LAYOUT_SIZE = click.IntRange(min=1, max=MAX_LAYOUT_SIZE)


@contextlib.contextmanager
def format_errors(debug: bool) -> Iterator[None]:
    """Turn planner errors into one message and an exit status; tracebacks only with --debug.

    SIGTERM becomes ``SystemExit(143)`` for the command's duration, so cleanup runs (pool
    workers stopped, a half-written output folder removed) as it does on Ctrl-C.
    """
    previous = _exit_on_sigterm()
    try:
        yield
    except PlannerError as err:
        if debug:
            raise
        click.echo("error: " + " ".join(str(err).split()), err=True)
        sys.exit(err.exit_code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm():  # type: ignore[no-untyped-def]
    """Install a SIGTERM handler raising SystemExit (main thread only); the previous handler, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminate)


_debug = click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
_calibration = click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Efficiency calibration YAML (from `disagg calibrate`); default: the shipped fit.",
)


def _verbosity(func):
    """``--quiet`` / ``-v``: how much progress a long command reports on stderr (planner.progress)."""
    func = click.option(
        "-v",
        "--verbose",
        "verbose",
        is_flag=True,
        help="Also show every MIP solve and the solver's own log on stderr.",
    )(func)
    return click.option(
        "-q", "--quiet", is_flag=True, help="No progress lines on stderr (results and errors only)."
    )(func)


def _level(quiet: bool, verbose: bool) -> int:
    from planner.progress import NORMAL, QUIET, VERBOSE

    if quiet and verbose:
        raise SpecError("--quiet and --verbose contradict each other; drop one", field="--quiet")
    return QUIET if quiet else VERBOSE if verbose else NORMAL


_request_class = click.option(
    "--request-class",
    default=None,
    help="For an instance whose traffic is a mix: the class whose shape (ISL/OSL) to price.",
)


def _scenario(func):
    """``--scenario NAME`` and repeatable ``--set FIELD=VALUE`` what-if overrides of an instance."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="FIELD=VALUE",
        help="Override an instance field for this run (dotted, e.g. traffic.isl_tokens=16384 or "
        "hardware.scale_up_domain_gpus=8); repeatable, applied after --scenario.",
    )(func)
    return click.option(
        "--scenario", default=None, help="Apply one of the instance's named what-if scenarios."
    )(func)


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, object]:
    """``("a.b=3", "hardware=b200")`` -> ``{"a.b": 3, "hardware": "b200"}`` (values parsed as YAML)."""
    import yaml

    from planner.safe_input import excerpt, yaml_load

    changes: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"--set expects FIELD=VALUE, got {excerpt(pair)}; e.g. --set traffic.isl_tokens=16384"
            )
        try:
            changes[key.strip()] = yaml_load(text)
        except yaml.YAMLError:
            raise SpecError(f"--set {key}: value {excerpt(text)} is not valid YAML; quote strings") from None
    return changes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="disagg")
def main() -> None:
    """Plan LLM inference deployments: disaggregated (prefill/decode pools) or co-located."""


# --------------------------------------------------------------------------- list


@main.command("list")
@click.argument("kind", type=click.Choice(["models", "hardware", "instances"]))
@_debug
def list_command(kind: str, debug: bool) -> None:
    """List the shipped specs of one KIND with a one-line summary each.

    Example: disagg list hardware
    """
    from planner.catalog import names

    with format_errors(debug):
        for name in names(kind):
            click.echo(f"{name:<28} {_summary(kind, name)}")


def _summary(kind: str, name: str) -> str:
    from planner.catalog import load_hardware, load_instance, load_model
    from planner.humanize import memory_text
    from planner.perf.architecture import Architecture

    if kind == "models":
        spec = load_model(name)
        arch = Architecture.from_spec(spec, "bf16")
        shape = f"MoE {spec.moe.num_routed_experts}x{spec.moe.num_experts_per_token}" if spec.moe else "dense"
        return (
            f"{arch.total_params / 1e9:7.1f}B params ({arch.active_params / 1e9:.1f}B active), "
            f"{spec.num_layers} layers, {spec.attention.upper()}, {shape}"
        )
    if kind == "hardware":
        hw = load_hardware(name)
        return (
            f"{memory_text(hw.hbm_capacity_gb)} at {hw.hbm_bandwidth_gb_per_s / 1000:.2f} TB/s, "
            f"{'/'.join(hw.supported_precisions)}, scale-up domain {hw.scale_up_domain_gpus} GPUs"
        )
    inst = load_instance(name)
    return inst.description or f"{inst.model} on {inst.hardware}"


# --------------------------------------------------------------------------- evaluate

_EVALUATE_KEYS = (
    "gpus",
    "fits",
    "memory_per_gpu_gb",
    "weights_per_gpu_gb",
    "kv_cache_per_gpu_gb",
    "ttft_ms",
    "tpot_ms",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_gpu",
    "input_tokens_per_s_per_gpu",
    "output_tokens_per_s",
    "input_tokens_per_s",
    "requests_per_s",
    "kv_cache_bytes_per_request",
    "kv_transfer_ms",
    "compute_ms",
    "memory_ms",
    "communication_ms",
    "overhead_ms",
    "worst_inter_token_gap_ms",
)


@main.command("evaluate")
@click.option(
    "--instance",
    default=None,
    help="Take model, hardware, precision, ISL and OSL from a planning instance (name or YAML path).",
)
@click.option("--model", default=None, help="Catalog model name or path to a model YAML.")
@click.option("--hardware", default=None, help="Catalog hardware name or path to a hardware YAML.")
@click.option("--precision", type=_PRECISIONS, default=None, help="Weight precision [default: fp8].")
@click.option(
    "--phase",
    type=click.Choice(["prefill", "decode", "aggregated"]),
    required=True,
    help="The work the instance does: a prefill or decode pool's, or co-located (both).",
)
@click.option("--tp", type=_LAYOUT_SIZE, required=True, help="Tensor-parallel size.")
@click.option("--pp", type=_LAYOUT_SIZE, default=1, show_default=True, help="Pipeline stages.")
@click.option("--ep", type=_LAYOUT_SIZE, default=1, show_default=True, help="Expert-parallel size.")
@click.option(
    "--attention-dp",
    type=_LAYOUT_SIZE,
    default=1,
    show_default=True,
    help="Attention data-parallel ranks: copies of the attention (and its KV cache) per stage, each "
    "serving its own requests; GPUs = TP x PP x attention-DP.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1, max=MAX_BATCH),
    required=True,
    help="Requests in flight per instance.",
)
@click.option(
    "--isl", type=click.IntRange(min=1, max=MAX_TOKENS), default=None, help="Input tokens per request."
)
@click.option(
    "--osl", type=click.IntRange(min=1, max=MAX_TOKENS), default=None, help="Output tokens per request."
)
@click.option(
    "--chunked-prefill/--no-chunked-prefill",
    default=True,
    show_default=True,
    help="Aggregated only: piggyback prompt chunks on decode steps.",
)
@click.option(
    "--prefill-chunk-tokens",
    type=click.IntRange(min=1, max=MAX_TOKENS),
    cls=LazyDefaultOption,
    default_from=("planner.perf.phases", "PREFILL_CHUNK_TOKENS"),
    show_default=True,
    help="Prompt chunk: per pipeline pass in prefill with PP > 1 (chunked pipeline prefill), per rank "
    "and step in aggregated chunked prefill (candidate tables search it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_request_class
@_scenario
@_calibration
@_debug
def evaluate_command(
    instance: str | None,
    model: str | None,
    hardware: str | None,
    precision: str | None,
    phase: str,
    tp: int,
    pp: int,
    ep: int,
    attention_dp: int,
    batch: int,
    isl: int | None,
    osl: int | None,
    chunked_prefill: bool,
    prefill_chunk_tokens: int,
    as_json: bool,
    request_class: str | None,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """Predict what one serving instance of a layout does.

    Example: disagg evaluate --model llama-3.1-70b --hardware h100-sxm --phase decode
    --tp 4 --batch 64 --isl 4096 --osl 512

    Explicit options override what ``--instance`` supplies.
    """
    from planner.catalog import load_hardware, load_model
    from planner.perf import Layouts, evaluate
    from planner.perf.calibration import load_calibration
    from planner.perf.quantization import for_deployment
    from planner.problem import resolve
    from planner.thin_blocks import block_support

    with format_errors(debug):
        model_spec = load_model(model) if model else None
        hardware_spec = load_hardware(hardware) if hardware else None
        block = None  # the instance's quantization block, at the instance's precision only
        if instance:
            problem = resolve(instance, scenario, parse_overrides(overrides))
            model_spec = model_spec or problem.model
            hardware_spec = hardware_spec or problem.hardware
            if precision in (None, problem.instance.precision):
                block = problem.instance.quantization
            precision = precision or problem.instance.precision
            if request_class is not None or isl is None or osl is None:
                shape = problem.request_class(request_class)  # a mix must name its class
                isl, osl = isl or shape.isl_tokens, osl or shape.osl_tokens
        elif scenario or overrides or request_class:
            raise SpecError("--scenario, --set and --request-class apply to an instance; add --instance NAME")
        precision = precision or "fp8"
        given = (("--model", model_spec), ("--hardware", hardware_spec), ("--isl", isl), ("--osl", osl))
        for flag, value in given:
            if value is None:
                raise SpecError(f"missing {flag}; give it, or --instance NAME to take it from an instance")
        model, hardware = model_spec.name, hardware_spec.name
        # --precision naming another precision than the instance's starts from that precision's
        # defaults; the model's checkpoint weight format fills what the block leaves out.
        formats = for_deployment(model_spec, precision, block)  # type: ignore[arg-type]
        frame = evaluate(
            model_spec,
            hardware_spec,
            formats,
            phase,  # type: ignore[arg-type]
            Layouts.of(tp, pp, ep, attention_dp, batch),
            isl,
            osl,
            calibration=(calibration := load_calibration(calibration_path)),
            chunked_prefill=chunked_prefill,
            prefill_chunk_tokens=prefill_chunk_tokens,
        )
        support = block_support(calibration, hardware_spec, precision)  # type: ignore[arg-type]
        row = frame.iloc[0]
        result = {
            "model": model,
            "hardware": hardware,
            "precision": precision,
            "weight_format": formats.weights,
            "kv_cache_dtype": formats.kv_cache,
            "phase": phase,
            "tp": tp,
            "pp": pp,
            "ep": ep,
            "attention_dp": attention_dp,
            "batch": batch,
            "isl_tokens": isl,
            "osl_tokens": osl,
            "prefill_chunk_tokens": prefill_chunk_tokens,
            **{k: _plain(row[k]) for k in _EVALUATE_KEYS},
            **support.as_dict(),
        }
        if as_json:
            click.echo(json_text(result))
        else:
            click.echo(_evaluate_text(result))
        _warn_thin(support, hardware, precision)


def _plain(value: object) -> object:
    """Numpy scalars to JSON-ready Python values (NaN becomes null)."""
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(float(value)) else float(value)
    return value


def _evaluate_text(r: dict) -> str:
    from planner.humanize import bytes_text

    def num(v: object, fmt: str = ",.1f") -> str:
        return "n/a" if v is None else format(v, fmt)

    kv = r["kv_cache_bytes_per_request"]
    kv_bytes = "n/a" if kv is None else f"{bytes_text(kv)} ({kv:,.0f} bytes)"

    fits = "yes" if r["fits"] else "NO (exceeds usable HBM; lower the batch or add GPUs)"
    lines = [
        f"{r['model']} on {r['hardware']} ({r['precision']}), {r['phase']}: "
        f"TP{r['tp']} PP{r['pp']} EP{r['ep']} attention-DP{r['attention_dp']}, batch {r['batch']}, "
        f"ISL {r['isl_tokens']} / OSL {r['osl_tokens']}",
        f"  formats                     {r['weight_format']} weights, {r['kv_cache_dtype']} KV cache",
        f"  GPUs                        {r['gpus']}",
        f"  fits in memory              {fits}",
        f"  memory per GPU              {num(r['memory_per_gpu_gb'])} GB "
        f"(weights {num(r['weights_per_gpu_gb'])}, KV cache {num(r['kv_cache_per_gpu_gb'])})",
    ]
    if r["phase"] == "prefill":
        lines.append(
            f"  ttft_ms                     {num(r['ttft_ms'])} (KV transfer {num(r['kv_transfer_ms'])})"
        )
    else:
        lines.append(f"  tpot_ms                     {num(r['tpot_ms'], ',.2f')}")
        lines.append(f"  worst_inter_token_gap_ms    {num(r['worst_inter_token_gap_ms'], ',.2f')}")
        if r["phase"] == "aggregated":
            lines.append(f"  ttft_ms                     {num(r['ttft_ms'])}")
    lines += [
        f"  tokens_per_s_per_user       {num(r['tokens_per_s_per_user'])}",
        f"  output_tokens_per_s_per_gpu {num(r['output_tokens_per_s_per_gpu'])}",
        f"  input_tokens_per_s_per_gpu  {num(r['input_tokens_per_s_per_gpu'])}",
        f"  requests_per_s              {num(r['requests_per_s'], ',.3f')}",
        f"  KV cache per request        {kv_bytes}",
        "  where the time goes (ms):   "
        f"compute {num(r['compute_ms'], ',.2f')}, memory {num(r['memory_ms'], ',.2f')}, "
        f"communication {num(r['communication_ms'], ',.2f')}, overhead {num(r['overhead_ms'], ',.2f')}",
        f"  calibration block           {r['calibration_block']} ({r['calibration_rows']} measured rows)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- import-hf


@main.command("import-hf")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="Catalog name for the model (lower-case, e.g. my-model).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the ModelSpec YAML (default: ./<name>.yaml).",
)
@_debug
def import_hf_command(config: str, name: str, out: str | None, debug: bool) -> None:
    """Write a ModelSpec YAML from a Hugging Face CONFIG (config.json).

    Example: disagg import-hf path/to/config.json --name my-model
    """
    from planner.hf_import import import_hf_config, model_spec_to_yaml

    with format_errors(debug):
        target = Path(out or f"{name}.yaml")
        check_writable(target, folder=False)
        spec = import_hf_config(config, name)
        write_text_atomic(
            target, model_spec_to_yaml(spec, header=f"Imported from {config} by disagg import-hf")
        )
        click.echo(f"wrote {target}")


# --------------------------------------------------------------------------- validate / calibrate


@main.command("validate")
@click.option(
    "--measurements",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measurements CSV (format: planner/measurements.py); default: the shipped reference file.",
)
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), default=None, help="Also write the table.")
@click.option(
    "--cross-validate",
    "cross_validate",
    type=click.Choice(["system"]),
    default=None,
    help="Leave one system (all rows of one model x hardware pair) out, refit on the rest from the "
    "documented priors, predict it; report the error per family (dense/MoE x GPU generation).",
)
@_calibration
@_verbosity
@_debug
def validate_command(
    measurements: str | None,
    csv_out: str | None,
    cross_validate: str | None,
    calibration_path: str | None,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Predict every measured row and print measured, predicted and error.

    Example: disagg validate --csv validation.csv

    With --cross-validate system the fits ignore --calibration's fitted values (they may
    contain the held-out systems) and start from the documented priors.
    """
    from planner.measurements import load_measurements, validate
    from planner.perf.calibration import load_calibration

    with format_errors(debug), reporting(_level(quiet, verbose)):
        if csv_out:
            check_writable(Path(csv_out), folder=False, option="--csv")
        frame = load_measurements(measurements)
        if cross_validate:
            table = _cross_validation(frame)
        else:
            table = validate(frame, load_calibration(calibration_path))
            click.echo(_validation_text(table))
        if csv_out:
            write_text_atomic(Path(csv_out), table.to_csv(index=False))


def _cross_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-system-out table, printed per row and per family; family columns joined per row."""
    from planner.crossval import cross_validate_systems, family_summary

    table = cross_validate_systems(frame)
    lines = [f"{'id':<44} {'family':<16} {'measured':>10} {'held out':>10} {'error':>8}"]
    for _, r in table.iterrows():
        held = "skipped" if np.isnan(r["cv_predicted"]) else f"{r['cv_predicted']:,.0f}"
        error = "" if np.isnan(r["cv_error_fraction"]) else f"{r['cv_error_fraction']:+.1%}"
        lines.append(f"{r['id']:<44} {r['family']:<16} {r['measured']:>10,.0f} {held:>10} {error:>8}")
    summary = family_summary(table)
    lines.append("")
    lines.append(
        f"{'family':<16} {'rows':>5} {'systems':>8} {'in-sample |err|':>16} {'held-out median':>16} "
        f"{'held-out |err|':>15} {'worst':>8}"
    )
    for family, r in summary.iterrows():
        lines.append(
            f"{family:<16} {int(r['rows']):>5} {int(r['systems']):>8} "
            f"{r['in_sample_median_abs_error_fraction']:>16.1%} {r['cv_median_error_fraction']:>+16.1%} "
            f"{r['cv_median_abs_error_fraction']:>15.1%} {r['cv_worst_abs_error_fraction']:>8.1%}"
        )
    lines.append(
        f"leave-one-system-out over {table.attrs['systems']} systems in {table.attrs['wall_time_s']:.0f} s "
        "(error = predicted / measured - 1, median per family)"
    )
    click.echo("\n".join(lines))
    per_family = summary.drop(index="all").add_prefix("family_").reset_index()
    return table.merge(per_family.drop(columns=["family_rows", "family_systems"]), on="family", how="left")


def _validation_text(table: pd.DataFrame) -> str:
    loo = "loo_error_fraction" in table.columns
    header = f"{'id':<42} {'measured':>10} {'predicted':>10} {'error':>8}"
    lines = [header + (f" {'LOO error':>10}" if loo else "")]
    for _, r in table.iterrows():
        if r["skip_reason"]:
            lines.append(f"{r['id']:<42} {r['measured']:>10,.0f} {'skipped':>10}  {r['skip_reason']}")
        else:
            lines.append(
                f"{r['id']:<42} {r['measured']:>10,.0f} {r['predicted']:>10,.0f} {r['error_fraction']:>+8.1%}"
                + (f" {r['loo_error_fraction']:>+10.1%}" if loo else "")
            )
    errors = table["error_fraction"].abs().dropna()
    skipped = int((table["skip_reason"] != "").sum())
    if len(errors):
        lines.append(
            f"{len(errors)} rows predicted, {skipped} skipped: median |error| {errors.median():.1%}, "
            f"worst {errors.max():.1%}"
        )
    else:
        lines.append(f"no row could be predicted ({skipped} skipped)")
    return "\n".join(lines)


@main.command("calibrate")
@click.option("--measurements", type=click.Path(dir_okay=False), required=True, help="Measurements CSV.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Calibration YAML to write.")
@click.option("--no-loo", is_flag=True, help="Skip the leave-one-out generalization estimate.")
@click.option(
    "--allow-underdetermined",
    is_flag=True,
    help="Fit blocks with fewer distinct rows than free constants (refused otherwise); the constants "
    "the rows cannot identify stay near their starting values.",
)
@_calibration
@_verbosity
@_debug
def calibrate_command(
    measurements: str,
    out: str,
    no_loo: bool,
    allow_underdetermined: bool,
    calibration_path: str | None,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Fit the efficiency blocks to measurements; print in-sample and leave-one-out error.

    Example: disagg calibrate --measurements my_benchmarks.csv --out calibration.yaml

    Refuses (exit 2) a block with fewer distinct rows than free constants unless
    --allow-underdetermined, and a file with no predictable row; warns about constants
    no row constrains and constants that end on a bound.
    """
    import yaml

    from planner.calibrate import fit_blocks, leave_one_out
    from planner.measurements import load_measurements, require_predictable_rows, validate
    from planner.perf.calibration import load_calibration

    with format_errors(debug), reporting(_level(quiet, verbose)):
        check_writable(Path(out), folder=False)
        frame = load_measurements(measurements)
        start = load_calibration(calibration_path)
        require_predictable_rows(validate(frame, start), measurements)
        fitted, fits = fit_blocks(
            frame,
            start,
            source=f"disagg calibrate on {Path(measurements).name}",
            allow_underdetermined=allow_underdetermined,
            path=measurements,
        )
        table = validate(frame, fitted)
        if not no_loo:
            table["loo_error_fraction"] = leave_one_out(frame, fitted).to_numpy()
        click.echo(_validation_text(table))
        if not no_loo:
            loo = table["loo_error_fraction"].abs().dropna()
            if len(loo):
                click.echo(f"leave-one-out: median |error| {loo.median():.1%}, worst {loo.max():.1%}")
        for fit in fits:
            for warning in fit.warnings():
                click.echo(f"warning: {warning}", err=True)
        header = (
            "# Efficiency calibration written by `disagg calibrate`; see planner/perf/calibration.py\n"
            "# for what each constant means and its bounds.\n"
        )
        write_text_atomic(Path(out), header + yaml.safe_dump(fitted.model_dump(), sort_keys=False))
        click.echo(f"wrote {out}")


@main.command("import-bench")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out", type=click.Path(dir_okay=False), required=True, help="Measurements CSV to write or extend."
)
@click.option(
    "--sidecar", type=click.Path(dir_okay=False), default=None, help="YAML with the deployment fields."
)
@click.option("--model", default=None, help="Catalog model name (or model YAML) that was served.")
@click.option("--hardware", default=None, help="Catalog hardware name (or hardware YAML) it ran on.")
@click.option(
    "--precision", type=_PRECISIONS, default=None, help="Weight precision of the served checkpoint."
)
@click.option("--tp", type=click.IntRange(min=1), default=None, help="Tensor-parallel size [default: 1].")
@click.option("--pp", type=click.IntRange(min=1), default=None, help="Pipeline stages [default: 1].")
@click.option("--ep", type=click.IntRange(min=1), default=None, help="Expert-parallel size [default: 1].")
@click.option(
    "--attention-dp",
    type=click.IntRange(min=1),
    default=None,
    help="Attention data-parallel ranks [default: 1].",
)
@click.option(
    "--instances", type=click.IntRange(min=1), default=None, help="Engine instances behind the client."
)
@_debug
def import_bench_command(
    results: tuple[str, ...], out: str, sidecar: str | None, debug: bool, **given
) -> None:
    """Turn saved benchmark results into measurement rows (throughput, TTFT, TPOT).

    Reads `vllm bench serve --save-result` JSON and AIPerf / GenAI-Perf profile_export JSON.

    Example: disagg import-bench run.json --model llama-3.1-8b --hardware h100-sxm --precision fp8
    --out mine.csv, then disagg calibrate --measurements mine.csv --out calibration.yaml
    """
    import pandas as pd

    from planner.bench_import import append_rows, bench_rows, load_sidecar
    from planner.measurements import check_measurements

    with format_errors(debug):
        deployment = {**load_sidecar(sidecar), **{k: v for k, v in given.items() if v is not None}}
        rows = pd.concat([bench_rows(path, deployment) for path in results], ignore_index=True)
        target = Path(out)
        merged = append_rows(rows, target)
        check_measurements(merged.astype({"batch": str}), target)  # catalog names, layout: before writing
        write_text_atomic(target, merged.to_csv(index=False))
        click.echo(
            f"{len(rows)} rows from {len(results)} result file(s) written to {out} ({len(merged)} rows)"
        )


# --------------------------------------------------------------------------- candidates


@main.command("candidates")
@click.argument("instance")
@click.option(
    "--phase",
    type=click.Choice(["prefill", "decode", "aggregated"]),
    required=True,
    help="Which pool's candidates to build.",
)
@click.option(
    "--csv", "csv_out", type=click.Path(dir_okay=False), required=True, help="Candidate table CSV to write."
)
@_request_class
@_scenario
@_calibration
@_debug
def candidates_command(
    instance: str,
    phase: str,
    csv_out: str,
    request_class: str | None,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """Write the pruned candidate table of one phase of INSTANCE (catalog name or YAML path).

    Example: disagg candidates llama-3.1-70b-h100-8k-1k --phase decode --csv decode.csv

    Every layout (TP, PP, EP, attention-DP) and batch size is priced; rows that do not
    fit in memory, miss the TTFT limit or are dominated are dropped (planner/space.py).
    """
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve
    from planner.thin_blocks import with_block_support

    with format_errors(debug):
        check_writable(Path(csv_out), folder=False, option="--csv")
        problem = resolve(instance, scenario, parse_overrides(overrides))
        calibration = load_calibration(calibration_path)
        table = problem.candidate_table(
            phase,  # type: ignore[arg-type]
            calibration,
            request_class=request_class,
        )
        support = _problem_support(problem, calibration)
        write_text_atomic(Path(csv_out), with_block_support(table, support).to_csv(index=False))
        click.echo(_candidates_text(problem.label, table, csv_out))
        _warn_thin(support, problem.hardware.name, problem.instance.precision)


def _candidates_text(name: str, table: pd.DataFrame, csv_out: str) -> str:
    funnel, attrs = table.attrs["funnel"], table.attrs
    phase = attrs["phase"]
    ttft = (
        "no TTFT limit for decode"
        if phase == "decode"
        else f"{funnel['meet_ttft']:,} meet TTFT <= {attrs['ttft_ms_max']:g} ms"
    )
    text = (
        f"{name}, {phase}: {funnel['evaluated']:,} layouts x batch sizes evaluated with up to "
        f"{attrs['max_gpus']} GPUs per instance, {funnel['fit_memory']:,} fit in memory, {ttft}, "
        f"{funnel['non_dominated']:,} non-dominated candidates written to {csv_out}. "
    )
    if phase == "prefill":
        best = table.loc[table["requests_per_s_per_gpu"].idxmax()]
        return text + (
            f"Best {best.input_tokens_per_s_per_gpu:,.0f} input tokens/s per GPU "
            f"({best.requests_per_s_per_gpu:,.3f} requests/s per GPU, TP{best.tp} PP{best.pp} "
            f"EP{best.ep} attention-DP{best.attention_dp}, batch {best.batch}); "
            f"TTFT from {table['ttft_ms'].min():,.1f} to {table['ttft_ms'].max():,.1f} ms."
        )
    best = table.loc[table["output_tokens_per_s_per_gpu"].idxmax()]
    return text + (
        f"Best {best.output_tokens_per_s_per_gpu:,.0f} output tokens/s per GPU (TP{best.tp} PP{best.pp} "
        f"EP{best.ep} attention-DP{best.attention_dp}, batch {best.batch}, "
        f"{best.tokens_per_s_per_user:,.1f} tokens/s per user); interactivity from "
        f"{table['tokens_per_s_per_user'].min():,.1f} to {table['tokens_per_s_per_user'].max():,.1f} "
        "tokens/s per user."
    )


# --------------------------------------------------------------------------- thin calibration blocks


def _problem_support(problem, calibration) -> BlockSupport:
    """The calibration block behind an instance's predictions and its row count."""
    from planner.thin_blocks import block_support

    return block_support(calibration, problem.hardware, problem.instance.precision)


def _warn_thin(support: BlockSupport, hardware: str, precision: str) -> None:
    """A thin block's warning on stderr (the answer itself stays on stdout)."""
    warning = support.warning(hardware, precision)
    if warning:
        click.echo(warning, err=True)


# --------------------------------------------------------------------------- frontier and plan

_solver = click.option(
    "--solver",
    type=click.Choice(["highs", "ortools"]),
    default="highs",
    show_default=True,
    help="MIP solver: HiGHS, or OR-Tools (SCIP) as an independent check.",
)
_time_limit = click.option(
    "--time-limit-s",
    type=finite(min=0.1, max=MAX_TIME_LIMIT_S),
    default=60.0,
    show_default=True,
    help="Seconds each MIP solve may take. Every reported plan is proven optimal, so a solve that "
    "hits the limit stops the command with an error (exit 2) saying what to change.",
)

# --write-lp (issue 12): export the model each mode solves, to read or to hand to another solver.
_write_lp = click.option(
    "--write-lp",
    "write_lp",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Also write each mode's MIP (CPLEX LP format) to FILE with _<mode> before its suffix "
    "(model.lp -> model_disaggregated.lp, model_aggregated.lp), as set for its first solve.",
)

_node_limit = click.option(
    "--node-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Branch-and-bound nodes per MIP solve: the deterministic solver limit (the same answer on a "
    "busy machine) [default: 1,000,000; elastic: 200,000].",
)


# --objective (issue 11): which question frontier and plan answer.
def _objective(func):
    """``--objective NAME``: the instance's objective for this run (an override applied after --set)."""
    from typing import get_args

    from planner.specs import Objective

    @functools.wraps(func)
    def run(*args, objective: str | None = None, overrides: tuple[str, ...] = (), **kwargs):
        extra = (f"objective={objective}",) if objective else ()
        return func(*args, overrides=(*overrides, *extra), **kwargs)

    return click.option(
        "--objective",
        type=click.Choice(get_args(Objective)),
        default=None,
        help="What to optimize: max_tokens_per_s_per_gpu (efficiency of the GPUs used), max_throughput "
        "(the most requests/s the whole budget serves: an owned fleet), min_gpus or min_cost (serve "
        "traffic.requests_per_s) [default: the instance's objective].",
    )(run)


_run_time_limit = click.option(
    "--run-time-limit-s",
    type=finite(min=1, max=MAX_TIME_LIMIT_S),
    default=None,
    help="Wall-time limit for the whole run, seconds (a solve in progress finishes first, within "
    "--time-limit-s); hitting it exits 1 [default: none].",
)


@main.command("frontier")
@click.argument("instance")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the outputs."
)
@click.option(
    "--fixed-ratio",
    type=finite(min=0, min_open=True, max=MAX_RATIO),
    default=None,
    help="Also trace disaggregated plans with prefill:decode GPUs held at this ratio (+-3%).",
)
@_solver
@_time_limit
@_write_lp
@_objective
@_run_time_limit
@_node_limit
@_scenario
@_calibration
@_verbosity
@_debug
def frontier_command(
    instance: str,
    out_dir: str,
    fixed_ratio: float | None,
    solver: str,
    time_limit_s: float,
    write_lp: str | None,
    run_time_limit_s: float | None,
    node_limit: int | None,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Trace the exact Pareto frontier of throughput vs tokens/s per user, both modes.

    Throughput is tokens/s per GPU, or total tokens/s on the budget with --objective max_throughput.

    Example: disagg frontier deepseek-r1-gb200-16k-2k --out out/r1

    Writes OUT/frontier.csv, comparison.csv, frontier.png, instance.yaml and
    provenance.json (columns in the README). Nothing is written if no plan exists.
    """
    from planner.frontier import solve_frontier
    from planner.outputs import command_line, frontier_summary, render_frontier
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve

    with format_errors(debug), reporting(_level(quiet, verbose)), run_deadline(run_time_limit_s):
        check_output_folder(Path(out_dir))
        problem = resolve(instance, scenario, parse_overrides(overrides))
        calibration = load_calibration(calibration_path)
        frontier = solve_frontier(
            problem,
            calibration,
            solver=solver,
            fixed_ratio=fixed_ratio,
            time_limit_s=time_limit_s,
            write_lp=Path(write_lp) if write_lp else None,
            **({"node_limit": node_limit} if node_limit else {}),
        )
        files = render_frontier(frontier, calibration, command_line())
        if problem.instance.cluster.fleet:  # issue 14: the mixed fleet's own frontier, tokens per dollar
            from planner.fleet_advice import fleet_frontier

            files["fleet_frontier.csv"] = fleet_frontier(problem, calibration).to_csv(index=False).encode()
        paths, replaced = write_output_set(Path(out_dir), files, command_line(), "frontier")
        from planner.advise import headroom_text, objective_question

        click.echo(
            f"{problem.label}: {problem.question_text}; exact frontier with {solver}; "
            f"objective: {objective_question(problem)}"
        )
        if headroom_text(problem):
            click.echo(headroom_text(problem))
        click.echo(frontier_summary(frontier))
        click.echo(f"wrote {', '.join(str(p) for p in paths)}" + (f"; {replaced}" if replaced else ""))
        _warn_thin(_problem_support(problem, calibration), problem.hardware.name, problem.instance.precision)


@main.command("plan")
@click.argument("instance")
@click.option(
    "--min-tokens-per-s-per-user",
    "target",
    type=finite(min=0, min_open=True, max=MAX_TOKENS_PER_S_PER_USER),
    default=None,
    help="Interactivity every user must get, output tokens/s per user [default: the instance's "
    "slo.tokens_per_s_per_user_targets].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one answer per target.")
@_solver
@_time_limit
@_write_lp
@_objective
@_run_time_limit
@_node_limit
@_scenario
@_calibration
@_debug
def plan_command(
    instance: str,
    target: float | None,
    as_json: bool,
    solver: str,
    time_limit_s: float,
    write_lp: str | None,
    run_time_limit_s: float | None,
    node_limit: int | None,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """The best deployment of INSTANCE at an interactivity target, and the co-located alternative.

    Example: disagg plan deepseek-r1-gb200-16k-2k --min-tokens-per-s-per-user 50

    For min_gpus / min_cost instances: the fewest GPUs (cheapest nodes) serving
    traffic.requests_per_s at the target; for max_throughput the most requests/s the
    whole budget serves.
    """
    from planner.advise import advice_json, advice_text, advise
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve

    with format_errors(debug), run_deadline(run_time_limit_s):
        problem = resolve(instance, scenario, parse_overrides(overrides))
        targets = [target] if target is not None else problem.instance.slo.tokens_per_s_per_user_targets
        if not targets:
            raise SpecError(
                "give --min-tokens-per-s-per-user X, or list slo.tokens_per_s_per_user_targets in "
                "the instance",
                field="--min-tokens-per-s-per-user",
            )
        calibration = load_calibration(calibration_path)
        lp = Path(write_lp) if write_lp else None  # the first target's models
        answers = [
            advise(
                problem,
                t,
                calibration,
                solver=solver,
                time_limit_s=time_limit_s,
                write_lp=lp if i == 0 else None,
                **({"node_limit": node_limit} if node_limit else {}),
            )
            for i, t in enumerate(targets)
        ]
        support = _problem_support(problem, calibration)
        fleets = []
        if problem.instance.cluster.fleet:  # issue 14: the mixed fleet's plan and its split
            from planner.fleet_advice import fleet_answer

            fleets = [fleet_answer(problem, t, calibration) for t in targets]
        if as_json:
            from planner.fleet_advice import fleet_json

            payload = [{**advice_json(a), **support.as_dict()} for a in answers]
            for entry, fleet in zip(payload, fleets, strict=False):
                entry["fleet"] = fleet_json(fleet)
            click.echo(json_text(payload))
        else:
            from planner.fleet_advice import fleet_text

            click.echo("\n\n".join([*(advice_text(a) for a in answers), *(fleet_text(f) for f in fleets)]))
        _warn_thin(support, problem.hardware.name, problem.instance.precision)


# --------------------------------------------------------------------------- fleet (issue 14)


@main.command("fleet")
@click.argument("instance")
@click.option(
    "--min-tokens-per-s-per-user",
    "target",
    type=finite(min=0, min_open=True, max=MAX_TOKENS_PER_S_PER_USER),
    required=True,
    help="Interactivity every user must get, output tokens/s per user.",
)
@_scenario
@_calibration
@_debug
def fleet_command(
    instance: str,
    target: float,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """The most output tokens per dollar on a mixed fleet (cluster.fleet), each instance on one GPU type.

    Example: disagg fleet llama-3.1-70b-h100-h200-fleet --min-tokens-per-s-per-user 30

    Both modes, each with its split across GPU types and the same question on each type alone.
    """
    from planner.fleet_advice import fleet_answer, fleet_text
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve

    with format_errors(debug):
        problem = resolve(instance, scenario, parse_overrides(overrides))
        click.echo(fleet_text(fleet_answer(problem, target, load_calibration(calibration_path))))


# --------------------------------------------------------------------------- export (issue 11)


def interactivity_targets(problem, given: list[float]) -> list[float]:
    """The targets asked on the command line, else the instance's ``slo.tokens_per_s_per_user_targets``."""
    targets = list(given) or list(problem.instance.slo.tokens_per_s_per_user_targets or [])
    if not targets:
        raise SpecError(
            "give --min-tokens-per-s-per-user X, or list slo.tokens_per_s_per_user_targets in the instance",
            field="--min-tokens-per-s-per-user",
        )
    return targets


@main.command("export")
@click.argument("source", metavar="PLAN_JSON|INSTANCE")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the files."
)
@click.option(
    "--min-tokens-per-s-per-user",
    "target",
    type=finite(min=0, min_open=True, max=MAX_TOKENS_PER_S_PER_USER),
    default=None,
    help="With an INSTANCE: the interactivity to plan at [default: its first slo target].",
)
@click.option("--answer", type=click.IntRange(min=0), default=0, show_default=True,
              help="With a PLAN_JSON of several targets: which one (0-based).")  # fmt: skip
@click.option("--mode", type=click.Choice(["disaggregated", "aggregated"]), default=None,
              help="Export this mode's plan [default: the recommended one].")  # fmt: skip
@click.option(
    "--model-path", default=None, help="Hugging Face repository to serve [default: from the model spec]."
)
@click.option("--image", default=None, help="Container image of the Dynamo workers.")
@click.option("--name", default=None, help="Name of the Dynamo deployment [default: from the instance].")
@_solver
@_time_limit
@_objective
@_scenario
@_calibration
@_debug
def export_command(
    source: str,
    out_dir: str,
    target: float | None,
    answer: int,
    mode: str | None,
    model_path: str | None,
    image: str | None,
    name: str | None,
    solver: str,
    time_limit_s: float,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """Turn a plan into engine launch commands (vLLM, SGLang, TensorRT-LLM) and a Dynamo deployment.

    Example: disagg plan llama-3.1-70b-h100-8k-1k --min-tokens-per-s-per-user 60 --json > plan.json;
    disagg export plan.json --out deploy/

    or directly: disagg export llama-3.1-70b-h100-8k-1k --min-tokens-per-s-per-user 60 --out deploy/

    Writes OUT/vllm.sh, sglang.sh, trtllm.sh, trtllm-<pool>.yaml, dynamo.yaml and deployment.json.
    """
    from planner.export import DYNAMO_IMAGE, deployment_from_answer, render_export
    from planner.outputs import write_outputs

    with format_errors(debug):
        check_output_folder(Path(out_dir))
        chosen = _export_answer(
            source, answer, target, solver, time_limit_s, scenario, overrides, calibration_path
        )
        deployment = deployment_from_answer(chosen, mode=mode, model_path=model_path)
        label = name or str(chosen.get("instance") or "deployment")
        safe = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")[:63] or "deployment"
        files = render_export(deployment, name=safe, image=image or DYNAMO_IMAGE)
        paths = write_outputs(Path(out_dir), files, "export")
        click.echo(
            f"{deployment.source}: {deployment.mode}, "
            + ", ".join(f"{e.name} {e.instances} x {e.gpus_per_instance} GPUs" for e in deployment.engines)
        )
        click.echo(f"wrote {', '.join(str(p) for p in paths)}")


def _export_answer(
    source, answer, target, solver, time_limit_s, scenario, overrides, calibration_path
) -> dict:
    """One answer of ``plan --json``: read from a file, or planned now for an instance."""
    import json as json_module

    from planner.advise import advice_json, advise
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve

    path = Path(source)
    if path.suffix == ".json" or path.is_file() and not source.endswith((".yaml", ".yml")):
        if scenario or overrides or target is not None:
            raise SpecError(
                "--scenario, --set and --min-tokens-per-s-per-user apply to an INSTANCE, not a plan JSON"
            )
        try:
            payload = json_module.loads(path.read_text())
        except OSError as err:
            raise SpecError(f"cannot read the plan ({err.strerror})", path=source) from None
        except ValueError as err:
            raise SpecError(
                f"not JSON ({err}); write it with `disagg plan INSTANCE --json`", path=source
            ) from None
        if not isinstance(payload, list) or not payload or not all(isinstance(a, dict) for a in payload):
            raise SpecError("expected the list `disagg plan --json` prints", path=source)
        if answer >= len(payload):
            last = len(payload) - 1
            raise SpecError(
                f"--answer {answer}: the file has answers 0..{last}", path=source, field="--answer"
            )
        return payload[answer]
    problem = resolve(source, scenario, parse_overrides(overrides))
    chosen = interactivity_targets(problem, [] if target is None else [target])[0]
    calibration = load_calibration(calibration_path)
    return advice_json(advise(problem, chosen, calibration, solver=solver, time_limit_s=time_limit_s))


# --------------------------------------------------------------------------- capacity (issue 11)


@main.command("capacity")
@click.argument("instance")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the table."
)
@click.option(
    "--load",
    "loads",
    multiple=True,
    type=finite(min=0, min_open=True, max=MAX_TOKENS_PER_S_PER_USER),
    help="Offered load, requests/s; repeatable [default: traffic.requests_per_s].",
)
@click.option(
    "--min-tokens-per-s-per-user",
    "targets",
    multiple=True,
    type=finite(min=0, min_open=True, max=MAX_TOKENS_PER_S_PER_USER),
    help="Interactivity target, tokens/s per user; repeatable [default: slo.tokens_per_s_per_user_targets].",
)
@click.option("--xlsx", is_flag=True, help="Also write capacity.xlsx.")
@_solver
@_time_limit
@_scenario
@_calibration
@_debug
def capacity_command(
    instance: str,
    out_dir: str,
    loads: tuple[float, ...],
    targets: tuple[float, ...],
    xlsx: bool,
    solver: str,
    time_limit_s: float,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    debug: bool,
) -> None:
    """A capacity table: offered load x interactivity -> GPUs, nodes, layouts, $/h, $/Mtoken, kW.

    Example: disagg capacity llama-3.1-70b-h100-8k-1k --load 1 --load 2 --load 4
    --min-tokens-per-s-per-user 30 --min-tokens-per-s-per-user 60 --out out/capacity --xlsx

    Each cell is the fewest GPUs (min_cost instances: the cheapest nodes) serving that load at
    that interactivity within the instance's budget, both modes; each mode's model is built
    once and re-solved. Writes OUT/capacity.csv (and capacity.xlsx).
    """
    from planner.capacity import capacity_table, render_capacity
    from planner.outputs import write_outputs
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve

    with format_errors(debug):
        check_output_folder(Path(out_dir))
        problem = resolve(instance, scenario, parse_overrides(overrides))
        load_list = list(loads) or (
            [problem.instance.traffic.requests_per_s] if problem.instance.traffic.requests_per_s else []
        )
        if not load_list:
            raise SpecError(
                "give --load REQUESTS_PER_S (repeatable) or set traffic.requests_per_s", field="--load"
            )
        target_list = interactivity_targets(problem, list(targets))
        frame = capacity_table(
            problem, load_list, target_list, load_calibration(calibration_path), solver=solver,
            time_limit_s=time_limit_s,
        )  # fmt: skip
        paths = write_outputs(Path(out_dir), render_capacity(frame, xlsx=xlsx), "capacity")
        best = frame[frame["recommended"]]
        click.echo(
            f"{problem.label}: {len(load_list)} loads x {len(target_list)} targets, "
            f"{int(frame['feasible'].sum())} of {len(frame)} mode cells feasible, "
            f"{len(best)} cells with a recommended plan"
        )
        click.echo(f"wrote {', '.join(str(p) for p in paths)}")


# --------------------------------------------------------------------------- sweep


@main.command("sweep")
@click.argument("grid_path", metavar="GRID", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the results (required unless --dry-run); re-running the command resumes there.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes of the local pool [default: the CPUs available].",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the cells on a Dask distributed cluster instead (e.g. tcp://host:8786); its workers "
    "need the planner installed.",
)
@click.option("--dry-run", is_flag=True, help="Print the cells and design points to evaluate, run nothing.")
@click.option("--xlsx", is_flag=True, help="Also write sweep.xlsx (summary and frontiers sheets).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@_solver
@_time_limit
@_run_time_limit
@_calibration
@_verbosity
@_debug
def sweep_command(
    grid_path: str,
    out_dir: str | None,
    workers: int | None,
    scheduler: str | None,
    dry_run: bool,
    xlsx: bool,
    progress: bool,
    solver: str,
    time_limit_s: float,
    run_time_limit_s: float | None,
    calibration_path: str | None,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Trace the frontier of every cell of a GRID of what-if questions (format: README, Sweeps).

    Example: disagg sweep instances/sweeps/paper-trends.yaml --out out/trends

    Writes OUT/frontiers.parquet, frontiers.csv, summary.csv, provenance.json (and
    sweep.xlsx with --xlsx). Finished cells are kept in OUT/cells/, so an
    interrupted sweep resumes where it stopped; a cell without a plan records its
    error in summary.csv and the others go on.
    """
    from planner.errors import InfeasibleError
    from planner.grid import load_grid
    from planner.outputs import command_line
    from planner.perf.calibration import load_calibration
    from planner.sweep import (
        SweepIncompleteError,
        check_sweep_folder,
        dry_run_text,
        resolve_cells,
        run_sweep,
        sweep_summary_text,
    )

    with format_errors(debug), run_deadline(run_time_limit_s, SWEEP_RESUME_TEXT):
        progress = progress and not _level(quiet, verbose) < 0
        if scheduler and workers:
            raise SpecError(
                "--workers sizes the local pool; with --scheduler the Dask cluster's workers run the "
                "cells; drop one of them",
                field="--workers",
            )
        if out_dir is None and not dry_run:
            raise SpecError("missing --out DIR, the folder for the results (or --dry-run to only count)")
        if scheduler:
            from planner.extras import require

            require("distributed", "dask", "--scheduler (a Dask cluster)")
        if out_dir is not None:
            check_sweep_folder(Path(out_dir))
        grid = load_grid(grid_path)
        calibration = load_calibration(calibration_path)
        cells = resolve_cells(grid, calibration, solver, progress=progress)
        if dry_run:
            click.echo(dry_run_text(grid, cells, Path(out_dir) if out_dir else None))
            return
        try:
            result = run_sweep(
                grid,
                Path(out_dir),  # type: ignore[arg-type]
                calibration,
                solver=solver,
                time_limit_s=time_limit_s,
                workers=workers,
                scheduler=scheduler,
                xlsx=xlsx,
                progress=progress,
                command=command_line(),
                cells=cells,
            )
        except KeyboardInterrupt:
            click.echo(
                f"interrupted: the finished cells are kept in {Path(out_dir) / 'cells'}; run the same "
                "command again to resume",
                err=True,
            )
            sys.exit(130)
        click.echo(sweep_summary_text(result))
        click.echo(f"wrote {', '.join(str(p) for p in result.paths)}")
        if result.retried_errors:
            raise SweepIncompleteError(
                f"{len(result.retried_errors)} cells did not finish (a solver time limit or an unexpected "
                f"failure; first: {result.retried_errors[0]}); run the same command again to retry them"
            )
        if result.failed == result.cells:
            raise InfeasibleError(
                f"no cell of {grid_path} has a plan; each cell's reason is in the error column of "
                f"{Path(out_dir) / 'summary.csv'}"
            )


# --------------------------------------------------------------------------- elastic


@main.command("elastic")
@click.argument("instance")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), required=True, help="Traffic trace CSV."
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the outputs."
)
@click.option(
    "--min-tokens-per-s-per-user",
    "target",
    type=finite(min=0, max=MAX_TOKENS_PER_S_PER_USER),
    default=0.0,
    show_default=True,
    help="Interactivity every request gets, on top of each class's tokens_per_s_per_user_min.",
)
@click.option(
    "--fixed-ratio",
    type=finite(min=0, min_open=True, max=MAX_RATIO),
    default=None,
    help="Also plan elastically with prefill:decode GPUs held at this ratio (+-3%).",
)
@click.option(
    "--load-scale",
    type=finite(min=0, min_open=True, max=MAX_LOAD_SCALE),
    default=1.0,
    show_default=True,
    help="Multiply the trace's requests/s (the same day on a bigger or smaller service).",
)
@_solver
@click.option(
    "--time-limit-s",
    type=finite(min=0.1, max=MAX_TIME_LIMIT_S),
    default=120.0,
    show_default=True,
    help="Seconds each MIP solve may take. The static and dynamic plans must be proven optimal: "
    "hitting the limit there is an error (exit 2). The best-fixed-ratio search gives each candidate "
    "ratio min(this, 15) s and keeps the best plan found; the summary says how many were not proven "
    "optimal.",
)
@_run_time_limit
@_node_limit
@_scenario
@_calibration
@_verbosity
@_debug
def elastic_command(
    instance: str,
    trace_path: str,
    out_dir: str,
    target: float,
    fixed_ratio: float | None,
    load_scale: float,
    solver: str,
    time_limit_s: float,
    run_time_limit_s: float | None,
    node_limit: int | None,
    scenario: str | None,
    overrides: tuple[str, ...],
    calibration_path: str | None,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Plan pools period by period over a traffic trace: static, fixed-ratio and dynamic.

    Example: disagg elastic llama-3.1-70b-h100-diurnal --trace instances/traces/diurnal-24h.csv --out out/day

    Writes OUT/periods.csv, summary.csv, elastic.png, instance.yaml and provenance.json.
    If some period cannot be served within the budget, every other period is still
    planned, the unserved ones are marked, and the exit status is 1.
    """
    from planner.elastic import plan_elastic
    from planner.elastic_outputs import elastic_summary, render_elastic
    from planner.outputs import command_line
    from planner.perf.calibration import load_calibration
    from planner.problem import resolve
    from planner.trace import load_trace

    with format_errors(debug), reporting(_level(quiet, verbose)), run_deadline(run_time_limit_s):
        check_output_folder(Path(out_dir))
        problem = resolve(instance, scenario, parse_overrides(overrides))
        trace = load_trace(trace_path, problem.request_classes)
        calibration = load_calibration(calibration_path)
        result = plan_elastic(
            problem,
            trace,
            calibration,
            min_tokens_per_s_per_user=target,
            fixed_ratio=fixed_ratio,
            load_scale=load_scale,
            solver=solver,
            time_limit_s=time_limit_s,
            **({"node_limit": node_limit} if node_limit else {}),
        )
        files = render_elastic(result, calibration, command_line())
        paths, replaced = write_output_set(Path(out_dir), files, command_line(), "elastic")
        click.echo(
            f"{problem.label}: {problem.question_text}; {trace.periods} periods, {trace.hours:g} h, "
            f"with {solver}"
        )
        click.echo(elastic_summary(result))
        click.echo(f"wrote {', '.join(str(p) for p in paths)}" + (f"; {replaced}" if replaced else ""))
        if result.unserved_periods:
            from planner.humanize import plural

            first = result.unserved_periods[0]
            raise InfeasibleError(
                f"{trace.path}: row {first + 2} (period {trace.start[first].isoformat()}) and "
                f"{plural(len(result.unserved_periods) - 1, 'other period')} cannot be served within the "
                f"budget of {problem.max_gpus} GPUs; raise cluster.max_gpus, lower --load-scale, or relax "
                "the SLO"
            )


# --------------------------------------------------------------------------- schema


@main.command("schema")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the reference here (the repository keeps it in docs/schema.md); default: print it.",
)
@_debug
def schema_command(out: str | None, debug: bool) -> None:
    """The reference of every instance, model and hardware field, generated from the specs.

    Example: disagg schema --out docs/schema.md
    """
    from planner.schema import schema_markdown

    with format_errors(debug):
        text = schema_markdown()
        if out is None:
            click.echo(text, nl=False)
            return
        write_text_atomic(Path(out), text)
        click.echo(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
