"""Prompt chunk size as a search dimension, and co-located serving's worst inter-token gap."""

from __future__ import annotations

import numpy as np
import pytest

from planner.catalog import load_hardware, load_model
from planner.errors import InfeasibleError
from planner.perf import Layouts, evaluate
from planner.space import PIGGYBACK_CHUNK_TOKENS, PIPELINE_CHUNK_TOKENS, candidate_table

LLAMA_70B = load_model("llama-3.1-70b")
H100 = load_hardware("h100-sxm")


def test_stalled_step_is_a_decode_step_plus_a_whole_prefill_pass() -> None:
    """Without chunking, the prompt arriving every 4th step (batch / OSL = 64 / 256) is prefilled in a
    pass that the next decode step waits for: worst gap = decode step + that prefill's latency."""
    layouts = Layouts.of(tp=4, batch=64)
    co = evaluate(LLAMA_70B, H100, "fp8", "aggregated", layouts, 4096, 256, chunked_prefill=False).iloc[0]
    step = evaluate(LLAMA_70B, H100, "fp8", "decode", layouts, 4096, 256).iloc[0]
    one_prompt = evaluate(LLAMA_70B, H100, "fp8", "prefill", Layouts.of(tp=4, batch=1), 4096, 256).iloc[0]
    prefill_ms = one_prompt["ttft_ms"] - one_prompt["kv_transfer_ms"]
    assert co["worst_inter_token_gap_ms"] == pytest.approx(step["tpot_ms"] + prefill_ms, rel=1e-9)
    # The mean hides it: a quarter of a prefill per step on average.
    assert co["tpot_ms"] < co["worst_inter_token_gap_ms"]


def test_chunked_worst_gap_grows_with_the_chunk_and_decode_has_none() -> None:
    layouts = Layouts.of(tp=[4, 4, 4], batch=64)
    co = evaluate(
        LLAMA_70B, H100, "fp8", "aggregated", layouts, 8192, 1024, prefill_chunk_tokens=[512, 2048, 8192]
    )
    gaps = co["worst_inter_token_gap_ms"].to_numpy()
    assert (gaps >= co["tpot_ms"].to_numpy() - 1e-9).all()
    assert gaps[0] < gaps[1] < gaps[2]
    # Smaller chunks spread a prompt over more steps: the first token comes later.
    assert co["ttft_ms"].iloc[0] > co["ttft_ms"].iloc[2]
    decode = evaluate(LLAMA_70B, H100, "fp8", "decode", layouts, 8192, 1024)
    np.testing.assert_allclose(decode["worst_inter_token_gap_ms"], decode["tpot_ms"])
    prefill = evaluate(LLAMA_70B, H100, "fp8", "prefill", layouts, 8192, 1024)
    assert prefill["worst_inter_token_gap_ms"].isna().all()


def test_chunked_pipeline_prefill_trades_first_token_for_throughput() -> None:
    """PP8: (chunks + 7) chunk times to the first token; small chunks fill the pipeline sooner."""
    layouts = Layouts.of(tp=[1] * 4, pp=8, batch=1)
    frame = evaluate(
        LLAMA_70B, H100, "fp8", "prefill", layouts, 32768, 256, prefill_chunk_tokens=[1024, 2048, 4096, 8192]
    )
    ttft = frame["ttft_ms"].to_numpy()
    rate = frame["input_tokens_per_s_per_gpu"].to_numpy()
    assert (np.diff(ttft) > 0).all()
    assert (np.diff(rate) > 0).all()
    # Without PP the chunk changes nothing.
    flat = evaluate(
        LLAMA_70B,
        H100,
        "fp8",
        "prefill",
        Layouts.of(tp=[8, 8], batch=1),
        32768,
        256,
        prefill_chunk_tokens=[1024, 8192],
    )
    assert flat["ttft_ms"].iloc[0] == flat["ttft_ms"].iloc[1]


def test_candidate_tables_search_the_chunk_and_honour_the_gap_limit() -> None:
    kwargs = dict(isl_tokens=8192, osl_tokens=1024, ttft_ms_max=1e8, max_gpus=8, prune=False)
    prefill = candidate_table(LLAMA_70B, H100, "fp8", "prefill", **kwargs)
    deep = prefill[prefill["pp"] > 1]
    assert set(deep["prefill_chunk_tokens"]) == set(PIPELINE_CHUNK_TOKENS)
    assert set(prefill[prefill["pp"] == 1]["prefill_chunk_tokens"]) == {8192}
    co = candidate_table(LLAMA_70B, H100, "fp8", "aggregated", **kwargs)
    assert set(co[co["chunked_prefill"]]["prefill_chunk_tokens"]) == set(PIGGYBACK_CHUNK_TOKENS)
    limit = float(np.median(co["worst_inter_token_gap_ms"]))
    capped = candidate_table(LLAMA_70B, H100, "fp8", "aggregated", **kwargs, inter_token_gap_ms_max=limit)
    assert 0 < len(capped) < len(co)
    assert (capped["worst_inter_token_gap_ms"] <= limit).all()
    with pytest.raises(InfeasibleError, match="slo.inter_token_gap_ms_max"):
        candidate_table(LLAMA_70B, H100, "fp8", "aggregated", **kwargs, inter_token_gap_ms_max=0.01)


def test_layer_overhead_adds_a_fixed_time_per_layer_by_hand() -> None:
    """10 us per layer: a decode token passes all 80 layers of Llama-3.1-70B, with or without PP."""
    from planner.perf import Calibration, EfficiencyBlock

    def tpot(layer_us: float, pp: int) -> float:
        block = EfficiencyBlock(layer_overhead_us=layer_us)
        calibration = Calibration(source="hand check", default=block, blocks={})
        frame = evaluate(
            LLAMA_70B,
            H100,
            "fp8",
            "decode",
            Layouts.of(tp=4, pp=pp, batch=8),
            1024,
            256,
            calibration=calibration,
        )
        return float(frame["tpot_ms"].iloc[0])

    for pp in (1, 2):
        assert tpot(10.0, pp) - tpot(0.0, pp) == pytest.approx(80 * 10e-3, rel=1e-9)
