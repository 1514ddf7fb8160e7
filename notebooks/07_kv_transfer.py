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
# # Trend 7: shipping the KV cache between pools needs about 1 GB/s per GPU
#
# **The paper's claim**: for DeepSeek-R1 at 16k/2k, moving each request's KV cache from the prefill pool to
# the decode pool needs on the order of 1 GB/s per GPU, well within datacenter networks.
#
# **What we compute**: the disaggregated frontier of the shipped DeepSeek-R1 16k/2k instance (GB200 NVL72,
# FP4) and, for every Pareto plan, the KV traffic it implies: `requests_per_s x KV bytes per request`, in
# total, per prefill GPU (the senders: `kv_transfer_gb_per_s_per_gpu` in `frontier.csv`), and spread over
# every GPU of the plan; then compare it with the GPU's scale-out (network) bandwidth.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from frontier_gain import mode_rows

from planner.frontier import solve_frontier
from planner.perf import Architecture
from planner.problem import resolve

problem = resolve("deepseek-r1-gb200-16k-2k")
frontier = solve_frontier(problem, modes=("disaggregated",))
rows = mode_rows(frontier, "disaggregated")
network_gb_per_s = problem.hardware.scale_out_bandwidth_gb_per_s
isl = problem.instance.traffic.isl_tokens

# %% [markdown]
# How big is one request's KV cache? DeepSeek-R1's multi-head latent attention caches one 512-wide latent
# plus a 64-wide rotary key per token per layer, whatever the number of heads. The planner's architecture
# model gives the unique bytes; a prefill instance with tensor parallelism TP holds TP copies of the latent
# (`kv_cache_bytes_per_request` in the candidate tables counts them), but only one copy needs to travel
# (`kv_transfer_bytes_per_request`, which the plans' KV bandwidth uses).

# %%
arch = Architecture.from_spec(problem.model, problem.instance.precision)
unique_bytes = float(arch.kv_bytes_per_request(isl))
mla = problem.model.mla
elements = problem.model.num_layers * (mla.kv_lora_rank_dim + mla.qk_rope_head_dim) * isl
print(f"{elements / 1e6:.0f} M cached elements per {isl}-token prompt: {unique_bytes / 1e6:.0f} MB")
print(f"({unique_bytes / elements:.2f} bytes per element: the KV-cache precision)")
print(f"scale-out bandwidth per GPU on {problem.hardware.name}: {network_gb_per_s:g} GB/s")

# %%
plans = sorted(frontier.plans["disaggregated"], key=lambda p: p.tokens_per_s_per_user)
table = pd.DataFrame(
    {
        "tokens_per_s_per_user": rows["tokens_per_s_per_user"],
        "requests_per_s": rows["requests_per_s"],
        "prefill_tp": rows["prefill_tp"],
        "prefill_gpus": rows["prefill_gpus"],
        "total_gpus": rows["total_gpus"],
        "csv_kv_mb_per_request": [
            p.pools["prefill"].rows["kv_transfer_bytes_per_request"].max() / 1e6 for p in plans
        ],
        "csv_kv_gb_per_s_per_prefill_gpu": rows["kv_transfer_gb_per_s_per_gpu"],
    }
)
table["kv_gb_per_s_total"] = table["requests_per_s"] * unique_bytes / 1e9
table["kv_gb_per_s_per_prefill_gpu"] = table["kv_gb_per_s_total"] / table["prefill_gpus"]
table["kv_gb_per_s_per_gpu_of_plan"] = table["kv_gb_per_s_total"] / table["total_gpus"]
table["share_of_network_link"] = table["kv_gb_per_s_per_prefill_gpu"] / network_gb_per_s
print(table.round(3).to_string())

# %% [markdown]
# `csv_*` columns are what `frontier.csv` reports (`kv_transfer_gb_per_s_per_gpu`); the others recompute
# it here from the unique KV bytes and the served rate. They agree.

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(
    table["tokens_per_s_per_user"], table["kv_gb_per_s_per_prefill_gpu"], marker="o", label="per prefill GPU"
)
ax.plot(
    table["tokens_per_s_per_user"],
    table["csv_kv_gb_per_s_per_prefill_gpu"],
    ls=":",
    marker="x",
    label="per prefill GPU, as in frontier.csv",
)
ax.plot(
    table["tokens_per_s_per_user"],
    table["kv_gb_per_s_per_gpu_of_plan"],
    marker="s",
    label="per GPU of the plan",
)
ax.axhline(
    network_gb_per_s, color="gray", ls="--", label=f"scale-out link per GPU ({network_gb_per_s:g} GB/s)"
)
ax.set_yscale("log")
ax.set_xlabel("interactivity (output tokens/s per user)")
ax.set_ylabel("KV transfer, GB/s")
ax.set_title("DeepSeek-R1 16k/2k, GB200: KV-cache traffic along the disaggregated frontier")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize="small")
fig.tight_layout()

# %% [markdown]
# **Result: holds.** With the shipped calibration every plan on the frontier ships at most about 0.55 GB/s
# per prefill GPU (most plans near 0.45-0.55 GB/s: a 16k prompt's 576 MB at the rate one GPU prefills them),
# i.e. under 2% of a 400 Gb/s (50 GB/s) NIC, and less per GPU of the whole plan. The rate per prefill GPU
# is nearly constant along most of the frontier because a prefill GPU's rate of 16k prompts hardly depends
# on what the decode pool does; only the number of prefill GPUs changes. At the most interactive end (above
# about 100 tokens/s per user) the decode pool serves so few requests that even the smallest prefill pool
# idles, and the rate per prefill GPU falls to about 0.02 GB/s.


# %%
for column in ("kv_gb_per_s_per_prefill_gpu", "csv_kv_gb_per_s_per_prefill_gpu"):
    per_gpu = table[column]
    assert per_gpu.between(0.01, 10).all(), table  # at most on the order of 1 GB/s per GPU ...
    assert 0.3 <= per_gpu.median() <= 3, table
assert (table["share_of_network_link"] <= 0.1).all(), table  # ... well within the network
np.testing.assert_allclose(
    table["csv_kv_gb_per_s_per_prefill_gpu"],
    table["kv_gb_per_s_per_prefill_gpu"],
    rtol=1e-4,  # flows carry the LP tolerance
)
