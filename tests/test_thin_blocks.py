"""Every prediction names its calibration block and that block's rows; thin blocks warn."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from planner.calibrate import FITTED_FIELDS
from planner.catalog import load_hardware
from planner.cli import main
from planner.perf.calibration import Calibration, load_calibration
from planner.thin_blocks import ROWS_PER_FITTED_CONSTANT, block_support, thin_block_rows

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=16")


def _calibration_with_rows(tmp_path: Path, rows: int) -> Path:
    """The shipped calibration, claiming ``rows`` rows behind its hopper/fp8 block."""
    data = load_calibration().model_dump()
    data["rows_per_block"] = {"hopper/fp8": rows}
    path = tmp_path / f"calibration-{rows}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


THIN_BLOCK_ROWS = thin_block_rows()


def test_threshold_is_two_rows_per_fitted_constant():
    assert ROWS_PER_FITTED_CONSTANT == 2
    assert 2 * len(FITTED_FIELDS) == THIN_BLOCK_ROWS


def test_block_support_reads_the_rows_the_calibration_records():
    shipped = load_calibration()
    hopper = block_support(shipped, load_hardware("h100-sxm"), "fp8")
    assert (hopper.block, hopper.rows) == ("hopper/fp8", shipped.rows_per_block["hopper/fp8"])
    blackwell = block_support(shipped, load_hardware("b200"), "fp4")
    assert blackwell.block == "blackwell/fp4"
    assert blackwell.rows == shipped.rows_per_block["blackwell/fp4"]
    assert blackwell.thin == (blackwell.rows < THIN_BLOCK_ROWS)


def test_a_generation_without_a_block_rests_on_no_row_of_its_own():
    support = block_support(Calibration(source="t"), load_hardware("mi300x"), "fp8")
    assert (support.block, support.rows, support.thin) == ("default", 0, True)
    assert "default block" in support.warning("mi300x", "fp8")


def test_thin_warning_names_block_rows_and_fix():
    support = block_support(
        Calibration(source="t", blocks={"hopper/fp8": {}}, rows_per_block={"hopper/fp8": 3}),
        load_hardware("h100-sxm"),
        "fp8",
    )
    text = support.warning("h100-sxm", "fp8")
    assert "hopper/fp8 rests on 3 measured rows" in text
    assert f"fewer than {THIN_BLOCK_ROWS}" in text
    assert "disagg calibrate" in text
    enough = Calibration(
        source="t", blocks={"hopper/fp8": {}}, rows_per_block={"hopper/fp8": THIN_BLOCK_ROWS}
    )
    assert block_support(enough, load_hardware("h100-sxm"), "fp8").warning("h100-sxm", "fp8") is None


@pytest.mark.parametrize("rows", [3, 40])
def test_frontier_csv_carries_the_block_and_warns_only_when_thin(rows, tmp_path):
    calibration = _calibration_with_rows(tmp_path, rows)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["frontier", *SMALL, "--calibration", str(calibration), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "frontier.csv")
    assert (frame["calibration_block"] == "hopper/fp8").all()
    assert (frame["calibration_rows"] == rows).all()
    assert ("rests on 3 measured rows" in result.stderr) == (rows < THIN_BLOCK_ROWS)


def test_plan_json_carries_the_block_and_text_warns(tmp_path):
    calibration = _calibration_with_rows(tmp_path, 3)
    args = ["plan", *SMALL, "--min-tokens-per-s-per-user", "20", "--calibration", str(calibration)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (payload,) = json.loads(result.stdout)
    assert payload["calibration_block"] == "hopper/fp8"
    assert payload["calibration_rows"] == 3
    assert payload["calibration_thin"] is True
    text = CliRunner().invoke(main, args)
    assert "warning: calibration block hopper/fp8 rests on 3 measured rows" in text.stderr


def test_candidates_and_evaluate_carry_the_row_count(tmp_path):
    out = tmp_path / "decode.csv"
    result = CliRunner().invoke(main, ["candidates", *SMALL, "--phase", "decode", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert (frame["calibration_rows"] == load_calibration().rows_per_block["hopper/fp8"]).all()
    evaluated = CliRunner().invoke(
        main,
        ["evaluate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "decode", "--tp", "1"]
        + ["--batch", "8", "--isl", "1000", "--osl", "100", "--json"],
    )
    assert json.loads(evaluated.stdout)["calibration_rows"] == load_calibration().rows_per_block["hopper/fp8"]
