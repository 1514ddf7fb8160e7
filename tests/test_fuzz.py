"""Property-based fuzzing of every input the planner reads (issue 15), with hypothesis.

The property, for specs, instances, ``--set`` paths and values, traces, measurement
files and sweep grids: the command exits 0, 1 or 2; never with a traceback (an
exception other than ``SystemExit``); writes nothing when it exits non-zero; and on
exit 0 every number it wrote is finite and consistent (``gpus = tp x pp x attention-DP``,
``tokens_per_s_per_user = 1000 / tpot_ms``).

Budgets: the default run is derandomized (the same examples every time, so CI is
stable) and small, a few seconds per target. The long profile, 40 times the examples
with fresh randomness, runs on demand::

    DISAGG_FUZZ_LONG=1 python -m pytest -m fuzz_long tests/test_fuzz.py
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from planner.cli import main  # noqa: E402
from planner.measurements import DEFAULT_MEASUREMENTS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = "llama-3.1-70b-h100-8k-1k"
MIX = "llama-3.1-70b-h100-diurnal"
LONG = os.environ.get("DISAGG_FUZZ_LONG") == "1"
EXAMPLES = Counter()
"""Examples run per target (printed with ``-s`` at the end of the module)."""
OUTCOMES = Counter()
"""(target, exit code) counts: what the fuzzing found."""

# --------------------------------------------------------------------------- hostile values

HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-2, max_value=100_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 8, 72, 0.5, 1.5, 1e300, -1e300, 1e-300, float("nan"), float("inf")]),
    st.sampled_from(
        ["fp8", "bf16", "fp16", "h100-sxm", "b200", "llama-3.1-8b", "min_gpus", "", "..", "x" * 300]
    ),
    st.text(max_size=20),
)
PLAUSIBLE = st.one_of(
    st.integers(min_value=1, max_value=70_000),
    st.floats(min_value=0.1, max_value=1e5),
    st.sampled_from([1, 2, 4, 8, 1024, 8192, True, False, "fp8", "bf16", "min_gpus"]),
)
"""Values near the valid range, so the fuzzing also reaches exit 0 and checks the numbers written."""
HOSTILE = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _leaf_paths(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf of nested mappings."""
    if isinstance(data, dict):
        out = []
        for key, value in data.items():
            out += _leaf_paths(value, f"{prefix}{key}.")
        return out or [prefix.rstrip(".")]
    return [prefix.rstrip(".")]


def _instance_data(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "instances" / f"{name}.yaml").read_text())


INSTANCE_PATHS = sorted(
    set(_leaf_paths(_instance_data(BASE)))
    | {
        "traffic.requests_per_s",
        "slo.tokens_per_s_per_user_targets",
        "cluster.max_gpus",
        "cluster.exclusive_nodes",
        "objective",
        "layouts_per_pool",
        "elastic.ramp_limit_gpus",
        "elastic.min_pool_gpus",
        "traffic",
        "slo",
        "nonsense",
    }
)
SET_PATHS = st.one_of(
    st.sampled_from(
        [
            *INSTANCE_PATHS,
            "model",
            "hardware",
            "model.num_layers",
            "model.moe.num_routed_experts",
            "model.attention",
            "hardware.scale_up_domain_gpus",
            "hardware.gpus_per_node",
            "hardware.hbm_capacity_gb",
            "hardware.fp8_dense_tflops_per_s",
            "traffic.isl_tokens.deeper",
            "precision.x",
            "",
            ".",
            "traffic..isl_tokens",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=30),
)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


# --------------------------------------------------------------------------- the property


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def check_outcome(target: str, result: Result, outputs: list[Path]) -> None:
    """Exit 0/1/2, no traceback, one ``error:`` line on non-zero exits, nothing written then."""
    EXAMPLES[target] += 1
    OUTCOMES[(target, result.exit_code)] += 1
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(("error: ", "Error: ")), result.stderr
        assert len(last) < 3000, "an error message quotes too much"
        for path in outputs:
            assert not path.exists(), f"{path} written on exit {result.exit_code}"


def check_candidates_csv(path: Path) -> None:
    """Finite, consistent numbers in a written candidate table."""
    table = pd.read_csv(path)
    numeric = table.select_dtypes("number")
    assert not numeric.isin([math.inf, -math.inf]).any().any()
    assert (table["gpus"] == table["tp"] * table["pp"] * table["attention_dp"]).all()
    decode = table[table["phase"] != "prefill"]
    if len(decode):
        assert (decode["tpot_ms"] > 0).all()
        assert ((decode["tokens_per_s_per_user"] * decode["tpot_ms"] - 1000).abs() < 1e-6 * 1000).all()
    for column in ("memory_per_gpu_gb", "requests_per_s", "output_tokens_per_s_per_gpu"):
        assert (table[column] > 0).all(), column
        assert table[column].map(math.isfinite).all(), column


def fuzz(strategy: st.SearchStrategy, check: Callable[[Any], None], examples: int) -> None:
    """Run ``check`` on ``examples`` draws (derandomized unless the long profile is on)."""
    count = examples * 40 if LONG else examples

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=not LONG,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(strategy)
    def property_holds(value: Any) -> None:
        check(value)

    property_holds()


# --------------------------------------------------------------------------- targets


def instance_case(changes: list[tuple[str, Any]]) -> None:
    data = _instance_data(BASE)
    for dotted, value in changes:
        _set(data, dotted, value)
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "inst.yaml"
        spec.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        csv = Path(folder) / "out" / "c.csv"
        result = run("candidates", spec, "--phase", "decode", "--csv", csv)
        check_outcome("instance", result, [csv])
        if result.exit_code == 0:
            check_candidates_csv(csv)


INSTANCE_CHANGES = st.lists(
    st.tuples(st.sampled_from(INSTANCE_PATHS), st.one_of(PLAUSIBLE, HOSTILE)), min_size=1, max_size=3
)


def set_case(case: tuple[list[tuple[str, str]], str]) -> None:
    pairs, phase = case
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "c.csv"
        sets = [arg for path, text in pairs for arg in ("--set", f"{path}={text}")]
        result = run("candidates", BASE, "--phase", phase, "--csv", csv, *sets)
        check_outcome("--set", result, [csv])
        if result.exit_code == 0:
            check_candidates_csv(csv)


SET_TEXT = st.one_of(
    PLAUSIBLE.map(lambda v: str(v).lower()),
    HOSTILE.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()),
    st.text(max_size=20),
    st.sampled_from(
        ["1e5", "16384", "true", "null", "[1, 2]", "{a: 1}", "&a [*a]", "b200", "h100-sxm", "fp4"]
    ),
)
SET_CASES = st.tuples(
    st.lists(st.tuples(SET_PATHS, SET_TEXT), min_size=1, max_size=3),
    st.sampled_from(["decode", "prefill", "aggregated"]),
)


def spec_case(case: tuple[str, list[tuple[str, Any]]]) -> None:
    kind, changes = case
    source = ROOT / ("models/llama-3.1-8b.yaml" if kind == "model" else "hardware/h100-sxm.yaml")
    data = yaml.safe_load(source.read_text())
    for dotted, value in changes:
        _set(data, dotted, value)
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / f"{kind}.yaml"
        spec.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        result = run(
            "evaluate",
            f"--{kind}",
            spec,
            *(("--hardware", "h100-sxm") if kind == "model" else ("--model", "llama-3.1-8b")),
            "--phase",
            "decode",
            "--tp",
            "1",
            "--batch",
            "4",
            "--isl",
            "1024",
            "--osl",
            "128",
            "--json",
        )
        check_outcome(f"{kind} spec", result, [])
        if result.exit_code == 0:
            import json

            values = json.loads(result.stdout)
            for key, value in values.items():
                if isinstance(value, float):
                    assert math.isfinite(value), key


def _spec_paths(kind: str) -> list[str]:
    source = ROOT / ("models/llama-3.1-8b.yaml" if kind == "model" else "hardware/h100-sxm.yaml")
    return [*_leaf_paths(yaml.safe_load(source.read_text())), "moe.num_routed_experts", "mla", "extra"]


SPEC_CASES = st.one_of(
    *(
        st.tuples(
            st.just(kind),
            st.lists(
                st.tuples(st.sampled_from(_spec_paths(kind)), st.one_of(PLAUSIBLE, HOSTILE)), max_size=3
            ),
        )
        for kind in ("model", "hardware")
    )
)

TRACE_CELL = st.one_of(
    st.sampled_from(["1", "0", "-1", "2.5", "inf", "-inf", "nan", "1e300", "1e12", "", "x", "0.5", "24"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.-e+TZ:", max_size=12),
)
TRACE_START = st.one_of(
    st.sampled_from(
        ["2026-01-05T00:00:00Z", "2026-01-05T01:00:00Z", "2262-04-11T00:00:00Z", "1677-09-21", "x"]
    ),
    st.text(max_size=12),
)


def trace_case(case: tuple[list[tuple[str, str, str, str]], bool]) -> None:
    """Traces go through :func:`planner.trace.load_trace` (an elastic solve per example is too slow)."""
    from planner.errors import SpecError
    from planner.problem import resolve
    from planner.trace import load_trace

    rows, drop_column = case
    columns = ["period_start", "duration_h", "requests_per_s", "share_chat", "share_rag", "share_reasoning"]
    lines = [",".join(columns[:3] if drop_column else columns)]
    for start, duration, rate, share in rows:
        try:
            rest = repr(1.0 - float(share))
        except ValueError:
            rest = share
        cells = [start, duration, rate] if drop_column else [start, duration, rate, share, "0", rest]
        lines.append(",".join(c.replace(",", ";").replace("\n", " ").replace("\r", " ") for c in cells))
    classes = resolve(MIX).request_classes
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.csv"
        path.write_text("\n".join(lines) + "\n")
        EXAMPLES["trace"] += 1
        try:
            trace = load_trace(path, classes)
        except SpecError as err:
            message = str(err)
        else:
            message = ""
    if message:
        OUTCOMES[("trace", 2)] += 1
        assert len(message) < 3000
        return
    OUTCOMES[("trace", 0)] += 1
    assert trace.periods >= 1
    for values in (trace.duration_h, trace.requests_per_s, trace.shares):
        assert all(math.isfinite(v) for v in values.ravel())
    assert (trace.duration_h > 0).all()
    assert (trace.requests_per_s >= 0).all()
    ends = trace.start[:-1] + pd.to_timedelta(trace.duration_h[:-1], unit="h")
    assert (ends == trace.start[1:]).all()


def _contiguous(values: list[tuple[int, float, float]]) -> list[tuple[str, str, str, str]]:
    """A well-formed trace: contiguous hourly periods with the drawn lengths, loads and shares."""
    rows, start = [], pd.Timestamp("2026-01-05T00:00:00Z")
    for hours, rate, share in values:
        rows.append((start.isoformat(), str(hours), repr(rate), repr(share)))
        start += pd.Timedelta(hours=hours)
    return rows


TRACE_CASES = st.tuples(
    st.one_of(
        st.lists(st.tuples(TRACE_START, TRACE_CELL, TRACE_CELL, TRACE_CELL), min_size=0, max_size=3),
        st.lists(
            st.tuples(st.integers(1, 4), st.floats(0, 50), st.sampled_from([0.0, 0.5, 1.0])),
            min_size=1,
            max_size=3,
        ).map(_contiguous),
    ),
    st.booleans(),
)


MEASUREMENT_COLUMNS = [
    "precision",
    "isl",
    "osl",
    "mode",
    "instances",
    "gpus_per_instance",
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "batch",
    "metric",
    "value",
    "two_batch_overlap",
    "model",
]
MEASUREMENT_CELL = st.one_of(
    st.sampled_from(
        ["1", "0", "-1", "1.5", "inf", "nan", "1e30", "", "max", "fp16", "fp8", "decode", "true"]
    ),
    st.text(alphabet="0123456789.-e+xamx", max_size=22),
)


def measurement_case(changes: list[tuple[int, str, str]]) -> None:
    frame = pd.read_csv(DEFAULT_MEASUREMENTS, dtype=str, keep_default_na=False).iloc[[0, 8, 41]]
    frame = frame.reset_index(drop=True)
    for row, column, value in changes:
        frame.loc[row, column] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        frame.to_csv(path, index=False)
        out = Path(folder) / "cal.yaml"
        result = run("calibrate", "--measurements", path, "--out", out, "--no-loo")
        check_outcome("measurements", result, [out])
        if result.exit_code == 0:
            assert "nan" not in out.read_text().lower()


MEASUREMENT_CASES = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(MEASUREMENT_COLUMNS), MEASUREMENT_CELL),
    min_size=1,
    max_size=3,
)

GRID_FIELDS = st.sampled_from(
    [
        "traffic.isl_tokens",
        "cluster.max_nodes",
        "cluster.max_gpus",
        "slo.ttft_ms_max",
        "model",
        "hardware",
        "hardware.scale_up_domain_gpus",
        "precision",
        "scenario",
        "traffic",
        "name",
        "traffic.isl_tokens.deeper",
        "nonsense",
    ]
)


def grid_case(case: tuple[dict[str, Any], Any]) -> None:
    axes, fixed = case
    grid: dict[str, Any] = {"base": BASE, "axes": axes}
    if fixed is not None:
        grid["set"] = fixed
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grid.yaml"
        path.write_text(yaml.safe_dump(grid, sort_keys=False, allow_unicode=True))
        result = run("sweep", path, "--dry-run")
        check_outcome("grid", result, [])
        if result.exit_code == 0:
            assert "nothing was run" in result.stdout


GRID_CASES = st.tuples(
    st.dictionaries(GRID_FIELDS, st.one_of(st.lists(HOSTILE, max_size=3), HOSTILE), min_size=0, max_size=2),
    st.one_of(st.none(), st.dictionaries(GRID_FIELDS, HOSTILE, max_size=2), HOSTILE),
)


YAML_BYTES = st.one_of(
    st.text(max_size=200).map(str.encode),
    st.lists(
        st.sampled_from(
            ["a:", " b: 1", "- x", "&a [1]", "*a", "{", "}", "[", "]", "<<: *a", "!!python/object:x", "\t"]
        ),
        max_size=20,
    ).map(lambda lines: "\n".join(lines).encode()),
    st.binary(max_size=60),
)


def yaml_bytes_case(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inst.yaml"
        path.write_bytes(data)
        csv = Path(folder) / "c.csv"
        check_outcome("yaml bytes", run("candidates", path, "--phase", "decode", "--csv", csv), [csv])


TARGETS: dict[str, tuple[st.SearchStrategy, Callable[[Any], None], int]] = {
    "instance": (INSTANCE_CHANGES, instance_case, 40),
    "set": (SET_CASES, set_case, 40),
    "spec": (SPEC_CASES, spec_case, 30),
    "trace": (TRACE_CASES, trace_case, 30),
    "measurements": (MEASUREMENT_CASES, measurement_case, 15),
    "grid": (GRID_CASES, grid_case, 30),
    "yaml": (YAML_BYTES, yaml_bytes_case, 40),
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz(target: str) -> None:
    strategy, check, examples = TARGETS[target]
    fuzz(strategy, check, examples)


@pytest.mark.fuzz_long
@pytest.mark.skipif(not LONG, reason="the long fuzz profile runs with DISAGG_FUZZ_LONG=1")
@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_long(target: str) -> None:
    strategy, check, examples = TARGETS[target]
    fuzz(strategy, check, examples)


def teardown_module() -> None:
    if EXAMPLES:
        print(f"\nfuzz examples per target: {dict(EXAMPLES)}; total {sum(EXAMPLES.values())}")
        print(f"exit codes per target: {dict(sorted(OUTCOMES.items()))}")


def test_the_fuzz_strategies_reach_success_and_every_refusal() -> None:
    """The fuzzing is not vacuous: hand-picked draws exit 0, 1 and 2 through the same checks."""
    before = Counter(OUTCOMES)
    instance_case([])  # the base instance as is
    instance_case([("traffic.isl_tokens", True)])
    set_case(([("cluster.max_nodes", "1")], "decode"))
    set_case(([("traffic.isl_tokens", "1e300")], "decode"))
    grid_case(({"cluster.max_nodes": [1, 2]}, None))
    new = OUTCOMES - before
    assert new[("instance", 0)] == 1
    assert new[("instance", 2)] == 1
    assert new[("--set", 0)] == 1
    assert new[("--set", 2)] == 1
    assert new[("grid", 0)] == 1
