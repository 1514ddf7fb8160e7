"""Prefill pipelines go as deep as the layers allow, and a deep pipeline picks a smaller prompt chunk."""

from __future__ import annotations

from planner.catalog import load_hardware, load_model
from planner.space import MAX_PP, candidate_table, enumerate_layouts


def test_prefill_depth_is_bounded_by_layers_and_budget_not_by_eight() -> None:
    gb200 = load_hardware("gb200-nvl72")
    r1 = enumerate_layouts(load_model("deepseek-r1"), gb200, "prefill", max_gpus=256, isl_tokens=262144)
    assert sorted(set(r1.pp.tolist())) == [1, 2, 4, 8, 16, 32]  # 61 layers: 64 stages would leave some empty
    small = enumerate_layouts(load_model("llama-3.1-8b"), gb200, "prefill", max_gpus=64, isl_tokens=4096)
    assert max(small.pp) == 32  # 32 layers, one per stage
    assert (
        max(enumerate_layouts(load_model("llama-3.1-8b"), gb200, "prefill", max_gpus=16, isl_tokens=4096).pp)
        == 16
    )
    # Decode pays a hand-off per stage per token and stays shallow.
    assert MAX_PP["decode"] == 4
    assert max(enumerate_layouts(load_model("deepseek-r1"), gb200, "decode", max_gpus=256).pp) <= 4


def test_a_256k_prompt_on_a_fixed_stage_keeps_gaining_to_pp32_with_smaller_chunks() -> None:
    """TP8 x EP8 stages, one 256k-token prompt: every doubling of depth is faster, and the deep pipeline
    fills sooner with smaller chunks (notebooks/06_chunked_pipeline_prefill.py tells the story)."""
    model, hardware = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    table = candidate_table(
        model, hardware, "fp4", "prefill", isl_tokens=262144, osl_tokens=1024, ttft_ms_max=1e9,
        max_gpus=256, prune=False,
    )  # fmt: skip
    stage = table[
        (table["tp"] == 8) & (table["ep"] == 8) & (table["attention_dp"] == 1) & (table["batch"] == 1)
    ]
    fastest = stage.groupby("pp")["ttft_ms"].min()
    assert list(fastest.index) == [1, 2, 4, 8, 16, 32]
    assert fastest.is_monotonic_decreasing
    assert fastest[32] < fastest[1] / 12  # 14x with the shipped fit: per-chunk fixed costs add up
    chunk = stage.sort_values("ttft_ms").groupby("pp")["prefill_chunk_tokens"].first()
    assert chunk[32] < chunk[2]  # deeper pipelines pick smaller chunks
    at_8192 = stage[(stage["pp"] == 32) & (stage["prefill_chunk_tokens"] == 8192)]["ttft_ms"].min()
    assert fastest[32] < at_8192 * 0.8
