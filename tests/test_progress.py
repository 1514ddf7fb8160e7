"""Long runs talk: progress lines on stderr by default, none with --quiet, solver logs with -v."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from planner.cli import main
from planner.progress import ROOT as LOGGER

ROOT = Path(__file__).resolve().parent.parent
SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=8")
MIX = "llama-3.1-70b-h100-diurnal"
LINE = re.compile(r"^\[\s*\d+\.\d s\] ")

pytestmark = pytest.mark.solver


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    rows = [f"2026-01-05T0{h}:00:00Z,1,{load}" for h, load in enumerate([1.0, 2.0, 1.5])]
    path.write_text("period_start,duration_h,requests_per_s\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def frontier_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Result, Path]]:
    runs = {}
    for name, flags in {"default": (), "quiet": ("--quiet",), "verbose": ("-v",)}.items():
        out = tmp_path_factory.mktemp(name)
        runs[name] = (_run("frontier", *SMALL, "--out", out, *flags), out)
    return runs


def test_frontier_reports_every_traced_point_on_stderr(frontier_runs) -> None:
    result, out = frontier_runs["default"]
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines
    assert all(LINE.match(line) for line in lines), lines
    frame = pd.read_csv(out / "frontier.csv")
    for mode in ("disaggregated", "aggregated"):
        points = [line for line in lines if f"] {mode}: point " in line]
        # One line per solve that found a plan; the Pareto filter can only drop some.
        assert len(points) >= (frame["mode"] == mode).sum() > 0
    assert not any(LINE.match(line) for line in result.stdout.splitlines()), "progress belongs on stderr"


def test_quiet_silences_progress_and_keeps_the_results(frontier_runs) -> None:
    result, out = frontier_runs["quiet"]
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    default, default_out = frontier_runs["default"]
    assert result.stdout == default.stdout.replace(str(default_out), str(out))


def test_verbose_adds_each_solve_and_the_solver_log(frontier_runs) -> None:
    result, _ = frontier_runs["verbose"]
    assert result.exit_code == 0, result.output
    default, _ = frontier_runs["default"]
    assert "highs: Optimal in" in result.stderr
    assert "Solving report" in result.stderr  # HiGHS's own log
    assert len(result.stderr.splitlines()) > len(default.stderr.splitlines())


def test_progress_handler_is_removed_after_the_command(frontier_runs) -> None:
    logger = logging.getLogger(LOGGER)
    assert logger.handlers == []
    assert not logger.isEnabledFor(logging.INFO) or logger.level == logging.NOTSET


def test_quiet_and_verbose_together_is_a_user_error(tmp_path: Path) -> None:
    result = _run("frontier", *SMALL, "--out", tmp_path / "o", "-q", "-v")
    assert result.exit_code == 2
    assert "--quiet and --verbose" in result.stderr
    assert not (tmp_path / "o").exists()


def test_calibrate_reports_each_block_and_refit(tmp_path: Path) -> None:
    rows = (ROOT / "planner" / "reference" / "measurements.csv").read_text().splitlines()[:4]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    # 3 rows, fewer than the fitted constants: refused unless allowed (test_calibration_safeguards).
    allow = "--allow-underdetermined"
    result = _run("calibrate", "--measurements", path, "--out", tmp_path / "c.yaml", allow)
    assert result.exit_code == 0, result.output
    assert "fitting block 1/1 hopper/fp8: 3 rows" in result.stderr
    assert len(re.findall(r"leave-one-out \d/3: ", result.stderr)) == 3
    quiet = _run("calibrate", "--measurements", path, "--out", tmp_path / "q.yaml", "--quiet", allow)
    assert quiet.exit_code == 0
    # Only the fit's warnings (under-determined, unconstrained constants) remain.
    assert quiet.stderr
    assert all(line.startswith("warning: ") for line in quiet.stderr.splitlines())


def test_elastic_reports_each_strategy_and_says_what_is_not_proven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    result = _run("elastic", MIX, "--set", "cluster.max_nodes=2", "--trace", _trace(tmp_path), "--out", out)
    assert result.exit_code == 0, result.output
    for strategy in ("dynamic", "static", "fixed_ratio"):
        assert re.search(rf"\] {strategy}: [\d,.]+ GPU-hours", result.stderr), (strategy, result.stderr)
    summary = pd.read_csv(out / "summary.csv").set_index("strategy")
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("fixed_ratio:"))
    assert re.search(r"best of \d+ candidate ratios", line)
    assert summary.loc["fixed_ratio", "note"] in line
    assert "NOT proven" not in result.stdout  # this small day is proven by its per-period bounds
    # A strategy that stops at the node limit says so on the console, with its certified gap.
    frame = summary.reset_index()
    frame.loc[frame.strategy == "fixed_ratio", ["termination", "mip_gap"]] = ["node_limit", 0.034]
    from planner.elastic_outputs import elastic_summary

    text = elastic_summary(SimpleNamespace(summary_frame=lambda: frame, unserved_periods=[]))
    unproven = [x for x in text.splitlines() if "NOT proven" in x]
    assert len(unproven) == 1
    assert unproven[0].strip().startswith("fixed_ratio:")
    assert "NOT proven optimal (node_limit): within 3.40% of the optimum" in unproven[0]
