"""The files a frontier study writes: CSVs for spreadsheets, a plot, the resolved question and provenance.

Everything is rendered in memory first and then written as one set
(:mod:`planner.output_folder`: a staging folder swapped in whole), so an error while
solving or rendering leaves no output behind, and an interrupted write leaves the
previous complete set, never a mix.

- ``frontier.csv``: one row per Pareto point and mode (columns in README.md);
- ``comparison.csv``: both frontiers as step functions and their ratio;
- ``frontier.png``: both frontiers, and the disaggregated / aggregated ratio beneath;
- ``instance.yaml``: the instance as solved, scenario applied, model and hardware inline;
- ``provenance.json``: planner, solver and library versions, the input hash, the command.
"""

from __future__ import annotations

import io
import json
import math
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import yaml

from planner import __version__
from planner.compare import gain_summary, gains_at
from planner.frontier import FIXED_RATIO_MODE, Frontier
from planner.output_folder import write_output_set
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.thin_blocks import block_support, with_block_support

MODE_STYLE = {
    "disaggregated": ("tab:blue", "o", "disaggregated (dynamic rate matching)"),
    "aggregated": ("tab:orange", "s", "aggregated (co-located)"),
    FIXED_RATIO_MODE: ("tab:green", "^", "disaggregated, fixed prefill:decode ratio"),
}


def frontier_png(frontier: Frontier) -> bytes:
    """Both frontiers as step curves (tokens/s per GPU vs tokens/s per user), the ratio beneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}, constrained_layout=True
    )
    fleet = frontier.problem.instance.objective == "max_throughput"
    for mode, plans in frontier.plans.items():
        color, marker, label = MODE_STYLE[mode]
        x = [p.tokens_per_s_per_user for p in plans]
        y = [p.output_tokens_per_s if fleet else p.tokens_per_s_per_gpu for p in plans]
        top.step(x, y, where="pre", color=color, alpha=0.6)
        top.plot(x, y, marker=marker, linestyle="none", color=color, label=label)
    fleet_label = f"output tokens/s on {frontier.problem.max_gpus} GPUs"
    top.set_ylabel(fleet_label if fleet else "output tokens/s per GPU")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(loc="upper right")
    top.set_title(f"{frontier.problem.label}: {frontier.problem.question_text}", fontsize=9)
    comparison = frontier.comparison()
    ratio = comparison["disaggregated_over_aggregated"]
    bottom.step(comparison["tokens_per_s_per_user"], ratio, where="pre", color="black", label="gain")
    bottom.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    gains = gain_summary(comparison, _targets(frontier))
    if math.isfinite(gains["typical_gain"]):
        high = gains["decision_range_high_tokens_per_s_per_user"]
        bottom.axvspan(high, comparison["tokens_per_s_per_user"].max(), color="grey", alpha=0.15, lw=0)
        bottom.axhline(gains["typical_gain"], color="tab:blue", linewidth=0.8, label="typical gain")
        peak_at = gains["peak_gain_at_tokens_per_s_per_user"]
        bottom.plot(peak_at, gains["peak_gain"], "v", color="tab:red", label="peak")
        bottom.legend(loc="upper left", fontsize=7)
    bottom.set_ylabel("gain: disaggregated /\naggregated")
    bottom.set_xlabel("interactivity, output tokens/s per user")
    bottom.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def provenance_common(
    problem: Problem, calibration: Calibration | None, command: list[str], solver: str, solver_version: str
) -> dict:
    """What produced a study's files: versions, solver, input hash and command (results are deterministic)."""
    return {
        "planner_version": __version__,
        "solver": solver,
        "solver_version": solver_version,
        "pyomo_version": version("pyomo"),
        "python_version": platform.python_version(),
        "input_sha256": problem.input_hash(calibration),
        "instance": problem.instance.name,
        "instance_source": problem.source,
        "scenario": problem.scenario,
        "calibration": calibration.source if calibration is not None else "shipped defaults",
        "command": command,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def provenance(frontier: Frontier, calibration: Calibration | None, command: list[str]) -> dict:
    """Provenance of a frontier study, with its candidate counts and modes without a plan."""
    info = provenance_common(frontier.problem, calibration, command, frontier.solver, frontier.solver_version)
    info.update({"candidates": frontier.funnels, "modes_without_plan": frontier.infeasible})
    return info


def render_frontier(
    frontier: Frontier, calibration: Calibration | None, command: list[str]
) -> dict[str, bytes]:
    """Every output file of a frontier study, rendered in memory: name -> bytes."""
    resolved = yaml.safe_dump(frontier.problem.resolved(), sort_keys=False)
    header = f"# {frontier.problem.label} as solved: scenario applied, model and hardware specs inline.\n"
    return {
        "frontier.csv": with_block_support(
            frontier.frame(),
            block_support(calibration, frontier.problem.hardware, frontier.problem.instance.precision),
        )
        .to_csv(index=False)
        .encode(),
        "comparison.csv": frontier.comparison().to_csv(index=False).encode(),
        "frontier.png": frontier_png(frontier),
        "instance.yaml": (header + resolved).encode(),
        "provenance.json": (json.dumps(provenance(frontier, calibration, command), indent=2) + "\n").encode(),
    }


def write_outputs(out_dir: Path, files: dict[str, bytes], kind: str = "") -> list[Path]:
    """Write rendered files into ``out_dir`` as one set (:func:`planner.output_folder.write_output_set`)."""
    return write_output_set(Path(out_dir), files, command_line(), kind)[0]


def frontier_summary(frontier: Frontier) -> str:
    """A few lines for the terminal: points per mode, best values, the largest gain."""
    lines = []
    fleet = frontier.problem.instance.objective == "max_throughput"
    for mode, plans in frontier.plans.items():
        best = max(plans, key=lambda p: p.tokens_per_s_per_gpu)
        most = max(plans, key=lambda p: p.output_tokens_per_s)
        value = (
            f"most {most.output_tokens_per_s:,.0f} output tokens/s on {frontier.problem.max_gpus} GPUs"
            if fleet
            else f"best {best.tokens_per_s_per_gpu:,.1f} tokens/s per GPU"
        )
        lines.append(
            f"  {mode}: {len(plans)} Pareto points, interactivity {plans[0].tokens_per_s_per_user:,.1f}"
            f"-{plans[-1].tokens_per_s_per_user:,.1f} tokens/s per user, {value}"
        )
    for mode, why in frontier.infeasible.items():
        lines.append(f"  {mode}: no plan ({why})")
    comparison = frontier.comparison()
    lines += gain_lines(comparison, _targets(frontier), _gain_measure(frontier))
    if "fixed_ratio_over_dynamic" in comparison:
        share = comparison["fixed_ratio_over_dynamic"]
        if share.notna().any():
            lines.append(
                f"  fixed ratio keeps {share.min():.0%} to {share.max():.0%} of dynamic rate matching's "
                "tokens/s per GPU"
            )
        else:
            lines.append("  fixed ratio: no plan holds that ratio within 3% on this budget")
    return "\n".join(lines)


def _targets(frontier: Frontier) -> list[float]:
    return list(frontier.problem.instance.slo.tokens_per_s_per_user_targets or [])


def _gain_measure(frontier: Frontier) -> str:
    """What the gain divides: tokens/s per GPU, or total tokens/s on an owned fleet (max_throughput)."""
    if frontier.problem.instance.objective == "max_throughput":
        return f"output tokens/s on {frontier.problem.max_gpus} GPUs"
    return "tokens/s per GPU"


def gain_lines(comparison, targets, measure: str = "tokens/s per GPU") -> list[str]:
    """The gain as a user reads it: at the instance's targets, and over the decision range."""
    gains = gain_summary(comparison, targets)
    if not math.isfinite(gains["typical_gain"]):
        return []
    low = gains["decision_range_low_tokens_per_s_per_user"]
    high = gains["decision_range_high_tokens_per_s_per_user"]
    lines = [
        f"  gain = disaggregated / aggregated {measure}, the best plan of each at the same "
        "interactivity target (comparison.csv, the lower panel of frontier.png):"
    ]
    for target, gain in gains_at(comparison, targets).items():
        reading = f"{gain:.2f}x" if math.isfinite(gain) else "only one mode (or none) has a plan"
        lines.append(f"    at the instance's target of {target:g} tokens/s per user: {reading}")
    lines.append(
        f"    typically {gains['typical_gain']:.2f}x over {low:,.1f}-{high:,.1f} tokens/s per user, from "
        f"{gains['min_gain']:.2f}x to {gains['peak_gain']:.2f}x (at "
        f"{gains['peak_gain_at_tokens_per_s_per_user']:,.1f} tokens/s per user)"
    )
    if high < comparison["tokens_per_s_per_user"].max():
        lines.append(
            f"    beyond {high:,.1f} tokens/s per user neither mode keeps a quarter of the best "
            "throughput; the gain there is not summarized"
        )
    return lines


def command_line() -> list[str]:
    """The command as typed, for provenance."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
