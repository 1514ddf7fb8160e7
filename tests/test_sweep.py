"""``disagg sweep``: grid product, streamed and resumable cells, failure isolation, Dask, dry run, verdicts.

The grids are tiny (Llama-3.1-70B on H100 with budgets of 1-4 GPUs), so a whole sweep takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

from planner import sweep
from planner.cli import main
from planner.compare import step_comparison
from planner.grid import load_grid
from planner.perf.calibration import load_calibration
from planner.sweep import design_points, resolve_cells, run_sweep, summarize_frontier

BASE = "llama-3.1-70b-h100-8k-1k"
TINY = {
    "base": BASE,
    "description": "three budgets x two prompt shapes",
    "axes": {
        "cluster.max_gpus": [1, 2, 4],
        "traffic": [{"isl_tokens": 8192, "osl_tokens": 1024}, {"isl_tokens": 4096, "osl_tokens": 512}],
    },
}
"""Six cells: one GPU fits no layout for 8k prompts (an error) and only co-locates 4k ones (batch 1 in
512-token chunks), two GPUs only co-locate, four GPUs do both."""
OUTPUTS = ("frontiers.parquet", "frontiers.csv", "summary.csv", "provenance.json", "sweep.xlsx")
VOLATILE = {"frontiers.csv": ["solve_time_s"], "summary.csv": ["cell_wall_time_s"]}
"""Columns that depend on the machine's speed."""


def _grid(folder: Path, data: dict, name: str = "grid.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Result]:
    """The tiny grid swept once on the local pool: (grid file, output folder, CLI result)."""
    root = tmp_path_factory.mktemp("sweep")
    grid = _grid(root, TINY)
    out = root / "out"
    result = _run("sweep", grid, "--out", out, "--workers", "2", "--xlsx")
    assert result.exit_code == 0, result.output + result.stderr
    return grid, out, result


@pytest.fixture(scope="module")
def cluster():
    """An in-process Dask cluster (one worker thread): the same code path as a remote scheduler."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        yield local


def _summary(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv", keep_default_na=False, na_values=[""])


# --------------------------------------------------------------------------- the grid


def test_grid_is_the_product_of_its_axes(tmp_path: Path) -> None:
    data = {
        "base": BASE,
        "set": {"cluster.max_gpus": 8},
        "axes": {
            "model": ["llama-3.1-70b", "llama-3.3-70b"],
            "traffic": [{"isl_tokens": 1024, "osl_tokens": 128}, {"isl_tokens": 4096}],
            "scenario": [None, "h200"],
        },
    }
    grid = load_grid(_grid(tmp_path, data))
    cells = grid.cells()
    assert grid.size == len(cells) == 8
    assert [c.index for c in cells] == list(range(8))
    # itertools.product order: the last axis varies fastest
    assert [c.values["scenario"] for c in cells[:2]] == [None, "h200"]
    assert cells[2].values["traffic"] == {"isl_tokens": 4096}
    assert cells[4].values["model"] == "llama-3.3-70b"
    # a group's mapping becomes dotted overrides, so unnamed fields keep the base's values
    assert cells[3].overrides == {"cluster.max_gpus": 8, "model": "llama-3.1-70b", "traffic.isl_tokens": 4096}
    assert grid.axis_columns() == ["model", "traffic.isl_tokens", "traffic.osl_tokens", "scenario"]

    problems = [sc.problem for sc in resolve_cells(grid, load_calibration(), "highs")]
    assert problems[3].instance.traffic.osl_tokens == 1024  # from the base instance
    assert problems[3].instance.traffic.isl_tokens == 4096
    assert problems[1].hardware.name == "h200-sxm"
    assert problems[0].hardware.name == "h100-sxm"
    assert problems[5].model.name == "llama-3.3-70b"
    assert {p.max_gpus for p in problems} == {8}
    keys = {sc.key for sc in resolve_cells(grid, load_calibration(), "highs")}
    assert len(keys) == 8, "every distinct question has its own key"


def test_shipped_example_grid_is_valid() -> None:
    grid = load_grid(Path(__file__).parent.parent / "instances" / "sweeps" / "paper-trends.yaml")
    assert grid.size == 48
    assert set(grid.axes) == {"model", "traffic", "hardware.scale_up_domain_gpus"}


# --------------------------------------------------------------------------- a sweep


def test_sweep_writes_the_merged_outputs(swept: tuple[Path, Path, Result]) -> None:
    grid, out, result = swept
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert len(list((out / "cells").glob("*.json"))) == 6
    assert "6 cells: 6 solved, 0 resumed" in result.output
    assert "design points" in result.stderr
    assert "cell" in result.stderr

    summary = _summary(out)
    assert len(summary) == 6
    assert list(summary["cell"]) == list(range(6))
    assert list(summary.columns[:4]) == [
        "cell",
        "cluster.max_gpus",
        "traffic.isl_tokens",
        "traffic.osl_tokens",
    ]
    assert list(summary["cluster.max_gpus"]) == [1, 1, 2, 2, 4, 4]
    assert list(summary["traffic.isl_tokens"]) == [8192, 4096] * 3

    frontiers = pd.read_parquet(out / "frontiers.parquet")
    csv = pd.read_csv(out / "frontiers.csv")
    assert len(frontiers) == len(csv) > 0
    assert list(frontiers.columns[:5]) == ["cell", *summary.columns[1:4], "mode"]
    assert set(frontiers["cell"]) == {1, 2, 3, 4, 5}
    for cell, rows in frontiers.groupby("cell"):
        row = summary.set_index("cell").loc[cell]
        assert (rows["cluster.max_gpus"] == row["cluster.max_gpus"]).all()
        assert (rows["total_gpus"] <= row["cluster.max_gpus"]).all()
        assert row["design_points_evaluated"] > 0
    np.testing.assert_allclose(frontiers["tokens_per_s_per_gpu"], csv["tokens_per_s_per_gpu"])

    book = pd.read_excel(out / "sweep.xlsx", sheet_name=None)
    assert set(book) == {"summary", "frontiers"}
    assert len(book["frontiers"]) == len(frontiers)

    info = json.loads((out / "provenance.json").read_text())
    assert info["cells"] == 6
    assert info["cells_with_errors"] == 1
    assert info["grid_spec"]["base"] == BASE
    assert info["executor"].startswith("local process pool")
    assert len(info["sweep_sha256"]) == 64


def test_a_failing_cell_records_its_error_and_the_others_finish(swept: tuple[Path, Path, Result]) -> None:
    _, out, _ = swept
    summary = _summary(out).set_index("cell")
    one_gpu_long = (summary["cluster.max_gpus"] == 1) & (summary["traffic.isl_tokens"] == 8192)
    failed = summary[one_gpu_long]
    assert len(failed) == 1
    assert failed["error"].str.contains("fits in memory").all()
    assert failed["error"].str.contains("raise cluster.max_gpus").all()
    assert failed["verdict"].isna().all()
    done = summary[~one_gpu_long]
    assert done["error"].isna().all()
    # one GPU holds the 70B model in fp8 for 4k prompts only co-located, one request in small chunks
    assert (summary[summary["cluster.max_gpus"] == 1]["verdict"].dropna() == "co-locate").all()
    # two GPUs cannot hold a prefill and a decode instance of a 70B model: only co-location has a plan
    two = summary[summary["cluster.max_gpus"] == 2]
    assert (two["verdict"] == "co-locate").all()
    assert two["modes_without_plan"].str.startswith("disaggregated:").all()
    assert two["best_disaggregated_tokens_per_s_per_gpu"].isna().all()
    four = summary[summary["cluster.max_gpus"] == 4]
    assert four["verdict"].isin(["disaggregate", "co-locate", "either"]).all()
    assert (four["prefill_decode_gpu_ratio_min"] <= four["prefill_decode_gpu_ratio_max"]).all()


def test_rerun_resumes_without_solving_finished_cells(
    swept: tuple[Path, Path, Result], tmp_path: Path
) -> None:
    grid, first, _ = swept
    out = tmp_path / "out"
    shutil.copytree(first, out)
    cells = sorted((out / "cells").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in cells}

    again = _run("sweep", grid, "--out", out, "--no-progress")
    assert again.exit_code == 0, again.output + again.stderr
    assert "6 cells: 0 solved, 6 resumed" in again.output
    assert {p: p.stat().st_mtime_ns for p in cells} == stamps, "finished cells are not rewritten"
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), pd.read_csv(first / "summary.csv"))

    cells[0].unlink()  # as if the sweep had been interrupted before this cell finished
    partial = _run("sweep", grid, "--out", out, "--no-progress")
    assert partial.exit_code == 0, partial.output + partial.stderr
    assert "6 cells: 1 solved, 5 resumed" in partial.output
    assert cells[0].is_file()
    assert not list(out.rglob("*.tmp")), "no half-written file is left behind"
    left = pd.read_csv(out / "frontiers.csv").drop(columns=VOLATILE["frontiers.csv"])
    right = pd.read_csv(first / "frontiers.csv").drop(columns=VOLATILE["frontiers.csv"])
    pd.testing.assert_frame_equal(left, right)


def test_local_dask_cluster_gives_the_same_frontiers(swept: tuple[Path, Path, Result], cluster) -> None:
    grid, pool_out, _ = swept
    out = pool_out.parent / "dask"
    result = _run("sweep", grid, "--out", out, "--scheduler", cluster.scheduler_address, "--no-progress")
    assert result.exit_code == 0, result.output + result.stderr
    info = json.loads((out / "provenance.json").read_text())
    assert info["executor"].startswith("dask cluster")
    for name in ("frontiers.csv", "summary.csv"):
        left = pd.read_csv(out / name).drop(columns=VOLATILE[name])
        right = pd.read_csv(pool_out / name).drop(columns=VOLATILE[name])
        pd.testing.assert_frame_equal(left, right)


def test_an_unexpected_crash_is_isolated_and_retried(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"base": BASE, "axes": {"cluster.max_gpus": [2, 3]}}
    grid = load_grid(_grid(tmp_path, data))
    solve = sweep.solve_cell

    def flaky(problem, *args):
        if problem.max_gpus == 3:
            raise RuntimeError("worker lost")
        return solve(problem, *args)

    monkeypatch.setattr(sweep, "solve_cell", flaky)
    out = tmp_path / "out"
    first = run_sweep(grid, out, scheduler=cluster.scheduler_address, progress=False)
    assert first.failed == 1
    assert len(first.internal_errors) == 1
    assert "worker lost" in first.summary.loc[1, "error"]
    assert first.summary.loc[0, "error"] == ""
    assert len(list((out / "cells").glob("*.json"))) == 1, "a crashed cell is not stored"

    monkeypatch.setattr(sweep, "solve_cell", solve)
    second = run_sweep(grid, out, scheduler=cluster.scheduler_address, progress=False)
    assert (second.solved, second.resumed, second.failed) == (1, 1, 0)


# --------------------------------------------------------------------------- dry run and bad grids


def test_dry_run_counts_cells_and_design_points(swept: tuple[Path, Path, Result], tmp_path: Path) -> None:
    grid, out, _ = swept
    result = _run("sweep", grid, "--dry-run")
    assert result.exit_code == 0, result.output + result.stderr
    cells = resolve_cells(load_grid(grid), load_calibration(), "highs")
    total = sum(sum(design_points(sc.problem).values()) for sc in cells)
    assert "6 cells (cluster.max_gpus 3 x traffic 2)" in result.output
    assert f"design points to evaluate: {total:,}" in result.output
    # the estimate is exactly what the solved cells priced
    summary = _summary(out)
    # (one GPU: the prefill and decode tables fail before pricing counts are kept, so only >1 GPU)
    solved = summary[summary["error"].isna() & (summary["cluster.max_gpus"] > 1)]
    estimate = {sc.cell.index: sum(design_points(sc.problem).values()) for sc in cells}
    assert list(solved["design_points_evaluated"]) == [estimate[c] for c in solved["cell"]]

    fresh = tmp_path / "never"
    assert _run("sweep", grid, "--dry-run", "--out", fresh).exit_code == 0
    assert not fresh.exists()
    resumable = _run("sweep", grid, "--dry-run", "--out", out)
    assert "already finished in" in resumable.output
    assert "6 of 6 cells" in resumable.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"axes": {"slo.ttft_max": [100]}}, ["field 'axes.slo.ttft_max'", "did you mean 'ttft_ms_max'"]),
        ({"axes": {"cluster.max_gpus": []}}, ["field 'axes.cluster.max_gpus'", "empty"]),
        ({"axes": {"cluster.max_gpus": 4}}, ["field 'axes.cluster.max_gpus'", "list of values"]),
        ({"axes": {"cluster.max_gpus": [4, 0]}}, ["field 'axes.cluster.max_gpus'", "cell 2 of 2"]),
        ({"axes": {"model": ["llama-9"]}}, ["field 'axes.model'", "unknown model"]),
        ({"axes": {"scenario": ["nope"]}}, ["field 'axes.scenario'", "unknown scenario 'nope'", "h200"]),
        ({"axes": {"traffic": [1024]}}, ["field 'axes.traffic'", "mapping"]),
        ({"axes": {"traffic": [{"isl": 1024}]}}, ["field 'axes.traffic.isl'", "isl_tokens"]),
        ({"axes": {"name": ["x"]}}, ["field 'axes.name'", "cannot be swept"]),
        ({"axes": {}}, ["field 'axes'", "at least one"]),
        ({"base": "no-such-instance"}, ["field 'base'", "unknown instance"]),
        ({"axis": {"cluster.max_gpus": [4]}}, ["field 'axis'", "did you mean 'axes'"]),
    ],
)
def test_bad_grid_is_one_error_naming_file_and_field(
    tmp_path: Path, change: dict, expected: list[str]
) -> None:
    data = {**TINY, **change}
    grid = _grid(tmp_path, data, name="bad-grid.yaml")
    out = tmp_path / "out"
    result = _run("sweep", grid, "--out", out)
    assert result.exit_code == 2, result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "bad-grid.yaml" in lines[0]
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.output + result.stderr
    assert not out.exists(), "nothing is written for a bad grid"


def test_missing_out_is_a_usage_error(swept: tuple[Path, Path, Result]) -> None:
    result = _run("sweep", swept[0])
    assert result.exit_code == 2
    assert "--out" in result.stderr


# --------------------------------------------------------------------------- the summary verdict


def _frontier(*rows: tuple[str, float, float]) -> pd.DataFrame:
    """Hand-made frontier rows: (mode, tokens/s per user, tokens/s per GPU)."""
    frame = pd.DataFrame(rows, columns=["mode", "tokens_per_s_per_user", "tokens_per_s_per_gpu"])
    frame["prefill_decode_gpu_ratio"] = np.where(frame["mode"] == "disaggregated", 0.5, np.nan)
    return frame


@pytest.mark.parametrize(
    ("rows", "verdict", "max_ratio", "at"),
    [
        # disaggregation gains 20% at high interactivity, ties at low
        (
            [
                ("disaggregated", 10, 100),
                ("disaggregated", 50, 60),
                ("aggregated", 10, 100),
                ("aggregated", 50, 50),
            ],
            "disaggregate",
            1.2,
            50,
        ),
        # co-location is 10% better everywhere
        ([("disaggregated", 10, 90), ("aggregated", 10, 100), ("aggregated", 20, 99)], "co-locate", 0.9, 10),
        # within 5% everywhere
        (
            [
                ("disaggregated", 10, 103),
                ("disaggregated", 30, 50),
                ("aggregated", 10, 100),
                ("aggregated", 30, 49),
            ],
            "either",
            1.03,
            10,
        ),
        # exactly 5% counts as a gain
        ([("disaggregated", 10, 105), ("aggregated", 10, 100)], "disaggregate", 1.05, 10),
        # 4.9% either way is a tie
        ([("disaggregated", 10, 104.9), ("aggregated", 10, 100)], "either", 1.049, 10),
        # loses 20% at a target of 10 tokens/s per user, wins 10% at every target above it up to 40
        # (the best plans there are the 40-tokens/s ones): the exact typical gain is 1.1x
        (
            [
                ("disaggregated", 10, 80),
                ("disaggregated", 40, 66),
                ("aggregated", 10, 100),
                ("aggregated", 40, 60),
            ],
            "disaggregate",
            1.1,
            40,
        ),
        # ... unless co-location keeps winning over most of the range: 20% behind up to 30, 10% ahead above
        (
            [
                ("disaggregated", 30, 80),
                ("disaggregated", 40, 66),
                ("aggregated", 30, 100),
                ("aggregated", 40, 60),
                ("aggregated", 10, 120),
                ("disaggregated", 10, 96),
            ],
            "co-locate",
            1.1,
            40,
        ),
        # only one mode has a plan
        ([("aggregated", 10, 100)], "co-locate", np.nan, np.nan),
        ([("disaggregated", 10, 100)], "disaggregate", np.nan, np.nan),
    ],
)
def test_verdict_on_hand_made_frontiers(rows: list, verdict: str, max_ratio: float, at: float) -> None:
    out = summarize_frontier(_frontier(*rows))
    assert out["verdict"] == verdict, out["typical_gain"]
    np.testing.assert_allclose(out["max_disaggregated_over_aggregated"], max_ratio, rtol=1e-12)
    np.testing.assert_allclose(out["max_ratio_at_tokens_per_s_per_user"], at)


def test_verdict_reads_frontiers_as_step_functions() -> None:
    # at 10 tokens/s/user disaggregated offers its best row at least that interactive (120 at 30),
    # aggregated its own (100); beyond 20 aggregated has no plan, so no ratio there
    frame = _frontier(
        ("disaggregated", 30, 120), ("disaggregated", 80, 40), ("aggregated", 10, 100), ("aggregated", 20, 90)
    )
    comparison = step_comparison(frame)
    assert list(comparison["tokens_per_s_per_user"]) == [10, 20, 30, 80]
    np.testing.assert_allclose(comparison["disaggregated_tokens_per_s_per_gpu"], [120, 120, 120, 40])
    np.testing.assert_allclose(comparison["aggregated_tokens_per_s_per_gpu"], [100, 90, np.nan, np.nan])
    out = summarize_frontier(frame)
    assert out["verdict"] == "disaggregate"
    assert out["max_disaggregated_over_aggregated"] == pytest.approx(120 / 90)
    assert out["max_ratio_at_tokens_per_s_per_user"] == 20
    assert out["min_disaggregated_over_aggregated"] == pytest.approx(1.2)
    assert out["disaggregated_max_tokens_per_s_per_user"] == 80
    assert out["aggregated_max_tokens_per_s_per_user"] == 20
    assert (out["disaggregated_points"], out["aggregated_points"]) == (2, 2)
    assert out["prefill_decode_gpu_ratio_min"] == out["prefill_decode_gpu_ratio_max"] == 0.5


def test_summary_ratios_match_the_frontier_comparison() -> None:
    from planner.frontier import solve_frontier
    from planner.problem import resolve

    frontier = solve_frontier(resolve(BASE, None, {"cluster.max_gpus": 4}))
    expected = frontier.comparison()
    got = step_comparison(sweep.record_frame(sweep.solve_cell(frontier.problem, None, "highs", 60.0)))
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)
    out = summarize_frontier(frontier.frame())
    ratio = expected["disaggregated_over_aggregated"]
    assert out["max_disaggregated_over_aggregated"] == pytest.approx(ratio.max())
    assert out["max_ratio_at_tokens_per_s_per_user"] == expected.loc[ratio.idxmax(), "tokens_per_s_per_user"]


def test_typical_gain_of_a_constant_ratio_is_that_ratio() -> None:
    # disaggregated is 1.25x aggregated at both Pareto points, so 1.25x at every target
    out = summarize_frontier(
        _frontier(
            ("disaggregated", 10, 125),
            ("disaggregated", 40, 50),
            ("aggregated", 10, 100),
            ("aggregated", 40, 40),
        )
    )
    assert out["typical_gain"] == pytest.approx(1.25)
    assert out["peak_gain"] == pytest.approx(1.25)
    assert out["verdict"] == "disaggregate"


def test_empty_frontier_has_no_verdict() -> None:
    out = summarize_frontier(pd.DataFrame())
    assert out["verdict"] == ""
    assert np.isnan(out["best_disaggregated_tokens_per_s_per_gpu"])
