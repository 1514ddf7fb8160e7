"""The performance model against numbers worked out by hand from the published architectures.

Every expected value here is written out as explicit arithmetic on the config
numbers (hidden 4096, 32 heads, ...), never computed by the planner's helpers.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.catalog import load_hardware, load_model
from planner.perf import Calibration, EfficiencyBlock, Layouts, evaluate
from planner.perf.architecture import Architecture
from planner.perf.context import PerfContext
from planner.perf.memory import weight_bytes_per_gpu

# --------------------------------------------------------------------------- llama-3.1-8b by hand

L8_LAYERS = 32
L8_ATTENTION_PER_LAYER = 4096 * 128 * (2 * 32 + 2 * 8)  # Q and O: 32 heads, K and V: 8 heads, of 128
L8_MLP_PER_LAYER = 3 * 4096 * 14336  # gate, up, down
L8_NON_EMBEDDING = L8_LAYERS * (L8_ATTENTION_PER_LAYER + L8_MLP_PER_LAYER)
L8_EMBEDDING = 128256 * 4096  # the output head is the same size and untied
L8_TOTAL = L8_NON_EMBEDDING + 2 * L8_EMBEDDING

H100_HBM_BYTES_PER_S = 3350e9
H100_FP8_FLOPS_PER_S = 1979e12


def _calibration(**overrides: float) -> Calibration:
    return Calibration(source="hand check", default=EfficiencyBlock(**overrides), blocks={})


def test_llama_8b_parameter_count() -> None:
    arch = Architecture.from_spec(load_model("llama-3.1-8b"), "bf16")
    assert L8_TOTAL == 8_029_995_008
    assert arch.total_params == pytest.approx(L8_TOTAL, rel=1e-12)
    assert arch.active_params == arch.total_params
    assert arch.total_params == pytest.approx(8.03e9, rel=1e-3)


def test_llama_70b_kv_bytes_per_token() -> None:
    bf16 = Architecture.from_spec(load_model("llama-3.1-70b"), "bf16")
    # K and V, 80 layers, 8 KV heads of 128, 2 bytes: 320 KiB per token.
    assert 2 * 80 * 8 * 128 * 2 == 327_680
    assert bf16.kv_bytes_per_token() == 327_680
    assert bf16.kv_bytes_per_request(1000)[()] == 327_680 * 1000
    fp8 = Architecture.from_spec(load_model("llama-3.1-70b"), "fp8")
    assert fp8.kv_bytes_per_token() == 327_680 / 2


def test_deepseek_r1_mla_kv_and_parameters() -> None:
    arch = Architecture.from_spec(load_model("deepseek-r1"), "bf16")
    # One latent of 512 plus a shared rotary key of 64 per token per layer, 61 layers, bf16.
    assert (512 + 64) * 61 * 2 == 70_272
    assert arch.kv_bytes_per_token() == 70_272
    assert arch.total_params == pytest.approx(671e9, rel=0.01)
    assert arch.active_params == pytest.approx(37e9, rel=0.03)


def test_kv_duplication_over_tp() -> None:
    llama = Architecture.from_spec(load_model("llama-3.1-70b"), "fp8")
    # 8 KV heads: TP 16 gives each head to two GPUs; TP 4 gives each GPU two heads of its own.
    assert float(llama.kv_duplication(16)) == 2.0
    assert float(llama.kv_duplication(8)) == 1.0
    assert float(llama.kv_duplication(4)) == 1.0
    deepseek = Architecture.from_spec(load_model("deepseek-r1"), "fp8")
    # The MLA latent is not split by heads: every TP rank keeps the whole latent.
    assert float(deepseek.kv_duplication(8)) == 8.0


def test_llama_8b_decode_step_is_weights_plus_kv_over_bandwidth() -> None:
    """Batch 1 decode at 100% bandwidth and no overheads: one read of weights, head and KV per token."""
    calibration = _calibration(
        memory_efficiency_fraction=1.0,
        step_overhead_ms=0.0,
        gemm_efficiency_fraction=1.0,
        gemm_half_saturation_tokens=1.0,
    )
    frame = evaluate(
        load_model("llama-3.1-8b"),
        load_hardware("h100-sxm"),
        "fp8",
        "decode",
        Layouts.of(tp=1, batch=1),
        1000,
        2,
        calibration=calibration,
    )
    row = frame.iloc[0]
    weight_bytes = L8_NON_EMBEDDING * 1  # fp8 GEMM weights
    head_bytes = 128256 * 4096 * 2  # bf16 output head, read every step (the embedding is a lookup)
    mean_context = 1000 + (2 + 1) / 2  # the step reads the cache at the mean context of the output
    kv_bytes = 1 * mean_context * 32 * (2 * 8 * 128) * 1  # fp8 cache, K and V of 8 heads of 128
    expected_ms = (weight_bytes + head_bytes + kv_bytes) / H100_HBM_BYTES_PER_S * 1e3
    assert expected_ms == pytest.approx(2.417, abs=0.001)
    assert row["tpot_ms"] == pytest.approx(expected_ms, rel=0.01)
    assert row["tokens_per_s_per_user"] == pytest.approx(1e3 / expected_ms, rel=0.01)
    # Memory bound: the breakdown puts (nearly) all of it on memory.
    assert row["memory_ms"] == pytest.approx(expected_ms, rel=0.01)
    assert row["communication_ms"] == 0.0
    assert row["overhead_ms"] == 0.0


def test_llama_8b_prefill_is_flops_over_peak() -> None:
    """One 8192-token prompt at peak FLOP/s: GEMMs plus causal attention, plus one read of the head."""
    calibration = _calibration(
        gemm_efficiency_fraction=1.0,
        gemm_half_saturation_tokens=1.0,
        attention_efficiency_fraction=1.0,
        memory_efficiency_fraction=1.0,
        step_overhead_ms=0.0,
    )
    isl = 8192
    frame = evaluate(
        load_model("llama-3.1-8b"),
        load_hardware("h100-sxm"),
        "fp8",
        "prefill",
        Layouts.of(tp=1, batch=1),
        isl,
        128,
        calibration=calibration,
    )
    row = frame.iloc[0]
    gemm_flops = 2 * L8_NON_EMBEDDING * isl
    # Causal: token i attends to i keys; QK^T and PV cost 2 * 2 * 32 heads * 128 per (query, key) pair.
    attention_flops = 32 * (isl * (isl + 1) / 2) * (4 * 32 * 128)
    compute_s = (gemm_flops + attention_flops) / H100_FP8_FLOPS_PER_S  # fp8 peak for GEMMs and attention
    # Only the last position's logits are needed: the head is one read of its bf16 weights.
    head_s = 128256 * 4096 * 2 / H100_HBM_BYTES_PER_S
    expected_ms = (compute_s + head_s) * 1e3
    assert expected_ms == pytest.approx(66.95, abs=0.1)
    assert row["ttft_ms"] - row["kv_transfer_ms"] == pytest.approx(expected_ms, rel=0.02)
    assert row["kv_transfer_ms"] > 0
    # KV shipped out: 8192 tokens x 32 layers x 2 x 8 x 128 fp8 bytes.
    assert row["kv_cache_bytes_per_request"] == 8192 * 32 * 2 * 8 * 128


def test_deepseek_r1_weights_per_gpu_with_expert_parallelism() -> None:
    """TP1 EP8 attention-DP8 at fp8: attention and dense layers whole on every GPU, 32 experts per layer.

    At fp8 the model's published block-FP8 format applies: one fp32 scale per 128 x 128 block."""
    ctx = PerfContext.build(load_model("deepseek-r1"), load_hardware("h200-sxm"), "fp8")
    layouts = Layouts.of(tp=1, pp=1, ep=8, attention_dp=8, batch=8)
    h = 7168
    q = h * 1536 + 1536 * 128 * (128 + 64)  # q down to rank 1536, up to 128 heads of (nope 128 + rope 64)
    kv = h * (512 + 64) + 512 * 128 * (128 + 128)  # kv down to latent + rope key, up to K-nope and V
    o = 128 * 128 * h  # output projection from 128 heads of 128
    attention = q + kv + o
    dense_mlp = 3 * h * 18432
    shared_expert = 3 * h * 2048 * 1
    router = h * 256  # counted at the GEMM precision, as the planner does (checkpoints keep it bf16: ~0.1 GB)
    expert = 3 * h * 2048
    experts_per_gpu = 256 // 8
    dense_layers, moe_layers = 3, 61 - 3
    gemm_params = dense_layers * (attention + dense_mlp) + moe_layers * (
        attention + shared_expert + router + experts_per_gpu * expert
    )
    vocab_bytes = 2 * 129280 * h * 2  # embedding and head, untied, bf16
    expected = gemm_params * (1 + 4 / (128 * 128)) + vocab_bytes
    assert expected / 1e9 == pytest.approx(100.73, abs=0.01)
    assert float(weight_bytes_per_gpu(ctx, layouts)[0]) == pytest.approx(expected, rel=1e-9)
    # The same layout through evaluate reports it in GB.
    frame = evaluate(ctx.model, ctx.hardware, "fp8", "decode", layouts, 1024, 128)
    assert frame["weights_per_gpu_gb"].iloc[0] == pytest.approx(expected / 1e9, rel=1e-9)
    assert frame["gpus"].iloc[0] == 8


def test_deepseek_r1_kv_cache_per_request_counts_the_tp_copies() -> None:
    frame = evaluate(
        load_model("deepseek-r1"),
        load_hardware("h200-sxm"),
        "fp8",
        "decode",
        Layouts.of(tp=8, ep=8, batch=8),
        1000,
        24,
    )
    # (512 + 64) latent elements x 61 layers x 1 fp8 byte x 1024 tokens, stored on all 8 TP ranks.
    assert frame["kv_cache_bytes_per_request"].iloc[0] == (512 + 64) * 61 * 1 * 1024 * 8
    per_gpu = (512 + 64) * 61 * 1 * 1024 * 8 / 1e9  # 8 requests, every GPU holds all of them
    assert frame["kv_cache_per_gpu_gb"].iloc[0] == pytest.approx(per_gpu, rel=1e-9)
    assert np.isnan(frame["ttft_ms"].iloc[0])
