"""Mixed GPU fleets: each pool on the type that suits it, against each type alone and a brute force."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.optimize.fleet import FleetOptimizer, brute_force_tokens_per_usd
from planner.problem import resolve

FLEET = "llama-3.1-70b-h100-h200-fleet"


@pytest.fixture(scope="module")
def optimizers() -> dict[str, FleetOptimizer]:
    problem = resolve(FLEET)
    return {mode: FleetOptimizer(problem, mode) for mode in ("disaggregated", "aggregated")}


@pytest.mark.parametrize("target", [10.0, 30.0])
def test_mixed_plan_beats_each_type_alone(optimizers, target) -> None:
    """Prefill is compute-bound (same FLOP/s, H100 cheaper), decode memory-bound (H200 1.43x bandwidth
    for 1.27x the price): the fleet plan puts prefill on H100 and decode on H200 and wins per dollar."""
    disaggregated = optimizers["disaggregated"]
    mixed = disaggregated.solve(target)
    alone = {name: disaggregated.solve(target, only=name) for name in ("h100-sxm", "h200-sxm")}
    for plan in alone.values():
        assert mixed.output_tokens_per_usd > 1.05 * plan.output_tokens_per_usd
    split = mixed.split()
    assert split["decode"] == {"h200-sxm": split["decode"]["h200-sxm"]}
    assert split["prefill"]["h100-sxm"] >= 8
    assert mixed.tokens_per_s_per_user >= target
    # One type per instance and each restricted plan on its type only.
    assert set(alone["h100-sxm"].rows["gpu_type"]) == {"h100-sxm"}
    assert set(alone["h200-sxm"].nodes) == {"h200-sxm"}


@pytest.mark.parametrize("mode", ["disaggregated", "aggregated"])
@pytest.mark.parametrize("target", [10.0, 30.0, 60.0])
def test_brute_force_referee_agrees(optimizers, mode, target) -> None:
    optimizer = optimizers[mode]
    plan = optimizer.solve(target)
    assert plan.output_tokens_per_usd == pytest.approx(
        brute_force_tokens_per_usd(optimizer, target), rel=1e-9
    )


def test_plan_numbers_add_up(optimizers) -> None:
    plan = optimizers["disaggregated"].solve(30.0)
    prices = {"h100-sxm": 2.99, "h200-sxm": 3.79}  # the shipped hardware specs' prices
    assert plan.cost_usd_per_hour == pytest.approx(sum(8 * n * prices[t] for t, n in plan.nodes.items()))
    for gpu_type, gpus in plan.gpus_by_type.items():
        assert gpus <= 8 * plan.nodes[gpu_type]
    assert plan.output_tokens_per_usd == pytest.approx(
        plan.output_tokens_per_s * 3600 / plan.cost_usd_per_hour
    )


def test_fleet_command_and_errors() -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["fleet", FLEET, "--min-tokens-per-s-per-user", "30"])
    assert ok.exit_code == 0, ok.output
    assert "prefill on h100-sxm" in ok.output
    assert "decode on h200-sxm" in ok.output
    assert "h100-sxm alone" in ok.output
    cheap = runner.invoke(
        main, ["fleet", FLEET, "--scenario", "h200_cheap", "--min-tokens-per-s-per-user", "30"]
    )
    assert cheap.exit_code == 0, cheap.output
    none = runner.invoke(main, ["fleet", "llama-3.1-70b-h100-8k-1k", "--min-tokens-per-s-per-user", "30"])
    assert none.exit_code == 2
    assert none.output.startswith("error:")
    assert "cluster.fleet" in none.output
    twice = runner.invoke(
        main,
        [
            "fleet",
            FLEET,
            "--min-tokens-per-s-per-user",
            "30",
            "--set",
            "cluster.fleet=[{hardware: h100-sxm, max_nodes: 1}, {hardware: h100-sxm, max_nodes: 1}]",
        ],
    )
    assert twice.exit_code == 2
    assert "twice" in twice.output
    unreachable = runner.invoke(main, ["fleet", FLEET, "--min-tokens-per-s-per-user", "100000"])
    assert unreachable.exit_code == 1
    assert unreachable.output.startswith("error:")


def test_frontier_and_plan_report_the_split(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["frontier", FLEET, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "fleet_frontier.csv")
    for mode, rows in frame.groupby("mode"):
        rows = rows.sort_values("tokens_per_s_per_user")
        assert rows["tokens_per_s_per_user"].is_monotonic_increasing, mode
        assert (rows["output_tokens_per_usd"].diff().dropna() < 0).all(), mode
    disaggregated = frame[frame["mode"] == "disaggregated"].iloc[0]
    assert disaggregated["prefill_gpus_h100-sxm"] > 0
    assert disaggregated["decode_gpus_h200-sxm"] > 0
    assert disaggregated["decode_gpus_h100-sxm"] == 0
    plan = runner.invoke(main, ["plan", FLEET, "--min-tokens-per-s-per-user", "30"])
    assert plan.exit_code == 0, plan.output
    assert "disaggregated on the whole fleet (decode" in plan.output
    assert "decode on h200-sxm" in plan.output


def test_plan_json_carries_the_fleet_answer(optimizers, tmp_path) -> None:
    """``plan --json`` on a fleet instance has what its text prints: the fleet plan, each type alone."""
    runner = CliRunner()
    result = runner.invoke(main, ["plan", FLEET, "--min-tokens-per-s-per-user", "30", "--json"])
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.output)
    disaggregated = answer["fleet"]["modes"]["disaggregated"]
    expected = optimizers["disaggregated"].solve(30.0)
    fleet = disaggregated["fleet"]
    assert fleet["output_tokens_per_usd"] == pytest.approx(expected.output_tokens_per_usd, rel=1e-9)
    assert fleet["gpus_by_pool_and_type"] == expected.split()
    assert sum(r["gpus"] * r["instances"] for r in fleet["layouts"]) == fleet["total_gpus"]
    assert {(r["pool"], r["gpu_type"]) for r in fleet["layouts"]} == {
        ("prefill", "h100-sxm"),
        ("decode", "h200-sxm"),
    }
    for name, alone in disaggregated["alone"].items():
        assert {r["gpu_type"] for r in alone["layouts"]} == {name}
        gain = disaggregated["fleet_over_alone"][name]
        assert gain == pytest.approx(fleet["output_tokens_per_usd"] / alone["output_tokens_per_usd"])
        assert gain > 1.05  # the split wins per dollar (test_mixed_plan_beats_each_type_alone)
    # The answer still feeds `disagg export`.
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(result.output)
    exported = runner.invoke(main, ["export", str(plan_file), "--out", str(tmp_path / "deploy")])
    assert exported.exit_code == 0, exported.output


def test_whole_plan_cap_binds_and_referee_agrees() -> None:
    problem = resolve(FLEET, overrides={"cluster.max_nodes": 2})
    optimizer = FleetOptimizer(problem, "disaggregated")
    plan = optimizer.solve(30.0)
    assert sum(plan.nodes.values()) <= 2
    assert plan.output_tokens_per_usd == pytest.approx(brute_force_tokens_per_usd(optimizer, 30.0), rel=1e-9)


def test_exclusive_nodes_keep_pools_apart_and_referee_agrees() -> None:
    problem = resolve(FLEET, overrides={"cluster.exclusive_nodes": True})
    optimizer = FleetOptimizer(problem, "disaggregated")
    for target in (10.0, 30.0):
        plan = optimizer.solve(target)
        for gpu_type, nodes in plan.nodes.items():
            pools = plan.split()
            needed = sum(-(-pools[p].get(gpu_type, 0) // 8) for p in pools)
            assert needed <= nodes
        assert plan.output_tokens_per_usd == pytest.approx(
            brute_force_tokens_per_usd(optimizer, target), rel=1e-9
        )


@pytest.mark.parametrize(
    ("objective", "load"), [("min_cost", 2.0), ("min_gpus", 2.0), ("max_throughput", None)]
)
def test_other_objectives_carry_over(objective, load) -> None:
    """Restricting to one type only removes plans, so the fleet is never worse on the objective's terms."""
    overrides = {"objective": objective} | ({"traffic.requests_per_s": load} if load else {})
    optimizer = FleetOptimizer(resolve(FLEET, overrides=overrides), "disaggregated")
    mixed = optimizer.solve(30.0)
    alone = [optimizer.solve(30.0, only=name) for name in ("h100-sxm", "h200-sxm")]
    if objective == "min_cost":
        assert mixed.requests_per_s == pytest.approx(load)
        assert mixed.cost_usd_per_hour <= min(p.cost_usd_per_hour for p in alone) + 1e-9
    elif objective == "min_gpus":
        assert mixed.requests_per_s == pytest.approx(load)
        assert sum(8 * n for n in mixed.nodes.values()) <= min(
            sum(8 * n for n in p.nodes.values()) for p in alone
        )
    else:
        assert mixed.requests_per_s >= max(p.requests_per_s for p in alone) * (1 - 1e-9)


def test_a_load_only_the_fleet_serves() -> None:
    runner = CliRunner()
    args = ["fleet", FLEET, "--set", "objective=min_cost", "--set", "traffic.requests_per_s=8"]
    result = runner.invoke(main, [*args, "--min-tokens-per-s-per-user", "30"])
    assert result.exit_code == 0, result.output
    assert "h100-sxm alone: no plan" in result.output
    assert "h200-sxm alone: no plan" in result.output
    too_much = runner.invoke(
        main, [*args[:-1], "traffic.requests_per_s=800", "--min-tokens-per-s-per-user", "30"]
    )
    assert too_much.exit_code == 1
    assert "serves 800 requests/s" in too_much.output


def test_a_type_without_the_precision_is_named() -> None:
    args = [
        "fleet",
        FLEET,
        "--set",
        "hardware=b200",
        "--set",
        "precision=fp4",
        "--min-tokens-per-s-per-user",
        "30",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "cluster.fleet[0].hardware" in result.output
    assert "h100-sxm has no fp4" in result.output


def _mix(*classes: dict) -> dict:
    return {"traffic": {"classes": list(classes)}}


def test_a_mix_of_identical_classes_is_the_one_shape_plan(optimizers) -> None:
    """Flows split the instances' time between classes; two halves of one shape change nothing."""
    half = {"isl_tokens": 8192, "osl_tokens": 1024, "share_fraction": 0.5}
    mixed = FleetOptimizer(
        resolve(FLEET, overrides=_mix({"name": "a", **half}, {"name": "b", **half})), "disaggregated"
    )
    for target in (10.0, 30.0):
        # The mix reads its rate from the solver's flows (feasible to HiGHS's 1e-9-ish tolerances).
        assert mixed.solve(target).output_tokens_per_usd == pytest.approx(
            optimizers["disaggregated"].solve(target).output_tokens_per_usd, rel=1e-7
        )


def test_a_real_mix_routes_every_class() -> None:
    chat = {"name": "chat", "isl_tokens": 2048, "osl_tokens": 512, "share_fraction": 0.6}
    rag = {"name": "rag", "isl_tokens": 16384, "osl_tokens": 512, "share_fraction": 0.4}
    optimizer = FleetOptimizer(resolve(FLEET, overrides=_mix(chat, rag)), "disaggregated")
    plan = optimizer.solve(30.0)
    served = plan.rows.groupby("pool")["served_requests_per_s"].sum()
    assert served.to_dict() == pytest.approx({"prefill": plan.requests_per_s, "decode": plan.requests_per_s})
    assert {"chat", "rag"} <= set(",".join(plan.rows["classes"]).split(","))
    assert plan.output_tokens_per_s == pytest.approx(plan.requests_per_s * 512)
    for name in ("h100-sxm", "h200-sxm"):
        assert plan.output_tokens_per_usd >= optimizer.solve(30.0, only=name).output_tokens_per_usd * (
            1 - 1e-9
        )
