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
# **What we compute**: the gain curve (disaggregated / aggregated output tokens/s per GPU at matched
# interactivity, frontiers read as lines between Pareto points; see `frontier_gain.py`) for the paper's
# DeepSeek-R1 16k/2k case and, as a cross-check, the dense Llama-3.1-70B and 405B at 4096/256. "Medium"
# is tested as: the peak lies inside the range and both ends of the range are clearly below it.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from frontier_gain import disaggregation_gain, gain_summary, log_axis, mode_rows

from planner.frontier import solve_frontier
from planner.problem import resolve

CASES = {
    "DeepSeek-R1 16k/2k": "deepseek-r1-gb200-16k-2k",
    "Llama-3.1-70B 4k/256": "llama-3.1-70b-gb200-4k-256",
    "Llama-3.1-405B 4k/256": "llama-3.1-405b-gb200-4k-256",
}
# how much higher than both ends of the range the peak must be to count as a medium-interactivity peak
INTERIOR_MARGIN = 1.15

# %%
frontiers = {label: solve_frontier(resolve(name)) for label, name in CASES.items()}
curves = {label: disaggregation_gain(f) for label, f in frontiers.items()}
rows = []
for label, curve in curves.items():
    s = gain_summary(curve)
    span = np.log(s["high_tokens_per_s_per_user"] / s["low_tokens_per_s_per_user"])
    s["peak_position"] = np.log(s["peak_at_tokens_per_s_per_user"] / s["low_tokens_per_s_per_user"]) / span
    s["peak_over_ends"] = s["peak_gain"] / max(s["gain_at_low_end"], s["gain_at_high_end"])
    rows.append({"case": label, **s})
summary = pd.DataFrame(rows).set_index("case")
summary[
    ["peak_gain", "peak_at_tokens_per_s_per_user", "peak_position", "gain_at_low_end", "gain_at_high_end"]
].round(2)

# %% [markdown]
# `peak_position` is where the peak sits on the log-interactivity range (0 = lowest, 1 = highest).
# Which layouts does the disaggregated plan use around DeepSeek-R1's peak? (decode: attention-DP x EP,
# i.e. the wide expert parallelism a co-located instance cannot afford while it also prefills 16k prompts)

# %%
deepseek = mode_rows(frontiers["DeepSeek-R1 16k/2k"], "disaggregated")
columns = ["tokens_per_s_per_user", "tokens_per_s_per_gpu", "prefill_gpus", "decode_gpus", "decode_tp"]
columns += ["decode_ep", "decode_attention_dp", "decode_batch"]
deepseek[columns].round(1)

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
for label, curve in curves.items():
    (line,) = ax.plot(curve["tokens_per_s_per_user"], curve["gain"], label=label)
    s = summary.loc[label]
    ax.plot(s["peak_at_tokens_per_s_per_user"], s["peak_gain"], "o", color=line.get_color())
ax.axhline(1.0, color="gray", lw=0.8)
log_axis(ax, "x")
ax.set_xlabel("interactivity (output tokens/s per user)")
ax.set_ylabel("disaggregated / aggregated tokens/s per GPU")
ax.set_title("Where along the frontier does disaggregation gain most? (dot = peak)")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# **Result: holds for DeepSeek-R1, not for the dense Llamas.**
#
# - DeepSeek-R1 16k/2k (the paper's case): the gain rises from about 1.4x at the throughput end to a peak
#   of about 2.8x near 75 tokens/s per user, then falls back to about 1.3x where the aggregated frontier
#   ends: an interior, medium-interactivity peak, as the paper says. Around the peak the decode pool runs
#   attention-DP 32 x EP 32 instances.
# - Llama-3.1-70B and 405B at 4096/256 (**discrepancy**): the planner's gain keeps rising up to the most
#   interactive point both modes reach (about 4.8x and 6.6x there), so the peak is at the high end, not in
#   the middle. At that end the aggregated frontier collapses faster: a co-located step also carries the
#   prompts' chunks (16 prompt tokens per output token at 4096/256), so to reach the same tokens/s per user
#   it must run a smaller batch than a pure decode step of the same TP (for 405B near 77 tokens/s per user:
#   batch 1 co-located against batch 8 disaggregated, both TP16). Whether the paper's gain falls there
#   because of an effect the model lacks is for the model owners to judge; the numbers are in the table
#   above.
#
# The assertion below checks the trend where the planner reproduces it (DeepSeek-R1), and, for all three
# cases, what is robustly true: the gain at the peak is well above the gain at the throughput end.

# %%
ds = summary.loc["DeepSeek-R1 16k/2k"]
assert 0.15 < ds["peak_position"] < 0.85, summary  # the peak is inside the range ...
assert ds["peak_gain"] > INTERIOR_MARGIN * ds["gain_at_low_end"], summary  # ... above the throughput end
assert ds["peak_gain"] > INTERIOR_MARGIN * ds["gain_at_high_end"], summary  # ... and above the latency end
for label in CASES:
    assert summary.loc[label, "peak_gain"] > INTERIOR_MARGIN * summary.loc[label, "gain_at_low_end"], label
