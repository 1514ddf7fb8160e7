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
# # Trend 2: the gain from disaggregation grows with model size
#
# **The paper's claim**: at ISL 4096 / OSL 256, disaggregation gains little for Llama-3.1-8B, clearly for
# 70B, and most for 405B.
#
# **What we compute**: the three shipped instances (FP4, one GB200 NVL72 rack, 4096/256), both modes'
# exact frontiers, and the gain = disaggregated / aggregated output tokens/s per GPU, the best plan of each
# mode at the same interactivity target (`planner.compare`, as `disagg frontier` prints it), over the
# *decision range*: from the lowest interactivity either mode reaches to where the better mode falls below a
# quarter of the best tokens/s per GPU. Two summaries:
#
# - **typical gain**: geometric mean of the gain over that range (each factor of interactivity weighs the
#   same);
# - **peak gain**: the largest gain in the range, and the interactivity where it occurs.

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

INSTANCES = {
    "Llama-3.1-8B": "llama-3.1-8b-gb200-4k-256",
    "Llama-3.1-70B": "llama-3.1-70b-gb200-4k-256",
    "Llama-3.1-405B": "llama-3.1-405b-gb200-4k-256",
}

# %%
frontiers = {label: solve_frontier(resolve(name)) for label, name in INSTANCES.items()}
curves = {label: disaggregation_gain(f) for label, f in frontiers.items()}
summary = pd.DataFrame([{"model": label, **gain_summary(c)} for label, c in curves.items()]).set_index(
    "model"
)
print(summary[SUMMARY_COLUMNS].round(2).to_string())

# %%
fig, axes = plt.subplots(1, len(INSTANCES) + 1, figsize=(5 * (len(INSTANCES) + 1), 4))
for ax, (label, frontier) in zip(axes, frontiers.items(), strict=False):
    plot_frontier(ax, mode_rows(frontier, "disaggregated"), "disaggregated")
    plot_frontier(ax, mode_rows(frontier, "aggregated"), "aggregated")
    ax.set_title(f"{label}, GB200, 4096/256")
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
# **Result.** Both summaries grow with model size, as the paper says. With the shipped calibration the
# typical gain is about 1.04 (8B), 1.25 (70B) and 1.45 (405B); the peak about 1.3, 4.5 and 7.5 (table
# above).
#
# Two things the numbers show that the paper's one-line summary does not:
#
# - at the throughput end of every size disaggregation can be a few percent *worse* than co-location (the
#   smallest gain is 0.86-0.96): a separate prefill pool costs whole GPUs, and at 4096/256 co-located
#   decode absorbs the prompts well;
# - every peak sits at or near the top of the decision range, where tokens/s per GPU has already fallen
#   towards a quarter of its maximum, and each is a single breakpoint of the exact gain: the peaks move a lot
#   with small changes of the performance model, so the typical gain is the number to trust; of the peaks
#   we only assert that 405B's is the largest. Notebook 03 looks at where the gain is largest.

# %%
typical = summary.loc[list(INSTANCES), "typical_gain"].to_numpy()
assert all(a < b for a, b in zip(typical, typical[1:], strict=False)), summary  # grows 8B -> 70B -> 405B
assert summary["peak_gain"].idxmax() == "Llama-3.1-405B", summary
assert summary.loc["Llama-3.1-8B", "typical_gain"] < 1.05, summary  # small for 8B
assert summary.loc["Llama-3.1-405B", "typical_gain"] > 1.2, summary  # clear for 405B
