"""The calibration fit recovers known constants from synthetic data, and reports skipped rows."""

import numpy as np
import pandas as pd
import pytest

from planner.calibrate import fit_block, fit_calibration
from planner.measurements import load_measurements, predict_row, validate
from planner.perf.calibration import Calibration, EfficiencyBlock, load_calibration

TRUE = EfficiencyBlock(
    gemm_efficiency_fraction=0.62,
    gemm_half_saturation_tokens=90.0,
    attention_efficiency_fraction=0.55,
    memory_efficiency_fraction=0.74,
    collective_efficiency_fraction=0.8,
    collective_latency_us=12.0,
    step_overhead_ms=1.5,
)


# A bad start in the constants the fit moves; those it keeps (collectives, fitted to microbenchmarks,
# the per-step cost, and the per-layer time, which throughput rows alone do not move) are the truth's.
BAD_START = TRUE.model_copy(update={"gemm_efficiency_fraction": 0.3, "memory_efficiency_fraction": 0.5})


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """The reference's dense H100 rows, with values the model predicts under known constants."""
    rows = load_measurements()
    rows = rows[
        rows["hardware"].eq("h100-sxm") & rows["mode"].eq("aggregated") & ~rows["id"].str.startswith("mlperf")
    ]
    truth = Calibration(source="truth", blocks={"hopper/fp8": TRUE})
    values = [predict_row(r, truth, check_ceiling=False).predicted for _, r in rows.iterrows()]
    return rows.assign(value=np.round(values, 3))


def test_fit_recovers_known_constants(synthetic):
    start = Calibration(source="start", blocks={"hopper/fp8": BAD_START})
    fit = fit_block(synthetic, start, "hopper/fp8")
    # The well-identified constants come back to within a few percent (the prior pulls weakly to the start).
    assert fit.block.gemm_efficiency_fraction == pytest.approx(TRUE.gemm_efficiency_fraction, rel=0.05)
    assert fit.block.memory_efficiency_fraction == pytest.approx(TRUE.memory_efficiency_fraction, rel=0.05)
    # And the fitted model reproduces the synthetic measurements.
    fitted = start.model_copy(update={"blocks": {"hopper/fp8": fit.block}})
    errors = validate(synthetic, fitted)["error_fraction"].abs()
    assert errors.max() < 0.03


def test_fit_moves_from_a_bad_start(synthetic):
    start = Calibration(source="start", blocks={"hopper/fp8": BAD_START})
    before = validate(synthetic, start)["error_fraction"].abs().median()
    after = (
        validate(synthetic, fit_calibration(synthetic, start, source="t"))["error_fraction"].abs().median()
    )
    assert before > 0.05
    assert after < before / 3


def test_fitted_constants_stay_in_physical_bounds(synthetic):
    fitted = fit_calibration(synthetic, load_calibration(), source="t")
    for block in fitted.blocks.values():
        # Re-validating enforces every Field bound of the block.
        EfficiencyBlock.model_validate(block.model_dump())
        assert 0 < block.gemm_efficiency_fraction <= 1
        assert 0 < block.memory_efficiency_fraction <= 1


def test_default_block_is_the_best_supported_fit(synthetic):
    fitted = fit_calibration(synthetic, load_calibration(), source="t")
    assert fitted.default == fitted.blocks["hopper/fp8"]
    assert "hopper/fp8:" in fitted.source


def test_shipped_defaults_meet_the_accuracy_goal_on_most_rows():
    """Median over every row; the worst-case bound holds for dense models (MoE is issue 10's open gap)."""
    frame = load_measurements()
    table = validate(frame)
    predicted = table[table["skip_reason"] == ""]
    assert len(predicted) >= 160
    errors = predicted["error_fraction"].abs()
    assert errors.median() <= 0.15
    dense = predicted["model"].str.startswith("llama")
    assert dense.sum() >= 80
    # Worst dense row with the shipped fit: Llama-3.1-405B on H100 at 20k/2k, +35.4% (long context:
    # the KV reads of 405B's 126 layers at 22k tokens are where the roofline is most optimistic).
    assert errors[dense].max() <= 0.40


def test_unexpressible_rows_are_skipped_with_a_reason_not_dropped():
    table = validate(load_measurements())
    assert len(table) == len(load_measurements())
    skipped = table[table["skip_reason"] != ""]
    assert skipped["predicted"].isna().all()
    # The MLPerf rows, whose approximate ISL puts them above the peak-FLOP/s ceiling, and the
    # GB200 prefill instances that offload weights to Grace memory (the model has no offload).
    mlperf = skipped["id"].str.startswith("mlperf")
    assert skipped.loc[mlperf, "skip_reason"].str.contains("physical ceiling").all()
    assert skipped.loc[~mlperf, "id"].str.contains("gb200.*prefill").all()
    assert skipped.loc[~mlperf, "skip_reason"].str.contains("fits in memory").all()


def test_ep72_decode_is_expressible_only_with_eplb():
    """256 experts over 72 GPUs needs EPLB's redundant copies (288 slots, 4 per GPU)."""
    rows = load_measurements().set_index("id", drop=False)
    row = rows.loc["sglang-h100-decode-2k"]
    assert predict_row(row).skip_reason is None
    without = predict_row(row.drop("eplb"))  # a row without the column: EPLB off
    assert "EP=72" in without.skip_reason
    assert "256 experts" in without.skip_reason
