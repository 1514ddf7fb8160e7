"""Quantization as a spec: formats by hand, the block-divisibility refusal, old files unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from planner.catalog import load_hardware, load_model
from planner.errors import LayoutError
from planner.perf import Layouts, evaluate, layout_problems
from planner.perf.architecture import Architecture
from planner.perf.context import PerfContext
from planner.perf.memory import weight_bytes_per_gpu
from planner.space import candidate_table
from planner.specs import Instance, QuantizationSpec

QWEN_BLOCK_FP8 = QuantizationSpec(weights="fp8_block128", activations="fp8")


def test_precision_words_keep_their_old_formats() -> None:
    assert QuantizationSpec.for_precision("fp8") == QuantizationSpec(
        weights="fp8_per_tensor", activations="fp8", kv_cache="fp8"
    )
    assert QuantizationSpec.for_precision("fp4").weights == "nvfp4"
    assert QuantizationSpec.for_precision("fp4").kv_cache == "fp8"
    # A partial spec fills its gaps from the precision.
    assert QuantizationSpec(weights="int4_weight_only").resolved("bf16") == QuantizationSpec(
        weights="int4_weight_only", activations="bf16", kv_cache="bf16"
    )
    model, hardware = load_model("llama-3.1-70b"), load_hardware("h100-sxm")
    layouts = Layouts.of(tp=[2, 4, 8], batch=16)
    word = evaluate(model, hardware, "fp8", "decode", layouts, 2048, 256)
    spec = evaluate(model, hardware, QuantizationSpec.for_precision("fp8"), "decode", layouts, 2048, 256)
    pd.testing.assert_frame_equal(word, spec)


def test_weight_and_kv_bytes_per_format_by_hand() -> None:
    model = load_model("llama-3.1-70b")
    # int4 weight-only: half a byte plus one fp16 scale per group of 128.
    int4 = Architecture.from_spec(model, QuantizationSpec(weights="int4_weight_only", activations="bf16"))
    assert int4.weight_bytes_per_param == 0.5 + 2 / 128
    assert int4.precision == "bf16"
    # fp8 block-128: one fp32 scale per 128 x 128 block.
    block = Architecture.from_spec(model, QWEN_BLOCK_FP8)
    assert block.weight_bytes_per_param == 1 + 4 / 16384
    mx = Architecture.from_spec(model, QuantizationSpec(weights="mxfp4", activations="fp4"))
    assert mx.weight_bytes_per_param == 0.5 + 1 / 32
    # KV cache dtype is its own choice: K and V, 80 layers, 8 heads of 128, per token.
    fp4_kv = Architecture.from_spec(model, QuantizationSpec(activations="fp4", kv_cache="fp4"))
    assert fp4_kv.kv_bytes_per_token() == pytest.approx(2 * 80 * 8 * 128 * (0.5 + 1 / 16))
    bf16_kv = Architecture.from_spec(model, QuantizationSpec(activations="fp8", kv_cache="bf16"))
    assert bf16_kv.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2


def test_int4_weights_per_gpu_by_hand() -> None:
    model, hardware = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    ctx = PerfContext.build(model, hardware, QuantizationSpec(weights="int4_weight_only", activations="bf16"))
    per_layer = 4096 * 128 * (2 * 32 + 2 * 8) + 3 * 4096 * 14336
    expected = 32 * per_layer * (0.5 + 2 / 128) + 2 * 128256 * 4096 * 2  # bf16 embedding and head
    assert weight_bytes_per_gpu(ctx, Layouts.of(tp=1))[0] == pytest.approx(expected)


def test_block_fp8_refuses_expert_shards_that_cut_a_block() -> None:
    """Qwen3-235B-A22B's experts are 1536 wide: over 8 GPUs that is 192 columns, 1.5 blocks of 128."""
    model, hardware = load_model("qwen3-235b-a22b"), load_hardware("h200-sxm")
    with pytest.raises(LayoutError) as refused:
        evaluate(model, hardware, QWEN_BLOCK_FP8, "aggregated", Layouts.of(tp=8, ep=1, batch=8), 1000, 1000)
    message = str(refused.value)
    for fact in ("1536 wide", "over 8 GPUs each holds 192", "128-wide scale blocks of fp8_block128"):
        assert fact in message
    assert "{1, 2, 3, 4, 6, 12}" in message  # the expert-TP values whose shards hold whole blocks
    # 1536 / 4 = 384 = 3 blocks, and EP2 over TP8 leaves 4 GPUs per expert: both run.
    problems = layout_problems(
        model,
        hardware,
        Layouts.of(tp=[4, 8, 8, 1], ep=[1, 2, 8, 8], attention_dp=[1, 1, 1, 8], batch=8),
        quantization=QWEN_BLOCK_FP8,
    )
    assert problems == [None, None, None, None]
    # Per-tensor fp8 has no blocks to cut.
    assert layout_problems(
        model, hardware, Layouts.of(tp=8, batch=8), quantization=QuantizationSpec.for_precision("fp8")
    ) == [None]


def test_candidate_table_leaves_out_block_cutting_layouts() -> None:
    model, hardware = load_model("qwen3-235b-a22b"), load_hardware("h200-sxm")
    kwargs = dict(isl_tokens=1024, osl_tokens=1024, ttft_ms_max=1e8, max_gpus=8, prune=False)
    block = candidate_table(model, hardware, QWEN_BLOCK_FP8, "decode", **kwargs)
    plain = candidate_table(model, hardware, "fp8", "decode", **kwargs)
    expert_tp = lambda f: f["tp"] * f["attention_dp"] // f["ep"]  # noqa: E731
    assert (expert_tp(plain) == 8).any()
    assert not (expert_tp(block) == 8).any()
    assert set(block["calibration_block"]) == {"hopper/fp8"}


def test_instance_quantization_is_optional_and_checked() -> None:
    base = {
        "name": "q",
        "model": "qwen3-235b-a22b",
        "hardware": "h200-sxm",
        "precision": "fp8",
        "traffic": {"isl_tokens": 1024, "osl_tokens": 1024},
        "cluster": {"max_gpus": 8},
    }
    old = Instance.model_validate(base)
    assert old.quantization is None
    assert old.quantization_spec == QuantizationSpec.for_precision("fp8")
    new = Instance.model_validate({**base, "quantization": {"weights": "fp8_block128"}})
    assert new.quantization_spec == QuantizationSpec(
        weights="fp8_block128", activations="fp8", kv_cache="fp8"
    )
    with pytest.raises(ValidationError, match="set precision: fp4"):
        Instance.model_validate({**base, "quantization": {"activations": "fp4"}})
