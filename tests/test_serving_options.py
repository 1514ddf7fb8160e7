"""Two-batch overlap and EPLB: hand-checked physics, and the optional measurement columns.

Expected values are explicit arithmetic on published config numbers (Qwen3-235B-A22B:
hidden 4096, 64 query and 4 KV heads of 128, 128 experts of width 1536, 8 per token,
94 layers; H200: 1979 fp8 TFLOP/s, 450 GB/s NVLink each way), not the planner's helpers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from planner.catalog import load_hardware, load_model
from planner.cli import main
from planner.errors import LayoutError, SpecError
from planner.measurements import DEFAULT_MEASUREMENTS, load_measurements, predict_row
from planner.perf import Calibration, EfficiencyBlock, Layouts, ServingOptions, evaluate
from planner.perf.context import PerfContext
from planner.perf.memory import weight_bytes_per_gpu
from planner.perf.step import moe_load_imbalance, stage_step_cost

# --------------------------------------------------------------------------- two-batch overlap by hand

QWEN_LAYERS = 94
QWEN_NON_EXPERT = 4096 * 128 * (2 * 64 + 2 * 4) + 4096 * 128  # Q, O, K, V projections + router
QWEN_EXPERT = 3 * 4096 * 1536  # gate, up, down of one expert
H200_FP8_FLOPS_PER_S = 1979e12
NVLINK_BYTES_PER_S = 450e9
Z_MAX_OF_8 = 1.4342  # Blom's expected maximum of 8 standard normal draws: Phi^-1(7.625 / 8.25)


def _qwen_ctx(collective_efficiency: float, sm_slowdown: float = 1.0) -> PerfContext:
    """Every efficiency at its limit, no fixed costs, equally popular experts (imbalance ratio 1)."""
    block = EfficiencyBlock(
        ep_normal_compute_slowdown_ratio=sm_slowdown,
        gemm_efficiency_fraction=1.0,
        gemm_half_saturation_tokens=1.0,
        memory_efficiency_fraction=1.0,
        collective_efficiency_fraction=collective_efficiency,
        collective_latency_us=0.5,
        ep_normal_latency_us=0.5,
        grouped_gemm_efficiency_fraction=1.0,
        grouped_gemm_half_saturation_tokens=1.0,
        step_overhead_ms=0.0,
        moe_load_imbalance_ratio=1.0,
    )
    calibration = Calibration(source="hand check", default=block, blocks={})
    return PerfContext.build(load_model("qwen3-235b-a22b"), load_hardware("h200-sxm"), "fp8", calibration)


def _by_hand(tokens_per_rank: float, collective_efficiency: float) -> tuple[float, float]:
    """(compute, EP all-to-all) seconds per GPU of one pass of attention-DP8 EP8, all 94 layers."""
    m = tokens_per_rank
    pairs_per_gpu = 8 * m * 8 / 8  # 8 ranks x m tokens x 8 experts each, over 8 GPUs
    imbalance = 1 + Z_MAX_OF_8 * math.sqrt((1 - 1 / 8) / pairs_per_gpu)  # routing a finite batch
    # Rows per expert GEMM on the busiest GPU: 8m tokens hit every one of the 128 experts.
    expert_rows = 8 * m * 8 * imbalance / 128
    dense_s = 2 * m * QWEN_NON_EXPERT / (H200_FP8_FLOPS_PER_S * m / (m + 1))
    expert_s = (
        2 * pairs_per_gpu * QWEN_EXPERT * imbalance / (H200_FP8_FLOPS_PER_S * expert_rows / (expert_rows + 1))
    )
    # Each token goes to 7/8 of its 8 experts off-GPU: fp8 out (1 byte) and bf16 back (2 bytes) per element.
    bytes_out = m * imbalance * 8 * (7 / 8) * 4096 * (1 + 2)
    # Normal mode (far above the low-latency kernels' token limit): one latency each for dispatch and combine.
    a2a_s = bytes_out / (NVLINK_BYTES_PER_S * collective_efficiency) + 2 * 0.5e-6
    return QWEN_LAYERS * (dense_s + expert_s), QWEN_LAYERS * a2a_s


def _pass(ctx: PerfContext, tokens_per_rank: float, overlap: bool):
    layouts = Layouts.of(tp=1, ep=8, attention_dp=8, batch=8)
    return stage_step_cost(
        ctx,
        layouts,
        tokens_per_rank=np.array([tokens_per_rank]),
        attention_flops_per_rank_layer=np.zeros(1),
        kv_read_bytes_per_gpu_layer=np.zeros(1),
        head_tokens_per_rank=np.zeros(1),
        options=ServingOptions.of(1, two_batch_overlap=overlap),
    )


@pytest.mark.parametrize("collective_efficiency", [1.0, 0.4])
def test_two_batch_overlap_hides_ep_communication(collective_efficiency: float) -> None:
    """Without overlap a pass is compute + all-to-all; with it, two half passes whose all-to-all
    runs under the other half's compute: 2 x max(compute, all-to-all) of a half."""
    m = 65536
    ctx = _qwen_ctx(collective_efficiency)
    compute_s, a2a_s = _by_hand(m, collective_efficiency)
    half_compute_s, half_a2a_s = _by_hand(m / 2, collective_efficiency)

    plain = _pass(ctx, m, overlap=False)
    assert plain.compute_s[0] == pytest.approx(compute_s, rel=1e-6)
    assert plain.communication_s[0] == pytest.approx(a2a_s, rel=1e-6)
    assert plain.memory_s[0] == 0.0  # 65536 tokens per rank: every GEMM is compute bound
    assert plain.body_s[0] == pytest.approx(compute_s + a2a_s, rel=1e-6)

    overlapped = _pass(ctx, m, overlap=True)
    assert overlapped.body_s[0] == pytest.approx(2 * max(half_compute_s, half_a2a_s), rel=1e-6)
    # The breakdown still adds up: what stays visible of the all-to-all is communication.
    assert overlapped.communication_s[0] == pytest.approx(2 * max(half_a2a_s - half_compute_s, 0.0), rel=1e-6)
    assert overlapped.body_s[0] < plain.body_s[0]
    if collective_efficiency == 1.0:
        # NVLink at full speed: the all-to-all (~1.2 s) hides entirely under the compute (~1.4 s).
        assert half_a2a_s < half_compute_s
        assert overlapped.communication_s[0] == 0.0
    else:
        assert half_a2a_s > half_compute_s  # link-bound: the compute hides under the all-to-all


def test_normal_mode_kernels_slow_the_overlapped_compute() -> None:
    """65536 tokens per rank use normal-mode EP kernels, whose SMs slow the other half's compute 1.25x."""
    m = 65536
    half_compute_s, half_a2a_s = _by_hand(m / 2, 1.0)
    overlapped = _pass(_qwen_ctx(1.0, sm_slowdown=1.25), m, overlap=True)
    assert overlapped.compute_s[0] == pytest.approx(2 * 1.25 * half_compute_s, rel=1e-6)
    assert overlapped.body_s[0] == pytest.approx(2 * max(1.25 * half_compute_s, half_a2a_s), rel=1e-6)
    # A decode-sized pass (64 tokens per rank) uses low-latency kernels: no slowdown.
    small = _pass(_qwen_ctx(1.0, sm_slowdown=1.25), 64, overlap=True)
    plain = _pass(_qwen_ctx(1.0), 64, overlap=True)
    assert small.compute_s[0] == pytest.approx(plain.compute_s[0], rel=1e-12)


def test_two_batch_overlap_needs_expert_parallelism() -> None:
    """Without EP there is no dispatch/combine to hide, so the option changes nothing."""
    model, hardware = load_model("llama-3.1-70b"), load_hardware("h100-sxm")
    layouts = Layouts.of(tp=4, batch=[1, 64])
    off = evaluate(model, hardware, "fp8", "decode", layouts, 1024, 128)
    on = evaluate(model, hardware, "fp8", "decode", layouts, 1024, 128, two_batch_overlap=True)
    pd.testing.assert_frame_equal(off, on)


# --------------------------------------------------------------------------- EPLB


def test_eplb_removes_the_popularity_skew_but_not_the_sampling_spread() -> None:
    ideal = _qwen_ctx(1.0)
    skewed = ideal.efficiency.model_copy(update={"moe_load_imbalance_ratio": 1.9})
    ctx = PerfContext(ideal.arch, ideal.hardware, ideal.precision, skewed, "hand check")
    ep = np.array([32.0, 32.0])
    pairs = np.array([32 * 1024.0, 32 * 1024.0])  # 1024 token-expert pairs per GPU on average
    off, on = moe_load_imbalance(ctx, ep, pairs, np.array([False, True]))
    sampling = 2.0667 * math.sqrt((1 - 1 / 32) / 1024)  # Blom's maximum of 32 draws x binomial spread
    assert on == pytest.approx(1 + sampling, rel=1e-4)
    assert off == pytest.approx(1 + math.sqrt(0.9**2 + sampling**2), rel=1e-4)
    assert on < off
    # Bigger batches even out: the sampling spread shrinks as 1/sqrt(pairs).
    big = moe_load_imbalance(ctx, ep[:1], pairs[:1] * 100, np.array([True]))[0]
    assert big - 1 == pytest.approx(sampling / 10, rel=1e-3)
    # EP=1 holds every expert on every GPU: nothing to balance.
    assert moe_load_imbalance(ctx, np.ones(1), pairs[:1], np.array([False]))[0] == 1.0


def test_eplb_speeds_up_wide_expert_parallel_prefill() -> None:
    model, hardware = load_model("deepseek-v3"), load_hardware("h100-sxm")
    layouts = Layouts.of(tp=1, ep=32, attention_dp=32, batch=32 * 16)
    kwargs = dict(isl_tokens=1024, osl_tokens=1)
    plain = evaluate(model, hardware, "fp8", "prefill", layouts, **kwargs)
    balanced = evaluate(model, hardware, "fp8", "prefill", layouts, eplb=True, **kwargs)
    both = evaluate(model, hardware, "fp8", "prefill", layouts, eplb=True, two_batch_overlap=True, **kwargs)
    rate = "input_tokens_per_s_per_gpu"
    assert plain[rate].iloc[0] < balanced[rate].iloc[0] < both[rate].iloc[0]
    # The redundant copies cost memory: 9 experts per MoE layer per GPU instead of 8.
    # one more block-FP8 expert (a byte plus a 4-byte scale per 128 x 128 block) in each of 58 MoE layers
    extra_gb = 58 * 1 * 3 * 7168 * 2048 * (1 + 4 / (128 * 128)) / 1e9
    assert balanced["weights_per_gpu_gb"].iloc[0] - plain["weights_per_gpu_gb"].iloc[0] == pytest.approx(
        extra_gb, rel=1e-9
    )


def test_eplb_makes_ep72_over_256_experts_expressible() -> None:
    """SGLang's EP72 decode: 256 experts + 32 redundant copies = 288 slots, 4 per GPU."""
    model, hardware = load_model("deepseek-r1"), load_hardware("h200-sxm")
    layouts = Layouts.of(tp=1, ep=72, attention_dp=72, batch=72)
    with pytest.raises(LayoutError, match="EP=72 does not divide the 256 experts"):
        evaluate(model, hardware, "fp8", "decode", layouts, 2000, 100)
    frame = evaluate(model, hardware, "fp8", "decode", layouts, 2000, 100, eplb=True)
    h = 7168
    attention = h * 1536 + 1536 * 128 * (128 + 64) + h * (512 + 64) + 512 * 128 * (128 + 128) + 128 * 128 * h
    per_moe_layer = attention + 3 * h * 2048 + h * 256 + 4 * 3 * h * 2048  # shared, router, 4 expert slots
    block_fp8 = 1 + 4 / (128 * 128)  # the published format: a byte plus a 4-byte scale per 128 x 128 block
    expected = (
        3 * (attention + 3 * h * 18432) + 58 * per_moe_layer
    ) * block_fp8 + 2 * 129280 * h * 2  # + bf16 vocab
    ctx = PerfContext.build(model, hardware, "fp8")
    assert float(weight_bytes_per_gpu(ctx, layouts, eplb=True)[0]) == pytest.approx(expected, rel=1e-12)
    assert frame["weights_per_gpu_gb"].iloc[0] == pytest.approx(expected / 1e9, rel=1e-12)


# --------------------------------------------------------------------------- measurement columns


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_option_columns_absent_mean_off(tmp_path: Path) -> None:
    bare = pd.read_csv(DEFAULT_MEASUREMENTS).drop(columns=["two_batch_overlap", "eplb"])
    frame = load_measurements(_write(bare, tmp_path / "bare.csv"))
    assert not frame["two_batch_overlap"].any()
    assert not frame["eplb"].any()
    # Without EPLB the EP72 decode row is not expressible again, and says why.
    row = frame.set_index("id").loc["sglang-h100-decode-2k"].copy()
    row["id"] = "sglang-h100-decode-2k"
    assert "EP=72" in (predict_row(row).skip_reason or "")


def test_option_columns_parse_spellings(tmp_path: Path) -> None:
    frame = pd.read_csv(DEFAULT_MEASUREMENTS).head(5)
    frame["two_batch_overlap"] = ["true", "Yes", "1", "false", None]
    frame["eplb"] = ["FALSE", "no", "0", "", "TRUE"]
    parsed = load_measurements(_write(frame, tmp_path / "spellings.csv"))
    assert parsed["two_batch_overlap"].tolist() == [True, True, True, False, False]
    assert parsed["eplb"].tolist() == [False, False, False, False, True]


def test_shipped_rows_carry_the_options_their_sources_state() -> None:
    frame = load_measurements().set_index("id")
    sglang = frame.index.str.startswith("sglang-")
    hopper = frame.index.str.startswith("sglang-h100-")
    # SGLang on H100 overlaps two batches; on GB200 NVL72 the blogs state it is disabled.
    assert frame.loc[hopper, "two_batch_overlap"].all()
    assert not frame.loc[sglang & ~hopper, "two_batch_overlap"].any()
    assert frame.loc[sglang, "eplb"].all()
    assert not frame.loc[~sglang, "two_batch_overlap"].any()
    assert not frame.loc[~sglang, "eplb"].any()


def test_bad_option_value_names_file_column_and_row(tmp_path: Path) -> None:
    frame = pd.read_csv(DEFAULT_MEASUREMENTS)
    frame.loc[2, "eplb"] = "maybe"
    path = _write(frame, tmp_path / "bad-eplb.csv")
    with pytest.raises(SpecError) as err:
        load_measurements(path)
    assert err.value.field == "eplb"
    assert err.value.path == str(path)
    assert "maybe" in str(err.value)
    assert str(frame.loc[2, "id"]) in str(err.value)

    result = CliRunner().invoke(main, ["validate", "--measurements", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    for fragment in (str(path), "'eplb'", "maybe", "true or false"):
        assert fragment in lines[0]
