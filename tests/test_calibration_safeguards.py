"""`calibrate` protects itself: layout typos, nothing to fit, under-determined fits, bounds, progress."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from planner.calibrate import FITTED_FIELDS, distinct_configurations, fit_block, fit_blocks, fitted_fields
from planner.cli import main
from planner.errors import SpecError
from planner.measurements import DEFAULT_MEASUREMENTS, load_measurements, predict_row
from planner.perf.calibration import Calibration, EfficiencyBlock

TRUE = EfficiencyBlock(gemm_efficiency_fraction=0.62, memory_efficiency_fraction=0.74, step_overhead_ms=1.5)


@pytest.fixture(scope="module")
def h100_dense() -> pd.DataFrame:
    """Dense H100 rows of the shipped file with values the model predicts under known constants."""
    rows = load_measurements()
    rows = rows[rows["hardware"].eq("h100-sxm") & rows["id"].str.startswith("trt-llama")]
    truth = Calibration(source="truth", blocks={"hopper/fp8": TRUE})
    values = [predict_row(r, truth, check_ceiling=False).predicted for _, r in rows.iterrows()]
    return rows.assign(value=np.round(values, 3))


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_gpus_per_instance_disagreeing_with_the_layout_is_an_error_naming_the_row(tmp_path):
    frame = pd.read_csv(DEFAULT_MEASUREMENTS, dtype={"batch": str})
    frame.loc[5, "gpus_per_instance"] = 3
    path = _write(frame, tmp_path / "typo.csv")
    for command in (["validate", "--measurements", str(path)], ["calibrate", "--measurements", str(path)]):
        out = tmp_path / "never.yaml"
        result = _run(*command, *(["--out", str(out)] if command[0] == "calibrate" else []))
        assert result.exit_code == 2, result.output
        assert frame.loc[5, "id"] in result.stderr
        assert "gpus_per_instance 3 != tp x pp x attention_dp" in result.stderr
        assert "nan" not in result.output
        assert not out.exists()


def test_calibrate_with_every_row_skipped_exits_2_and_writes_nothing(tmp_path):
    frame = pd.read_csv(DEFAULT_MEASUREMENTS, dtype={"batch": str})
    frame = frame[frame["id"].str.startswith("mlperf")]  # all above the physical ceiling
    path = _write(frame, tmp_path / "skipped.csv")
    out = tmp_path / "c.yaml"
    result = _run("calibrate", "--measurements", str(path), "--out", str(out), "--no-loo", "--quiet")
    assert result.exit_code == 2, result.output
    assert "none of the 3 rows can be predicted" in result.stderr
    assert not out.exists()


def test_under_determined_fit_is_refused_then_allowed_with_warnings(h100_dense, tmp_path):
    two = _write(h100_dense.head(2), tmp_path / "two.csv")
    out = tmp_path / "c.yaml"
    refused = _run("calibrate", "--measurements", str(two), "--out", str(out), "--no-loo", "--quiet")
    assert refused.exit_code == 2
    free = len(fitted_fields(h100_dense.head(2)))  # throughput rows only: the latency-only constant stays
    assert free == len(FITTED_FIELDS) - 1
    assert f"hopper/fp8 has 2 distinct measured configuration(s) for {free} free constants" in refused.stderr
    assert "--allow-underdetermined" in refused.stderr
    assert not out.exists()
    allowed = _run(
        "calibrate",
        "--measurements",
        str(two),
        "--out",
        str(out),
        "--no-loo",
        "--quiet",
        "--allow-underdetermined",
    )
    assert allowed.exit_code == 0, allowed.output
    assert "under-determined" in allowed.stderr
    assert "no row constrains" in allowed.stderr  # TP1 dense rows never touch the collective constants
    written = yaml.safe_load(out.read_text())
    assert written["rows_per_block"]["hopper/fp8"] == 2


def test_fit_reports_unidentified_constants_and_records_rows(h100_dense):
    start = Calibration(source="start")
    calibration, fits = fit_blocks(h100_dense, start, source="t")
    (fit,) = fits
    assert calibration.rows_per_block == {"hopper/fp8": len(h100_dense)}
    assert fit.distinct_rows == len(h100_dense)
    # Every row is TP1 or a single-GPU / single-node dense TP group with no EP and no attention-DP:
    assert "moe_load_imbalance_ratio" in fit.unidentified
    assert "attention_dp_balance_fraction" in fit.unidentified
    assert "memory_efficiency_fraction" not in fit.unidentified
    assert 0 < fit.identified_constants < len(FITTED_FIELDS)


def test_constants_pushed_past_physics_are_reported_at_their_bound(h100_dense):
    # Three times faster than the truth: no achievable fraction explains it.
    fast = h100_dense.assign(value=h100_dense["value"] * 3)
    fit = fit_block(fast, Calibration(source="start"), "hopper/fp8")
    # An efficiency fraction ends on its physical ceiling of 1 (which one depends on the unfitted step cost).
    assert any(
        entry.split("=")[0].endswith("_efficiency_fraction") and entry.endswith("=1 (upper bound)")
        for entry in fit.at_bounds
    ), fit.at_bounds
    assert any("physical range" in w for w in fit.warnings())


def test_progress_lines_name_each_block(h100_dense):
    lines: list[str] = []
    fit_blocks(h100_dense, Calibration(source="s"), source="t", progress=lines.append)
    assert lines[0].startswith("fitting block 1/1 hopper/fp8")
    assert "rms log error" in lines[-1]


def test_distinct_configurations_counts_measurements_not_restatements(h100_dense):
    rows = h100_dense.head(3)
    assert distinct_configurations(rows) == 3
    repeated = pd.concat([rows, rows.assign(id=rows["id"] + "-copy")])
    assert distinct_configurations(repeated) == 3
    per_node = rows.assign(metric="output_tokens_per_s_per_node")
    assert distinct_configurations(pd.concat([rows, per_node])) == 3
    tpot = rows.assign(metric="tpot_ms")
    assert distinct_configurations(pd.concat([rows, tpot])) == 6


def test_library_fit_refuses_too_few_rows_with_a_spec_error(h100_dense):
    with pytest.raises(SpecError, match="under-determined"):
        fit_blocks(h100_dense.head(1), Calibration(source="s"), source="t")
