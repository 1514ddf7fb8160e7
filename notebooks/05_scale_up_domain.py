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
# # Trend 5: a 72-GPU NVLink domain beats an 8-GPU one along the frontier
#
# **The paper's claim**: with the same GPUs, a 72-GPU scale-up (NVLink) domain beats 8-GPU domains along
# the whole disaggregated frontier, because decode can use wider expert and tensor parallelism.
#
# **What we compute**: the disaggregated frontier of each instance on the GB200 NVL72 rack as shipped, and
# with its `hgx_domains` scenario (`hardware.scale_up_domain_gpus: 8`: the same GPUs, but TP and EP must
# stay inside 8-GPU NVLink domains and anything wider crosses the 50 GB/s-per-GPU network). For every
# Pareto point of the 8-GPU frontier we read the 72-GPU frontier at the same interactivity, exactly (best
# 72-GPU plan at least as interactive; `frontier_gain.read_step`). The paper's case is DeepSeek-R1 16k/2k
# (wide expert parallelism); Llama-3.1-405B at 4096/256 shows the dense-model side (wide tensor parallelism).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from frontier_gain import log_axis, mode_rows, plot_frontier, read_step

from planner.frontier import solve_frontier
from planner.problem import resolve

CASES = {
    "DeepSeek-R1 16k/2k": "deepseek-r1-gb200-16k-2k",
    "Llama-3.1-70B 4k/256": "llama-3.1-70b-gb200-4k-256",
    "Llama-3.1-405B 4k/256": "llama-3.1-405b-gb200-4k-256",
}
MODE = "disaggregated"

# %%
frontiers, tables, rows = {}, {}, []
for label, name in CASES.items():
    nvl72 = mode_rows(solve_frontier(resolve(name), modes=(MODE,)), MODE)
    hgx = mode_rows(solve_frontier(resolve(name, scenario="hgx_domains"), modes=(MODE,)), MODE)
    frontiers[label] = {"72-GPU domain": nvl72, "8-GPU domains": hgx}
    table = hgx[["tokens_per_s_per_user", "tokens_per_s_per_gpu", "decode_tp", "decode_ep"]].copy()
    table.columns = ["tokens_per_s_per_user", "hgx_tokens_per_s_per_gpu", "hgx_decode_tp", "hgx_decode_ep"]
    table["nvl72_tokens_per_s_per_gpu"] = read_step(nvl72, table["tokens_per_s_per_user"])
    table["nvl72_over_hgx"] = table["nvl72_tokens_per_s_per_gpu"] / table["hgx_tokens_per_s_per_gpu"]
    tables[label] = table
    ratio = table["nvl72_over_hgx"].to_numpy()
    rows.append(
        {
            "case": label,
            "min_ratio": ratio.min(),
            "median_ratio": np.median(ratio),
            "max_ratio": ratio.max(),
            "share_of_points_ge_1.05": (ratio >= 1.05).mean(),
            "nvl72_max_tokens_per_s_per_user": nvl72["tokens_per_s_per_user"].max(),
            "hgx_max_tokens_per_s_per_user": hgx["tokens_per_s_per_user"].max(),
        }
    )
summary = pd.DataFrame(rows).set_index("case")
print(summary.round(3).to_string())

# %%
print(tables["DeepSeek-R1 16k/2k"].round(2).to_string())

# %%
print(tables["Llama-3.1-405B 4k/256"].round(2).to_string())

# %%
fig, axes = plt.subplots(1, len(CASES) + 1, figsize=(5.5 * (len(CASES) + 1), 4.5))
for ax, (label, pair) in zip(axes, frontiers.items(), strict=False):
    for domain, rows_ in pair.items():
        plot_frontier(ax, rows_, domain)
    ax.set_title(f"{label}, disaggregated")
    ax.legend()
for label, table in tables.items():
    axes[-1].plot(table["tokens_per_s_per_user"], table["nvl72_over_hgx"], marker="o", ms=3, label=label)
axes[-1].axhline(1.0, color="gray", lw=0.8)
log_axis(axes[-1], "x")
axes[-1].set_xlabel("interactivity (output tokens/s per user)")
axes[-1].set_ylabel("72-GPU / 8-GPU domain tokens/s per GPU")
axes[-1].set_title("at each 8-GPU Pareto point")
axes[-1].grid(True, alpha=0.3)
axes[-1].legend()
fig.tight_layout()

# %% [markdown]
# **Result: holds in part. The 72-GPU domain never loses, leads DeepSeek-R1 from the middle up, and lets
# Llama-3.1-70B and 405B reach further with decode TP beyond 8, but by less than before the refit.**
#
# - DeepSeek-R1 16k/2k: with 8-GPU domains the decode pool runs wide expert parallelism over the network
#   (EP across nodes, its all-to-all priced per fabric), so at the throughput end the two domains tie. The
#   72-GPU domain is ahead by 5% or more at about 63% of the points (median ratio about 1.09, up to 3.2x)
#   and reaches about 132 against 126 tokens/s per user (table above).
# - Llama-3.1-405B 4k/256 (**partial discrepancy** with "along the whole frontier"): most of the frontier is
#   identical, because the best decode layouts use TP <= 8 anyway; at the most interactive end the 72-GPU
#   domain reaches about 62 against 48 tokens/s per user. Before the refit it reached 165 against 84 with
#   TP64 decode; the fitted per-layer kernel time of Blackwell FP4 (about 81 us per layer, 126 layers: about
#   10 ms a step) now caps every layout's interactivity, which wide TP cannot shorten. The all-reduce is
#   priced per fabric (one-shot, two-shot or in-switch reduction, fitted to published microbenchmarks), so
#   wider TP no longer always costs more (paper Fig. 11).
# - Llama-3.1-70B 4k/256 (paper Fig. 11's model): identical along most of the frontier; at the most
#   interactive end the 72-GPU domain runs TP16 and TP32 decode and reaches about 103 against 96 tokens/s
#   per user, up to about 2x the tokens/s per GPU at the same interactivity near the top. The gain is
#   smaller than the paper's because every layout pays the same fitted per-layer kernel time (80 layers of
#   about 81 us: about 6.5 ms a step), which wider TP cannot shorten.
#
# The 72-GPU domain can never lose (every 8-GPU layout is also a 72-GPU layout), so the assertion checks
# that it wins by a real margin where the paper says it should.

# %%
ds, llama = summary.loc["DeepSeek-R1 16k/2k"], summary.loc["Llama-3.1-405B 4k/256"]
llama70 = summary.loc["Llama-3.1-70B 4k/256"]
for label in CASES:
    assert summary.loc[label, "min_ratio"] >= 1 - 1e-6, summary  # never worse
    assert (
        summary.loc[label, "nvl72_max_tokens_per_s_per_user"]
        >= summary.loc[label, "hgx_max_tokens_per_s_per_user"]
    )
assert ds["share_of_points_ge_1.05"] >= 0.5, tables["DeepSeek-R1 16k/2k"]  # ahead from the middle up
assert ds["median_ratio"] >= 1.05, summary
assert ds["max_ratio"] >= 2.0, summary
assert llama["nvl72_max_tokens_per_s_per_user"] > 1.2 * llama["hgx_max_tokens_per_s_per_user"], summary
# Llama-3.1-70B gains at high interactivity from decode TP beyond 8 (Fig. 11), by a smaller margin.
assert llama70["nvl72_max_tokens_per_s_per_user"] > llama70["hgx_max_tokens_per_s_per_user"], summary
assert llama70["max_ratio"] >= 1.5, summary
assert frontiers["Llama-3.1-70B 4k/256"]["72-GPU domain"]["decode_tp"].iloc[-1] > 8, summary
