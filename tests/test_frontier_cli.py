"""``disagg frontier`` and ``disagg plan``: the files, their columns and invariants, scenarios, error paths.

The instances are the shipped ones with a small GPU budget (``--set``) so each run takes a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result

from planner.cli import main
from planner.perf.calibration import load_calibration
from planner.problem import resolve

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=16")
FRONTIER_COLUMNS = [
    "mode",
    "target_tokens_per_s_per_user",
    "tokens_per_s_per_user",
    "tokens_per_s_per_gpu",
    "output_tokens_per_s",
    "requests_per_s",
    "ttft_ms",
    "tpot_ms",
    "total_gpus",
    "prefill_gpus",
    "decode_gpus",
    "prefill_decode_gpu_ratio",
    "prefill_instances",
    "decode_instances",
    *(f"{pool}_{name}" for pool in ("prefill", "decode") for name in ("tp", "pp", "ep", "attention_dp")),
    "prefill_batch",
    "decode_batch",
    "nodes",
    "kv_transfer_gb_per_s_per_gpu",
    "termination",
    "mip_gap",
    "solve_time_s",
]


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def frontier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frontier")
    result = _run("frontier", *SMALL, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_frontier_writes_every_file(frontier_dir: Path) -> None:
    names = {p.name for p in frontier_dir.iterdir()}
    assert names == {
        "frontier.csv",
        "comparison.csv",
        "frontier.png",
        "instance.yaml",
        "provenance.json",
        ".disagg-manifest.json",
    }
    assert (frontier_dir / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_csv_has_the_documented_columns_and_is_pareto(frontier_dir: Path) -> None:
    frame = pd.read_csv(frontier_dir / "frontier.csv")
    assert set(FRONTIER_COLUMNS) <= set(frame.columns)
    assert set(frame["mode"]) == {"disaggregated", "aggregated"}
    assert (frame["termination"] == "optimal").all()
    for _, rows in frame.groupby("mode"):
        # Pareto: interactivity strictly up, tokens/s per GPU strictly down.
        assert np.all(np.diff(rows["tokens_per_s_per_user"]) > 0)
        assert np.all(np.diff(rows["tokens_per_s_per_gpu"]) < 0)
        assert (rows["tokens_per_s_per_user"] >= rows["target_tokens_per_s_per_user"]).all()
        assert (rows["total_gpus"] <= 16).all()
    dis = frame[frame["mode"] == "disaggregated"]
    assert (dis["prefill_gpus"] + dis["decode_gpus"] == dis["total_gpus"]).all()
    np.testing.assert_allclose(dis["prefill_decode_gpu_ratio"], dis["prefill_gpus"] / dis["decode_gpus"])
    np.testing.assert_allclose(dis["output_tokens_per_s"], dis["requests_per_s"] * 500)
    np.testing.assert_allclose(dis["tokens_per_s_per_gpu"], dis["output_tokens_per_s"] / dis["total_gpus"])
    np.testing.assert_allclose(dis["tpot_ms"], 1000 / dis["tokens_per_s_per_user"], rtol=1e-6)
    assert (dis["ttft_ms"] <= 300).all()
    assert (dis["kv_transfer_gb_per_s_per_gpu"] > 0).all()


def test_comparison_is_the_ratio_of_the_two_step_functions(frontier_dir: Path) -> None:
    frontier = pd.read_csv(frontier_dir / "frontier.csv")
    comparison = pd.read_csv(frontier_dir / "comparison.csv")
    for _, row in comparison.iterrows():
        u = row["tokens_per_s_per_user"]
        for mode in ("disaggregated", "aggregated"):
            reach = frontier["tokens_per_s_per_user"] >= u * (1 - 1e-9)
            rows = frontier[(frontier["mode"] == mode) & reach]
            expected = rows["tokens_per_s_per_gpu"].max() if len(rows) else np.nan
            np.testing.assert_allclose(row[f"{mode}_tokens_per_s_per_gpu"], expected)
    ratio = comparison["disaggregated_tokens_per_s_per_gpu"] / comparison["aggregated_tokens_per_s_per_gpu"]
    np.testing.assert_allclose(comparison["disaggregated_over_aggregated"], ratio)


def test_provenance_and_resolved_instance(frontier_dir: Path) -> None:
    provenance = json.loads((frontier_dir / "provenance.json").read_text())
    assert provenance["solver"] == "highs"
    assert provenance["solver_version"]
    problem = resolve(SMALL[0], overrides={"cluster.max_gpus": 16})
    assert provenance["input_sha256"] == problem.input_hash(load_calibration(None))
    assert provenance["input_sha256"] != resolve(SMALL[0]).input_hash(load_calibration(None))
    resolved = yaml.safe_load((frontier_dir / "instance.yaml").read_text())
    assert resolved["cluster"]["max_gpus"] == 16
    assert resolved["hardware"]["name"] == "h200-sxm"
    assert resolved["model"]["num_layers"] == 64


def test_frontier_is_deterministic(frontier_dir: Path, tmp_path: Path) -> None:
    again = _run("frontier", *SMALL, "--out", str(tmp_path))
    assert again.exit_code == 0, again.output
    first = pd.read_csv(frontier_dir / "frontier.csv").drop(columns="solve_time_s")
    second = pd.read_csv(tmp_path / "frontier.csv").drop(columns="solve_time_s")
    pd.testing.assert_frame_equal(first, second)


def test_fixed_ratio_holds_the_ratio_and_never_beats_dynamic(tmp_path: Path) -> None:
    result = _run("frontier", *SMALL, "--fixed-ratio", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "frontier.csv")
    fixed = frame[frame["mode"] == "disaggregated_fixed_ratio"]
    assert len(fixed)
    assert (np.abs(fixed["prefill_decode_gpu_ratio"] - 1.0) <= 0.03 + 1e-12).all()
    share = pd.read_csv(tmp_path / "comparison.csv")["fixed_ratio_over_dynamic"].dropna()
    assert (share <= 1 + 1e-9).all()


def test_scenario_reaching_into_hardware_changes_the_answer(tmp_path: Path) -> None:
    base = resolve("llama-3.1-70b-gb200-4k-256")
    what_if = resolve("llama-3.1-70b-gb200-4k-256", "hgx_domains")
    assert base.hardware.scale_up_domain_gpus == 72
    assert what_if.hardware.scale_up_domain_gpus == 8
    assert base.input_hash() != what_if.input_hash()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--set", "slo.ttft_ms_max=5"), "raise slo.ttft_ms_max to at least"),
        (("--set", "cluster.max_gpus=1", "--set", "precision=bf16"), "raise cluster.max_gpus to at least"),
        (("--scenario", "serve_10_rps_min_gpus", "--set", "traffic.requests_per_s=1e5"), "exceeds the most"),
    ],
)
def test_infeasible_frontier_exits_1_and_writes_nothing(
    args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _run("frontier", "qwen3-32b-h200-4000-500", *args, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--scenario", "nope"), "unknown scenario 'nope'"),
        (("--set", "traffic.isl_tokens=-5"), "traffic.isl_tokens"),
        (("--set", "traffic.foo=3"), "traffic.foo"),
        (("--set", "hardware.gpus_per_node=3"), "gpus_per_node"),
        (("--set", "objective=min_cost"), "traffic.requests_per_s"),
        (("--set", "novalue"), "FIELD=VALUE"),
    ],
)
def test_bad_overrides_exit_2(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    result = _run("frontier", "qwen3-32b-h200-4000-500", *args, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not (tmp_path / "o").exists()


def test_plan_text_names_pools_layouts_and_the_alternative() -> None:
    result = _run("plan", *SMALL, "--min-tokens-per-s-per-user", "40")
    assert result.exit_code == 0, result.output
    needles = ("prefill pool", "decode pool", "aggregated", "KV transfer", "tokens/s per GPU", "Solver highs")
    for needle in needles:
        assert needle in result.output


def test_plan_json_matches_the_frontier(frontier_dir: Path) -> None:
    frame = pd.read_csv(frontier_dir / "frontier.csv")
    row = frame[frame["mode"] == "disaggregated"].iloc[1]
    target = row["target_tokens_per_s_per_user"]
    result = _run("plan", *SMALL, "--min-tokens-per-s-per-user", repr(float(target)), "--json")
    assert result.exit_code == 0, result.output
    (payload,) = json.loads(result.output)
    dis = payload["plans"]["disaggregated"]
    assert dis["tokens_per_s_per_gpu"] == pytest.approx(row["tokens_per_s_per_gpu"], rel=1e-9)
    assert dis["tokens_per_s_per_user"] >= target
    layouts = dis["pools"]["decode"]["layouts"]
    assert sum(x["instances"] * x["gpus_per_instance"] for x in layouts) == dis["decode_gpus"]
    agg = payload["plans"]["aggregated"]
    assert payload["disaggregated_over_aggregated"] == pytest.approx(
        dis["tokens_per_s_per_gpu"] / agg["tokens_per_s_per_gpu"]
    )


def test_plan_min_gpus_serves_the_load_with_fewest_gpus() -> None:
    result = _run(
        "plan", "qwen3-32b-h200-4000-500", "--scenario", "serve_10_rps_min_gpus",
        "--min-tokens-per-s-per-user", "60", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (payload,) = json.loads(result.output)
    for plan in payload["plans"].values():
        assert plan["requests_per_s"] >= 10 * (1 - 1e-9)
    # One GPU fewer in the cheapest mode cannot serve the load: check against a budget one smaller.
    best = min(p["total_gpus"] for p in payload["plans"].values())
    tight = _run(
        "plan", "qwen3-32b-h200-4000-500", "--scenario", "serve_10_rps_min_gpus",
        "--set", f"cluster.max_gpus={best - 1}", "--min-tokens-per-s-per-user", "60",
    )  # fmt: skip
    assert tight.exit_code == 1, tight.output


def test_plan_unreachable_interactivity_says_how_far() -> None:
    result = _run("plan", *SMALL, "--min-tokens-per-s-per-user", "5000")
    assert result.exit_code == 1
    assert "lower --min-tokens-per-s-per-user to at most" in result.output


def test_plan_without_target_needs_one() -> None:
    result = _run("plan", *SMALL)
    assert result.exit_code == 2
    assert "--min-tokens-per-s-per-user" in result.output
