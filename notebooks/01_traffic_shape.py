# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Trend 1: disaggregation pays most for prefill-heavy traffic
#
# **The paper's claim** (NVIDIA, *Beyond the Buzz*, 2025): disaggregated serving beats co-located
# (aggregated) serving most when prompts are much longer than answers (ISL 16k / OSL 2k), and least for
# generation-heavy traffic (1k / 32k, 2k / 16k).
#
# **What we compute**: DeepSeek-R1 (FP4) on one GB200 NVL72 rack, the planner's exact frontier of both
# modes for three traffic shapes, and the *gain* = disaggregated / aggregated output tokens/s per GPU, the
# best plan of each mode at the same interactivity target (`planner.compare`, the definition `disagg
# frontier` prints). We condense each gain curve over its *decision range* (where the better mode keeps at
# least a quarter of the best tokens/s per GPU) into its *typical* value (geometric mean), its smallest and
# its largest (*peak*) value.
#
# Change `SHAPES` to try other prompt/answer lengths.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from frontier_gain import (
    SUMMARY_COLUMNS,
    disaggregation_gain,
    gain_summary,
    log_axis,
    mode_rows,
    plot_frontier,
)

from planner.frontier import solve_frontier
from planner.problem import resolve

INSTANCE = "deepseek-r1-gb200-16k-2k"
SHAPES = {  # label: (ISL, OSL)
    "16k/2k (prefill-heavy)": (16384, 2048),
    "1k/32k (generation-heavy)": (1024, 32768),
    "2k/16k (generation-heavy)": (2048, 16384),
}

# %%
frontiers, curves, rows = {}, {}, []
for label, (isl, osl) in SHAPES.items():
    problem = resolve(INSTANCE, overrides={"traffic.isl_tokens": isl, "traffic.osl_tokens": osl})
    frontiers[label] = solve_frontier(problem)
    curves[label] = disaggregation_gain(frontiers[label])
    rows.append({"traffic": label, **gain_summary(curves[label])})
summary = pd.DataFrame(rows).set_index("traffic")
print(summary[SUMMARY_COLUMNS].round(2).to_string())

# %%
fig, axes = plt.subplots(1, len(SHAPES) + 1, figsize=(5 * (len(SHAPES) + 1), 4))
for ax, (label, frontier) in zip(axes, frontiers.items(), strict=False):
    plot_frontier(ax, mode_rows(frontier, "disaggregated"), "disaggregated")
    plot_frontier(ax, mode_rows(frontier, "aggregated"), "aggregated")
    ax.set_title(f"DeepSeek-R1 GB200, ISL/OSL {label}")
    ax.legend()
for label, curve in curves.items():
    axes[-1].plot(curve["tokens_per_s_per_user"], curve["gain"], drawstyle="steps-pre", label=label)
axes[-1].axhline(1.0, color="gray", lw=0.8)
log_axis(axes[-1], "x")
axes[-1].set_xlabel("interactivity (output tokens/s per user)")
axes[-1].set_ylabel("disaggregated / aggregated")
axes[-1].set_title("gain at matched interactivity")
axes[-1].legend()
fig.tight_layout()

# %% [markdown]
# **Result.** The table above is the planner's own reading with the shipped calibration, and it
# reproduces the trend. At 16k/2k disaggregation gains clearly over the decision range (the typical gain
# in the table), most at medium-to-high interactivity; toward the throughput end the two modes come closer,
# because co-located serving with searched prompt-chunk sizes keeps its attention-DP ranks evenly loaded.
# For 1k/32k and 2k/16k the typical gain is within a few percent of 1. For 1k/32k the planner even
# puts disaggregation slightly *behind* over most of the range: the prefill pool is tiny but whole GPUs,
# and co-located decode absorbs 1k prompts almost for free. That is consistent with "least gain", and
# stronger than the paper's wording.

# %%
prefill_heavy = summary.loc["16k/2k (prefill-heavy)"]
for label in ("1k/32k (generation-heavy)", "2k/16k (generation-heavy)"):
    other = summary.loc[label]
    assert prefill_heavy["typical_gain"] > 1.4 * other["typical_gain"], (label, summary)
    assert prefill_heavy["peak_gain"] > 1.5 * other["peak_gain"], (label, summary)
    assert other["typical_gain"] < 1.1, (label, summary)
assert prefill_heavy["typical_gain"] > 1.4, summary
