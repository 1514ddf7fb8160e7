"""``disagg capacity``: one persistent model per mode, re-solved per load and target, as CSV and XLSX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import planner.optimize.optimizer as optimizer_module
from planner.advise import advise
from planner.capacity import capacity_table
from planner.cli import main
from planner.problem import resolve

INSTANCE = "llama-3.1-70b-h100-8k-1k"
CASE = {"traffic.isl_tokens": 16384, "slo.ttft_ms_max": 2000}
LOADS = [1.0, 2.0, 4.0, 6.0]
TARGETS = [30.0, 60.0]


@pytest.fixture(scope="module")
def table_and_builds():
    built = []
    original = optimizer_module.build_model
    optimizer_module.build_model = lambda *a, **k: built.append(1) or original(*a, **k)
    try:
        frame = capacity_table(resolve(INSTANCE, overrides=CASE), LOADS, TARGETS)
    finally:
        optimizer_module.build_model = original
    return frame, built


def test_each_mode_is_built_once_and_re_solved(table_and_builds):
    frame, built = table_and_builds
    assert len(built) == 2  # one model per mode for 4 loads x 2 targets
    assert len(frame) == 2 * len(LOADS) * len(TARGETS)


def test_cells_serve_their_load_and_fail_only_beyond_the_budget(table_and_builds):
    frame, _ = table_and_builds
    feasible = frame[frame["feasible"]]
    assert (feasible["capacity_requests_per_s"] >= feasible["offered_requests_per_s"] * (1 - 1e-9)).all()
    assert (feasible["tokens_per_s_per_user"] >= feasible["target_tokens_per_s_per_user"]).all()
    assert (feasible["total_gpus"] <= 32).all()
    beyond = frame["offered_requests_per_s"] > frame["max_requests_per_s_on_budget"]
    assert (frame["feasible"] == ~beyond).all()
    assert beyond.any()
    for _, rows in feasible.groupby(["mode", "target_tokens_per_s_per_user"]):
        assert rows.sort_values("offered_requests_per_s")["total_gpus"].is_monotonic_increasing


def test_a_cell_is_the_min_gpus_answer_at_that_load(table_and_builds):
    frame, _ = table_and_builds
    cell = frame[(frame["offered_requests_per_s"] == 2.0) & (frame["target_tokens_per_s_per_user"] == 60.0)]
    alone = advise(
        resolve(INSTANCE, overrides={**CASE, "objective": "min_gpus", "traffic.requests_per_s": 2.0}), 60.0
    )
    for _, row in cell.iterrows():
        assert row["total_gpus"] == alone.plans[row["mode"]].total_gpus
    best = cell[cell["recommended"]]
    assert len(best) == 1
    assert best["total_gpus"].iloc[0] == min(p.total_gpus for p in alone.plans.values())


def test_cost_prices_the_offered_tokens_on_whole_nodes(table_and_builds):
    frame, _ = table_and_builds
    feasible = frame[frame["feasible"]]
    np.testing.assert_allclose(feasible["billed_gpus"], feasible["nodes"] * 8)
    np.testing.assert_allclose(feasible["cost_usd_per_h"], feasible["nodes"] * 8 * 2.99)
    tokens = feasible["offered_requests_per_s"] * 1024
    np.testing.assert_allclose(
        feasible["cost_usd_per_million_output_tokens"], feasible["cost_usd_per_h"] / (tokens * 3600 / 1e6)
    )
    np.testing.assert_allclose(feasible["power_kw"], feasible["billed_gpus"] * 0.7)


def test_capacity_cli_writes_csv_and_xlsx(tmp_path):
    args = ["capacity", INSTANCE, *[x for k, v in CASE.items() for x in ("--set", f"{k}={v}")]]
    args += [
        "--load",
        "1",
        "--load",
        "3",
        "--min-tokens-per-s-per-user",
        "60",
        "--out",
        str(tmp_path),
        "--xlsx",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "capacity.csv")
    book = pd.read_excel(tmp_path / "capacity.xlsx", sheet_name=None)
    assert set(book) == {"capacity", "gpus_recommended"}
    assert len(book["capacity"]) == len(csv) == 4
    assert book["gpus_recommended"].shape == (2, 2)


def test_capacity_without_loads_names_the_option(tmp_path):
    result = CliRunner().invoke(
        main, ["capacity", INSTANCE, "--min-tokens-per-s-per-user", "60", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--load" in result.output
