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
# # Trend 3: the gain is largest at medium interactivity
#
# **The paper's claim**: the gain is largest at medium interactivity, where the decode pool can use wide
# tensor parallelism without slowing prefill.
#
# **What we compute**: the gain (disaggregated / aggregated output tokens/s per GPU, the best plan of each
# mode at the same interactivity target; `planner.compare`) for the paper's DeepSeek-R1 16k/2k case and, as
# a cross-check, the dense Llama-3.1-70B and 405B at 4096/256. The exact gain jumps at every breakpoint of
# either frontier, so a single peak says little; we split the interactivity range both modes reach into
# three equal parts on a log scale (low, medium, high) and take the typical (geometric-mean) gain of each
# (`band_gain`). "Largest at medium interactivity" then means: the medium third's gain is the largest.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from frontier_gain import band_gain, disaggregation_gain, log_axis, mode_rows

from planner.frontier import solve_frontier
from planner.problem import resolve

CASES = {
    "DeepSeek-R1 16k/2k": "deepseek-r1-gb200-16k-2k",
    "Llama-3.1-70B 4k/256": "llama-3.1-70b-gb200-4k-256",
    "Llama-3.1-405B 4k/256": "llama-3.1-405b-gb200-4k-256",
}
THIRDS = ("low", "medium", "high")

# %%
frontiers = {label: solve_frontier(resolve(name)) for label, name in CASES.items()}
curves = {label: disaggregation_gain(f) for label, f in frontiers.items()}
rows = []
for label, curve in curves.items():
    both = curve.dropna(subset=["gain"])
    edges = np.geomspace(curve["tokens_per_s_per_user"].min(), both["tokens_per_s_per_user"].max(), 4)
    row = {"case": label, "from": edges[0], "medium_from": edges[1], "high_from": edges[2], "to": edges[3]}
    row |= {third: band_gain(curve, a, b) for third, a, b in zip(THIRDS, edges[:-1], edges[1:], strict=True)}
    row["in_decision_range_up_to"] = curve.loc[curve["in_decision_range"], "tokens_per_s_per_user"].max()
    rows.append(row)
summary = pd.DataFrame(rows).set_index("case")
print(summary.round(2).to_string())

# %% [markdown]
# `peak_position` is where the peak sits on the log-interactivity range (0 = lowest, 1 = highest).
# Which layouts does the disaggregated plan use around DeepSeek-R1's peak? (decode: attention-DP x EP,
# i.e. the wide expert parallelism a co-located instance cannot afford while it also prefills 16k prompts)

# %%
deepseek = mode_rows(frontiers["DeepSeek-R1 16k/2k"], "disaggregated")
columns = ["tokens_per_s_per_user", "tokens_per_s_per_gpu", "prefill_gpus", "decode_gpus", "decode_tp"]
columns += ["decode_ep", "decode_attention_dp", "decode_batch"]
print(deepseek[columns].round(1).to_string())

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
for label, curve in curves.items():
    (line,) = ax.plot(curve["tokens_per_s_per_user"], curve["gain"], drawstyle="steps-pre", label=label)
    s = summary.loc[label]
    for third, a, b in zip(
        THIRDS, ("from", "medium_from", "high_from"), ("medium_from", "high_from", "to"), strict=True
    ):
        ax.hlines(s[third], s[a], s[b], color=line.get_color(), lw=3, alpha=0.5)
ax.axhline(1.0, color="gray", lw=0.8)
log_axis(ax, "x")
ax.set_xlabel("interactivity (output tokens/s per user)")
ax.set_ylabel("disaggregated / aggregated tokens/s per GPU")
ax.set_title("Where along the frontier does disaggregation gain most? (bars: typical gain per third)")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# **Result: not reproduced with the refitted model (discrepancy): the gain keeps rising to the most
# interactive end for all three cases.**
#
# - DeepSeek-R1 16k/2k (the paper's case): the typical gain is about 1.1x in the low third, 1.5x in the
#   medium third and 1.8x in the high third (table above). Before the calibration was refitted on the new
#   collective, MoE and per-layer terms (issue 10) the medium third led narrowly (2.4x against 2.3x); with
#   the fitted per-layer kernel time of Blackwell FP4 (about 81 us per layer, from one batch-1 TPOT row) a
#   co-located step, which carries prompt chunks, falls behind faster at high interactivity.
# - Llama-3.1-70B and 405B at 4096/256: flat (about 1x) in the low third, 1.1-1.2x in the medium third and
#   largest in the high third (about 2.2x and 3.2x). At that end the aggregated frontier collapses faster:
#   a co-located step also carries the prompts' chunks (16 prompt tokens per output token at 4096/256), so
#   to reach the same tokens/s per user it must run a smaller batch than a pure decode step of the same TP.
#
# Whether the paper's gain falls at the high end because of an effect the model lacks is for the model
# owners to judge; the numbers are in the tables above. The assertion below checks what is robustly true
# here: the gain grows from the throughput end upwards, clearly so for DeepSeek-R1.

# %%
ds = summary.loc["DeepSeek-R1 16k/2k"]
assert ds["medium"] > 1.3 * ds["low"], summary  # clearly above the throughput end from the medium third on
for label in CASES:
    assert max(summary.loc[label, ["medium", "high"]]) > 1.05 * summary.loc[label, "low"], label
