"""The shipped measurement set: every row cites its source, and per-GPU metrics are priced per GPU."""

import pandas as pd
import pytest

from planner.measurements import load_measurements, predict_row


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return load_measurements()


def test_every_row_names_its_public_source_and_ids_are_unique(rows):
    assert rows["id"].is_unique
    assert rows["source"].fillna("").str.len().gt(10).all()


def test_the_set_covers_dense_and_moe_on_hopper_and_blackwell_at_fp8_and_fp4(rows):
    moe = rows["model"].str.contains("qwen3-235b|qwen3-30b|deepseek|gpt-oss")
    blackwell = rows["hardware"].isin(["b200", "gb200-nvl72"])
    for is_moe in (True, False):
        for on_blackwell, precision in ((False, "fp8"), (True, "fp4")):
            cell = rows[(moe == is_moe) & (blackwell == on_blackwell) & (rows["precision"] == precision)]
            assert len(cell) >= 10, (is_moe, on_blackwell, precision)


def test_per_gpu_metric_divides_the_instance_rate_by_its_gpus(rows):
    row = rows.set_index("id").loc["trt25-qwen3-235b-a22b-b200-1024-1024"].copy()
    row["id"] = "per-gpu"
    per_gpu = predict_row(row, check_ceiling=False)
    row["metric"] = "output_tokens_per_s_total"
    total = predict_row(row, check_ceiling=False)
    assert int(row["gpus_per_instance"]) == 4
    assert per_gpu.predicted == pytest.approx(total.predicted / 4)
    row["metric"] = "output_tokens_per_s_per_node"
    assert predict_row(row, check_ceiling=False).predicted == pytest.approx(total.predicted * 8 / 4)
