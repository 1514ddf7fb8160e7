"""One definition of gain: stdout, comparison.csv, frontier.png's ratio panel and the sweep agree."""

from __future__ import annotations

import re

import matplotlib.axes
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.compare import DECISION_FLOOR_FRACTION, gain_summary, gains_at, step_comparison, verdict_gain
from planner.frontier import solve_frontier
from planner.outputs import frontier_png
from planner.problem import resolve
from planner.sweep import summarize_frontier

INSTANCE = "qwen3-32b-h200-4000-500"
TARGET = 60.0
OVERRIDES = {"cluster.max_gpus": 8, "slo.tokens_per_s_per_user_targets": [TARGET]}


def _frame(*rows: tuple[str, float, float]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["mode", "tokens_per_s_per_user", "tokens_per_s_per_gpu"])
    frame["prefill_decode_gpu_ratio"] = np.where(frame["mode"] == "disaggregated", 1.0, np.nan)
    return frame


def test_hand_checked_gain_summary() -> None:
    # disaggregated 100 / 80 / 10 at 10 / 20 / 40 tokens/s per user; aggregated 100 / 40 / 1.
    comparison = step_comparison(
        _frame(
            ("disaggregated", 10, 100),
            ("disaggregated", 20, 80),
            ("disaggregated", 40, 10),
            ("aggregated", 10, 100),
            ("aggregated", 20, 40),
            ("aggregated", 40, 1),
        )  # fmt: skip
    )
    np.testing.assert_allclose(comparison["disaggregated_over_aggregated"], [1.0, 2.0, 10.0])
    # The tail point (10 vs 1 tokens/s per GPU) is below a quarter of the best (100): not summarized.
    assert DECISION_FLOOR_FRACTION == 0.25
    assert list(comparison["in_decision_range"]) == [True, True, False]
    gains = gain_summary(comparison, targets=[15.0, 50.0])
    # Between 10 and 20 the best plans are the 20-tokens/s ones: 2.0x over the whole (log) range.
    assert gains["typical_gain"] == pytest.approx(2.0)
    assert gains["peak_gain"] == pytest.approx(2.0)
    assert gains["peak_gain_at_tokens_per_s_per_user"] == 20
    assert gains["min_gain"] == pytest.approx(1.0)
    assert gains["decision_range_high_tokens_per_s_per_user"] == 20
    # At 15 tokens/s per user: 80 / 40; at 50 no plan reaches: only the reachable target counts.
    assert gains_at(comparison, [15.0, 50.0]) == {
        15.0: pytest.approx(2.0),
        50.0: pytest.approx(np.nan, nan_ok=True),
    }
    assert gains["gain_at_target"] == pytest.approx(2.0)


def test_typical_gain_weighs_each_factor_of_interactivity_alike() -> None:
    comparison = step_comparison(
        _frame(
            ("disaggregated", 10, 100),
            ("disaggregated", 20, 90),
            ("disaggregated", 80, 60),
            ("aggregated", 10, 100),
            ("aggregated", 20, 60),
            ("aggregated", 80, 60),
        )  # fmt: skip
    )
    # 1.5x on (10, 20], 1.0x on (20, 80]: one doubling at 1.5x, two at 1.0x.
    expected = np.exp((np.log(2) * np.log(1.5) + np.log(4) * np.log(1.0)) / np.log(8))
    assert gain_summary(comparison)["typical_gain"] == pytest.approx(expected)


def test_the_verdict_reads_the_target_when_the_instance_has_one() -> None:
    # Disaggregation wins 2x over most of the range but loses 20% at the target of 10 tokens/s per user.
    frame = _frame(
        ("disaggregated", 10, 80), ("disaggregated", 100, 60),
        ("aggregated", 10, 100), ("aggregated", 100, 30),
    )  # fmt: skip
    free = summarize_frontier(frame)
    assert free["verdict"] == "disaggregate"
    assert free["verdict_reads"] == "typical"
    at_target = summarize_frontier(frame, targets=[10.0])
    assert at_target["gain_at_target"] == pytest.approx(0.8)
    assert at_target["verdict"] == "co-locate"
    assert at_target["verdict_reads"] == "target"
    assert at_target["target_tokens_per_s_per_user"] == "10"
    assert verdict_gain(gain_summary(step_comparison(frame), [10.0])) == (pytest.approx(0.8), "target")


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("gain")
    args = ["frontier", INSTANCE, "--out", str(out), "--quiet"]
    args += ["--set", "cluster.max_gpus=8", "--set", f"slo.tokens_per_s_per_user_targets=[{TARGET:g}]"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result, out


@pytest.mark.solver
def test_summary_csv_plot_and_sweep_read_the_same_gain(frontier_run, monkeypatch: pytest.MonkeyPatch) -> None:
    result, out = frontier_run
    frame = pd.read_csv(out / "frontier.csv")
    csv = pd.read_csv(out / "comparison.csv")
    gains = gain_summary(csv, [TARGET])

    # 1. comparison.csv is the step comparison of frontier.csv, with the decision range marked.
    expected = step_comparison(frame)
    pd.testing.assert_frame_equal(csv[expected.columns], expected, check_dtype=False)

    # 2. stdout prints that gain: typical, range, peak and the target's.
    text = result.stdout
    typical = re.search(r"typically ([\d.]+)x over ([\d.,]+)-([\d.,]+) tokens/s per user", text)
    assert typical is not None, text
    assert float(typical.group(1)) == pytest.approx(gains["typical_gain"], abs=0.005)
    high = float(typical.group(3).replace(",", ""))
    assert high == pytest.approx(gains["decision_range_high_tokens_per_s_per_user"], abs=0.05)
    peak = re.search(r"to ([\d.]+)x \(at ([\d.,]+) tokens/s per user\)", text)
    assert float(peak.group(1)) == pytest.approx(gains["peak_gain"], abs=0.005)
    inside = csv[csv["in_decision_range"]]
    assert gains["peak_gain"] == pytest.approx(inside["disaggregated_over_aggregated"].max())
    at_target = re.search(rf"target of {TARGET:g} tokens/s per user: ([\d.]+)x", text)
    expected_at_target = gains_at(csv, [TARGET])[TARGET]
    assert float(at_target.group(1)) == pytest.approx(expected_at_target, abs=0.005)

    # 3. the ratio panel of frontier.png draws exactly comparison.csv's gain, and marks the same peak.
    drawn: dict[str, list] = {"step": [], "plot": []}
    original_step, original_plot = matplotlib.axes.Axes.step, matplotlib.axes.Axes.plot
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "step",
        lambda ax, x, y, *a, **k: (
            drawn["step"].append((list(x), list(y))) or original_step(ax, x, y, *a, **k)
        ),
    )
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "plot",
        lambda ax, *a, **k: drawn["plot"].append((a, k)) or original_plot(ax, *a, **k),
    )
    problem = resolve(INSTANCE, None, OVERRIDES)
    frontier_png(solve_frontier(problem))
    ratio_curves = [
        y for x, y in drawn["step"] if len(y) == len(csv) and x == list(csv["tokens_per_s_per_user"])
    ]
    assert any(np.allclose(y, csv["disaggregated_over_aggregated"], equal_nan=True) for y in ratio_curves), (
        "the ratio panel must draw comparison.csv's gain"
    )
    peaks = [a for a, k in drawn["plot"] if k.get("label") == "peak"]
    assert peaks == [(gains["peak_gain_at_tokens_per_s_per_user"], gains["peak_gain"], "v")]

    # 4. the sweep's summary of the same frontier reads the same numbers and bases its verdict on the target.
    row = summarize_frontier(frame, [TARGET])
    assert row["typical_gain"] == pytest.approx(gains["typical_gain"])
    assert row["peak_gain"] == pytest.approx(gains["peak_gain"])
    assert row["gain_at_target"] == pytest.approx(expected_at_target)
    assert row["verdict_reads"] == "target"
    expected = (
        "disaggregate"
        if expected_at_target >= 1.05
        else "co-locate"
        if expected_at_target <= 1 / 1.05
        else "either"
    )
    assert row["verdict"] == expected


@pytest.mark.solver
def test_sweep_summary_reads_each_cells_target(tmp_path) -> None:
    import yaml

    from planner import sweep
    from planner.grid import load_grid

    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(
        yaml.safe_dump(
            {
                "base": INSTANCE,
                "set": {"cluster.max_gpus": 8},
                "axes": {"slo.tokens_per_s_per_user_targets": [None, [TARGET]]},
            }
        )
    )
    cells = sweep.resolve_cells(load_grid(grid_path), None, "highs")
    records = {c.key: sweep.solve_cell(c.problem, None, "highs", 60.0) for c in cells}
    _, summary = sweep.merge(load_grid(grid_path), cells, records)
    free, targeted = summary.iloc[0], summary.iloc[1]
    assert free["verdict_reads"] == "typical"
    assert targeted["verdict_reads"] == "target"
    assert targeted["target_tokens_per_s_per_user"] == f"{TARGET:g}"
    csv = step_comparison(sweep.record_frame(records[cells[1].key]))
    assert targeted["gain_at_target"] == pytest.approx(gains_at(csv, [TARGET])[TARGET])
    assert free["typical_gain"] == pytest.approx(targeted["typical_gain"])


def test_an_owned_fleet_reads_the_gain_on_total_tokens_per_s() -> None:
    # max_throughput: on a fixed budget the plans are compared by what the whole fleet delivers.
    frame = _frame(("disaggregated", 10, 100), ("aggregated", 10, 100))
    frame["output_tokens_per_s"] = [600.0, 800.0]  # disaggregation leaves GPUs idle on this budget
    per_gpu = step_comparison(frame)
    fleet = step_comparison(frame, by="output_tokens_per_s")
    assert per_gpu["disaggregated_over_aggregated"].tolist() == [1.0]
    assert fleet["disaggregated_over_aggregated"].tolist() == [0.75]
    assert fleet["disaggregated_tokens_per_s_per_gpu"].tolist() == [100.0]  # the columns keep their meaning
    assert summarize_frontier(frame, by="output_tokens_per_s")["verdict"] == "co-locate"
