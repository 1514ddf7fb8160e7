"""The files an elastic study writes: per-period and summary CSVs, a plot, the question and provenance.

Rendered in memory first and written as one set, like :mod:`planner.outputs`
(:mod:`planner.output_folder`), so an error leaves nothing half-written.

- ``periods.csv``: one row per period and strategy (load, GPUs per pool, ratio, tokens/s/GPU, SLO met);
- ``summary.csv``: GPU-hours, cost and savings against static, per strategy;
- ``elastic.png``: load and GPUs per pool over time for every strategy;
- ``instance.yaml`` and ``provenance.json`` as for ``disagg frontier``.
"""

from __future__ import annotations

import io
import json

import yaml

from planner.elastic import ElasticResult
from planner.humanize import plural
from planner.outputs import provenance_common

STRATEGY_STYLE = {
    "static": ("tab:grey", "static (peak provisioning)"),
    "fixed_ratio": ("tab:green", "elastic, best fixed ratio"),
    "fixed_ratio_given": ("tab:olive", "elastic, given fixed ratio"),
    "dynamic": ("tab:blue", "elastic, dynamic rate matching"),
}


def elastic_png(result: ElasticResult) -> bytes:
    """Load (top), then prefill and decode GPUs per strategy over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (load_ax, prefill_ax, decode_ax) = plt.subplots(
        3, 1, figsize=(9, 8), sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1]}, constrained_layout=True
    )
    trace = result.trace
    hours = trace.start
    load_ax.step(hours, trace.requests_per_s * result.load_scale, where="post", color="black")
    load_ax.set_ylabel("load, requests/s")
    shares = load_ax.twinx()
    for k, name in enumerate(trace.classes):
        shares.plot(hours, trace.shares[:, k], linestyle=":", label=f"share {name}")
    shares.set_ylabel("class share")
    shares.set_ylim(0, 1)
    shares.legend(loc="upper left", fontsize=8)
    for name, strategy in result.strategies.items():
        color, label = STRATEGY_STYLE[name]
        periods = strategy.periods
        prefill_ax.step(hours, periods["prefill_gpus"], where="post", color=color, label=label)
        decode_ax.step(hours, periods["decode_gpus"], where="post", color=color, label=label)
    prefill_ax.set_ylabel("prefill GPUs")
    decode_ax.set_ylabel("decode GPUs")
    decode_ax.set_xlabel("period start (UTC)")
    prefill_ax.legend(loc="upper left", fontsize=8)
    for ax in (load_ax, prefill_ax, decode_ax):
        ax.grid(alpha=0.3)
    load_ax.set_title(
        f"{result.problem.label}: {result.problem.question_text}, {result.trace.periods} periods",
        fontsize=9,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def render_elastic(result: ElasticResult, calibration, command: list[str]) -> dict[str, bytes]:
    """Every output file of an elastic study, rendered in memory: name -> bytes."""
    problem = result.problem
    info = provenance_common(problem, calibration, command, result.solver, result.solver_version)
    info.update(
        {
            "trace": result.trace.path,
            "load_scale": result.load_scale,
            "min_tokens_per_s_per_user": result.target_tokens_per_s_per_user,
            "model_build_s": result.build_time_s,
            "unserved_periods": result.unserved_periods,
        }
    )
    header = f"# {problem.label} as solved: scenario applied, model and hardware specs inline.\n"
    return {
        "periods.csv": result.periods_frame().to_csv(index=False).encode(),
        "summary.csv": result.summary_frame().to_csv(index=False).encode(),
        "elastic.png": elastic_png(result),
        "instance.yaml": (header + yaml.safe_dump(problem.resolved(), sort_keys=False)).encode(),
        "provenance.json": (json.dumps(info, indent=2, default=str) + "\n").encode(),
    }


def elastic_summary(result: ElasticResult) -> str:
    """A few lines for the terminal."""
    summary = result.summary_frame()
    lines = []
    for _, row in summary.iterrows():
        ratio = f", ratio {row.fixed_ratio:.3g}" if row.fixed_ratio == row.fixed_ratio else ""
        saved = f", {row.savings_vs_static_fraction:.1%} less than static" if row.strategy != "static" else ""
        unserved = (
            f"; does NOT serve {plural(int(row.periods_unserved), 'period')} at the SLO within the budget"
            if row.periods_unserved
            else ""
        )
        note = f"; {row.note}" if row.note else ""
        unproven = (
            f"; NOT proven optimal ({row.termination}): within {row.mip_gap:.2%} of the optimum"
            if row.termination != "optimal"
            else ""
        )
        lines.append(
            f"  {row.strategy}: {row.gpu_hours:,.1f} GPU-hours (peak {plural(int(row.peak_gpus), 'GPU')}"
            f"{ratio}{saved}); solved in {row.solve_time_s:.1f} s ({plural(int(row.solves), 'solve')}, "
            f"{row.solution_path}, gap {row.mip_gap:.2%})"
            f"{note}{unserved}{unproven}"
        )
    if result.unserved_periods:
        lines.append(
            f"  periods that no deployment within the budget can serve: {result.unserved_periods} "
            "(marked slo_met = False in periods.csv)"
        )
    return "\n".join(lines)
