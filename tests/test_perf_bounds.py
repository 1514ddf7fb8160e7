"""Physics the performance model may never beat, and the monotone trends it must show.

The lower bounds are derived here from the spec numbers alone (not from the
planner's helpers): a decode step must read at least the GPU's always-active
weights, the output head and the KV cache of its requests at full HBM
bandwidth; a prefill must do at least its GEMM and causal-attention FLOPs at
the datasheet peak of all the instance's GPUs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from planner.catalog import load_hardware, load_model, names
from planner.perf import Calibration, Layouts, evaluate, layout_problems
from planner.perf.calibration import ideal_block
from planner.perf.quantization import for_deployment
from planner.specs import HardwareSpec, ModelSpec, Precision

ISL, OSL = 2048, 256
MODELS = names("models")
HARDWARE = names("hardware")
MIN_WEIGHT_BYTES: dict[Precision, float] = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5}
"""Bytes per weight before any quantization scales."""


def _precision(hardware: HardwareSpec) -> Precision:
    return "fp8" if hardware.fp8_dense_tflops_per_s is not None else "bf16"


@dataclass(frozen=True)
class Grid:
    """The valid layouts of a small TP x EP x batch grid, as arrays."""

    layouts: Layouts

    @classmethod
    def of(cls, model: ModelSpec, hardware: HardwareSpec, batches: tuple[int, ...] = (1, 64)) -> Grid:
        rows = []
        for tp, batch in itertools.product((1, 2, 4, 8), batches):
            for ep in sorted({1, tp} if model.moe else {1}):
                rows.append((tp, ep, batch))
        tp, ep, batch = (np.array(c) for c in zip(*rows, strict=True))
        candidates = Layouts.of(tp=tp, ep=ep, batch=batch)
        formats = for_deployment(model, _precision(hardware))  # a block-FP8 checkpoint refuses some TP
        ok = np.array([p is None for p in layout_problems(model, hardware, candidates, quantization=formats)])
        return cls(Layouts.of(tp=tp[ok], ep=ep[ok], batch=batch[ok]))


def _attention_params(model: ModelSpec) -> float:
    h = model.hidden_dim
    heads = model.num_attention_heads
    if model.mla is None:
        return h * model.head_dim * (2 * heads + 2 * model.num_kv_heads)
    m = model.mla
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    q = h * m.q_lora_rank_dim + m.q_lora_rank_dim * heads * qk if m.q_lora_rank_dim else h * heads * qk
    kv = h * (m.kv_lora_rank_dim + m.qk_rope_head_dim) + m.kv_lora_rank_dim * heads * (
        m.qk_nope_head_dim + m.v_head_dim
    )
    return q + kv + heads * m.v_head_dim * h


def _always_read_params(model: ModelSpec) -> tuple[float, float]:
    """(params of all layers that every token uses, params of one routed expert x experts per token)."""
    h = model.hidden_dim
    attention = _attention_params(model)
    if model.moe is None:
        return model.num_layers * (attention + 3 * h * model.intermediate_dim), 0.0
    moe = model.moe
    moe_layers = model.num_layers - moe.num_dense_layers
    shared = 3 * h * moe.expert_intermediate_dim * moe.num_shared_experts
    router = h * moe.num_routed_experts
    always = moe.num_dense_layers * (attention + 3 * h * model.intermediate_dim) + moe_layers * (
        attention + shared + router
    )
    routed = moe_layers * moe.num_experts_per_token * 3 * h * moe.expert_intermediate_dim
    return always, routed


def _kv_bytes_per_gpu(model: ModelSpec, tp: np.ndarray, requests: np.ndarray, context: float) -> np.ndarray:
    """fp8 KV bytes one GPU holds for its requests at a context (sliding-window layers hold the window)."""
    if model.mla is None:
        heads_per_gpu = model.num_kv_heads / np.minimum(tp, model.num_kv_heads)
        elements = 2 * model.head_dim * heads_per_gpu
    else:
        elements = np.full(tp.shape, float(model.mla.kv_lora_rank_dim + model.mla.qk_rope_head_dim))
    windowed = model.num_sliding_window_layers
    window = min(context, model.sliding_window_tokens or context)
    tokens_over_layers = (model.num_layers - windowed) * context + windowed * window
    return requests * elements * tokens_over_layers * 1.0


def _decode_floor_s(
    model: ModelSpec, hardware: HardwareSpec, precision: Precision, layouts: Layouts
) -> np.ndarray:
    tp = layouts.tp.astype(float)
    always, _ = _always_read_params(model)
    weights = always * MIN_WEIGHT_BYTES[precision] / tp
    head = model.vocab_size_tokens * model.hidden_dim * 2.0 / tp  # bf16 head, vocab-parallel over TP
    kv = _kv_bytes_per_gpu(model, tp, layouts.batch.astype(float), float(ISL))
    return (weights + head + kv) / (hardware.hbm_bandwidth_gb_per_s * 1e9)


def _prefill_floor_s(
    model: ModelSpec, hardware: HardwareSpec, precision: Precision, layouts: Layouts
) -> np.ndarray:
    """FLOPs over the instance's peak. Embedding lookups cost no FLOPs and only the last position of
    a prompt needs logits, so the bound counts the layer GEMMs per token and the head once per prompt."""
    always, routed = _always_read_params(model)
    prompts = layouts.batch.astype(float)
    tokens = prompts * ISL
    gemm = 2 * (always + routed) * tokens + 2 * model.vocab_size_tokens * model.hidden_dim * prompts
    if model.mla is None:
        per_pair = 4 * model.num_attention_heads * model.head_dim
    else:
        m = model.mla
        per_pair = 2 * model.num_attention_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
    full_layers = model.num_layers - model.num_sliding_window_layers
    attention = prompts * full_layers * ISL * (ISL + 1) / 2 * per_pair
    peak = float(hardware.peak_tflops_per_s(precision)) * 1e12
    return (gemm + attention) / (layouts.gpus.astype(float) * peak)


# --------------------------------------------------------------------------- physics over the catalog


@pytest.mark.parametrize("hardware_name", HARDWARE)
@pytest.mark.parametrize("model_name", MODELS)
def test_decode_never_beats_the_memory_floor(model_name: str, hardware_name: str) -> None:
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    precision = _precision(hardware)
    layouts = Grid.of(model, hardware).layouts
    assert len(layouts) >= 2, "the grid must keep some valid layouts"
    frame = evaluate(model, hardware, precision, "decode", layouts, ISL, OSL)
    floor_s = _decode_floor_s(model, hardware, precision, layouts)
    tpot_s = frame["tpot_ms"].to_numpy() * 1e-3
    assert np.all(np.isfinite(tpot_s))
    assert np.all(floor_s > 0)
    bad = frame.loc[tpot_s < floor_s, ["tp", "ep", "batch", "tpot_ms"]]
    assert bad.empty, f"decode faster than HBM allows:\n{bad}\nfloor ms {floor_s[tpot_s < floor_s] * 1e3}"


@pytest.mark.parametrize("hardware_name", HARDWARE)
@pytest.mark.parametrize("model_name", MODELS)
def test_prefill_never_beats_the_flops_floor(model_name: str, hardware_name: str) -> None:
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    precision = _precision(hardware)
    layouts = Grid.of(model, hardware).layouts
    frame = evaluate(model, hardware, precision, "prefill", layouts, ISL, OSL)
    floor_s = _prefill_floor_s(model, hardware, precision, layouts)
    latency_s = (frame["ttft_ms"] - frame["kv_transfer_ms"]).to_numpy() * 1e-3
    assert np.all(np.isfinite(latency_s))
    assert np.all(frame["kv_transfer_ms"].to_numpy() >= 0)
    bad = frame.loc[latency_s < floor_s, ["tp", "ep", "batch", "ttft_ms"]]
    assert bad.empty, f"prefill faster than peak FLOP/s allows:\n{bad}"
    # Throughput can't beat the floor either: input tokens/s per GPU <= tokens per GPU-second of floor.
    max_rate = layouts.batch * ISL / (floor_s * layouts.gpus)
    assert np.all(frame["input_tokens_per_s_per_gpu"].to_numpy() <= max_rate * (1 + 1e-9))


def _ideal() -> Calibration:
    return Calibration(source="roofline", default=ideal_block(), blocks={})


@pytest.mark.parametrize("hardware_name", ["h100-sxm", "b200", "mi300x"])
@pytest.mark.parametrize("model_name", ["llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b", "qwen3-32b"])
def test_floors_are_tight_at_the_ideal_roofline(model_name: str, hardware_name: str) -> None:
    """With every efficiency at its limit, one dense request on one GPU sits right on both floors."""
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    layouts = Layouts.of(tp=1, batch=1)
    decode = evaluate(model, hardware, "fp8", "decode", layouts, ISL, OSL, calibration=_ideal())
    ratio = decode["tpot_ms"].iloc[0] * 1e-3 / _decode_floor_s(model, hardware, "fp8", layouts)[0]
    assert 1.0 <= ratio < 1.05
    prefill = evaluate(model, hardware, "fp8", "prefill", layouts, ISL, OSL, calibration=_ideal())
    latency_s = (prefill["ttft_ms"].iloc[0] - prefill["kv_transfer_ms"].iloc[0]) * 1e-3
    ratio = latency_s / _prefill_floor_s(model, hardware, "fp8", layouts)[0]
    assert 1.0 <= ratio < 1.15


# --------------------------------------------------------------------------- monotone trends

TREND_CASES = [
    ("llama-3.1-8b", "h100-sxm", "fp8", 1, 1),
    ("llama-3.1-70b", "h200-sxm", "fp8", 4, 1),
    ("qwen3-235b-a22b", "h200-sxm", "fp8", 8, 8),
    ("deepseek-r1", "gb200-nvl72", "fp4", 8, 8),
    ("gpt-oss-120b", "b200", "fp4", 2, 2),
]
BATCHES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])


@pytest.mark.parametrize(("model_name", "hardware_name", "precision", "tp", "ep"), TREND_CASES)
def test_decode_trends_with_batch(
    model_name: str, hardware_name: str, precision: Precision, tp: int, ep: int
):
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    frame = evaluate(model, hardware, precision, "decode", Layouts.of(tp=tp, ep=ep, batch=BATCHES), ISL, OSL)
    per_user = frame["tokens_per_s_per_user"].to_numpy()
    assert np.all(np.diff(per_user) < 0), per_user
    output = frame["output_tokens_per_s"].to_numpy()
    small = BATCHES <= 64
    assert np.all(np.diff(output[small]) > 0), output
    # Batch 64 shares one weight read among many requests: far more than 8x the batch-1 rate for a dense
    # model. A MoE batch of 64 touches most experts where batch 1 reads only its top-k (about 16x the
    # expert bytes for Qwen3's 8 of 128), so it gains less: more than 4x.
    assert output[BATCHES == 64][0] > (4 if model.moe is not None else 8) * output[0]
    assert np.all(np.diff(frame["kv_cache_per_gpu_gb"].to_numpy()) > 0)


@pytest.mark.parametrize(("model_name", "hardware_name", "precision", "tp", "ep"), TREND_CASES)
def test_prefill_ttft_grows_with_isl(
    model_name: str, hardware_name: str, precision: Precision, tp: int, ep: int
):
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    isl = np.array([128, 512, 2048, 8192, 32768])
    frame = evaluate(
        model, hardware, precision, "prefill", Layouts.of(tp=tp, ep=ep, batch=np.ones_like(isl)), isl, OSL
    )
    ttft = frame["ttft_ms"].to_numpy()
    assert np.all(np.diff(ttft) > 0), ttft
    # Causal attention makes the longest prompt cost more than linearly.
    assert ttft[-1] / ttft[-2] > 32768 / 8192 * 0.9


def test_chunked_pipeline_prefill_cuts_long_prompt_ttft() -> None:
    model, hardware = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    frame = evaluate(
        model, hardware, "fp4", "prefill", Layouts.of(tp=8, pp=[1, 4], ep=8, batch=1), 131072, 1024
    )
    one, four = frame.iloc[0], frame.iloc[1]
    assert (one["gpus"], four["gpus"]) == (8, 32)
    assert one["ttft_ms"] / four["ttft_ms"] > 2.0
    ratio = four["input_tokens_per_s_per_gpu"] / one["input_tokens_per_s_per_gpu"]
    assert 0.7 <= ratio <= 1.3
