"""Leave one system out: a system the physics transfers to is predicted well; one it does not, is exposed."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.crossval import PRIOR, _refit_without, family_of, system_of
from planner.measurements import load_measurements, predict_row
from planner.perf.calibration import Calibration, EfficiencyBlock

TRUE = EfficiencyBlock(gemm_efficiency_fraction=0.62, memory_efficiency_fraction=0.74, step_overhead_ms=1.5)
OFF_SYSTEM = "llama-3.1-8b@h100-sxm"
"""The system whose measurements are made 1.25x faster than the others (within the physical ceiling)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """Three dense H100 systems with values from known constants, one of them scaled; CLI run once."""
    rows = load_measurements()
    rows = rows[rows["hardware"].eq("h100-sxm") & rows["id"].str.startswith("trt-llama")]
    truth = Calibration(source="truth", blocks={"hopper/fp8": TRUE})
    values = np.array([predict_row(r, truth, check_ceiling=False).predicted for _, r in rows.iterrows()])
    off = (rows.apply(system_of, axis=1) == OFF_SYSTEM).to_numpy()
    rows = rows.assign(value=np.round(np.where(off, values * 1.25, values), 3))
    folder = tmp_path_factory.mktemp("cv")
    path, out = folder / "synthetic.csv", folder / "cv.csv"
    rows.to_csv(path, index=False)
    result = CliRunner().invoke(
        main, ["validate", "--measurements", str(path), "--cross-validate", "system", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    return result, pd.read_csv(out)


def test_every_row_is_predicted_held_out_with_its_system_and_family(run):
    _, table = run
    assert table["cv_predicted"].notna().all()
    assert set(table["system"]) == {
        "llama-3.1-8b@h100-sxm",
        "llama-3.3-70b@h100-sxm",
        "llama-3.1-405b@h100-sxm",
    }
    assert set(table["family"]) == {"dense/hopper"}
    assert {"family_cv_median_error_fraction", "family_cv_median_abs_error_fraction"} <= set(table.columns)


def test_held_out_error_exposes_the_system_the_others_do_not_explain(run):
    _, table = run
    off = table[table["system"] == OFF_SYSTEM]
    # Held out, the off system is predicted from systems that run 1.25x slower: 1/1.25 - 1 = -20%.
    assert off["cv_error_fraction"].median() == pytest.approx(1 / 1.25 - 1, abs=0.05)
    # In sample the fit splits the difference, so its error there looks smaller than held out.
    assert off["error_fraction"].abs().median() < off["cv_error_fraction"].abs().median()


def test_printed_report_has_the_family_table_and_wall_time(run):
    result, _ = run
    assert "dense/hopper" in result.stdout
    assert "held-out median" in result.stdout
    assert "leave-one-system-out over 3 systems in" in result.stdout
    assert "system 1/3:" in result.stderr  # progress


def test_family_reads_moe_and_generation():
    rows = load_measurements().set_index("id", drop=False)
    assert family_of(rows.loc["trt25-qwen3-235b-a22b-b200-1024-1024"]) == "moe/blackwell"
    assert family_of(rows.loc["trt-llama-3.1-8b-h100-sxm-128-128"]) == "dense/hopper"


def test_a_block_left_without_rows_is_dropped_so_predictions_fall_back():
    full = Calibration(
        source="t",
        blocks={"hopper/fp8": TRUE, "blackwell/fp8": TRUE},
        rows_per_block={"hopper/fp8": 30, "blackwell/fp8": 2},
    )
    empty = load_measurements().head(0)
    refit = _refit_without(empty, pd.Series(dtype=str), {"blackwell/fp8"}, full, PRIOR, 10)
    assert "blackwell/fp8" not in refit.blocks
    assert refit.rows_per_block == {"hopper/fp8": 30}
    assert refit.default == TRUE
