"""Solver limits are deterministic and an unproven answer always says so, with a meaningful gap."""

from __future__ import annotations

import dataclasses

import pytest
from hand_tables import NAN, frame

from planner.catalog import load_hardware
from planner.optimize.backends import SolveResult, Termination
from planner.optimize.model import combine
from planner.optimize.optimizer import ModeOptimizer, time_limit_message
from planner.optimize.packing import geometry


def test_gap_of_dinkelbachs_last_step_is_relative_to_tokens() -> None:
    # The last step's objective is ~0 (tokens - theta x GPUs): relative to it, a 5e-8 slack read as
    # 534 before; relative to the plan's 600 tokens/s it is ~1e-10.
    last = SolveResult(Termination.OPTIMAL, 1e-10, 5.34e-8, 0.01, True)
    assert last.mip_gap > 1
    assert dataclasses.replace(last, scale=600.0).mip_gap == pytest.approx(5.33e-8 / 600, rel=1e-2)


def test_termination_kinds() -> None:
    assert Termination.OPTIMAL.proven
    assert Termination.INFEASIBLE.proven
    assert Termination.NODE_LIMIT.limit
    assert Termination.TIME_LIMIT.limit
    assert not Termination.NODE_LIMIT.proven
    assert str(Termination.NODE_LIMIT) == "node_limit"  # what the CSV files print


def _optimizer(**options) -> ModeOptimizer:
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": 4, "scale_up_domain_gpus": 72})
    tables = {
        "prefill": frame([(16, 4.0, NAN), (8, 1.5, NAN), (4, 0.7, NAN)]),
        "decode": frame([(64, 100.0, 20.0), (4, 3.0, 20.0), (8, 7.0, 20.0)]),
    }
    geo = geometry(hardware, 720, {int(g) for t in tables.values() for g in t["gpus"]})
    return ModeOptimizer(
        "disaggregated", combine(tables, geo), geo, layouts_per_pool=2, exclusive_nodes=False, **options
    )


def test_frontier_plan_reports_a_tiny_gap() -> None:
    plan = _optimizer().best_at(20.0)
    assert plan.termination == Termination.OPTIMAL
    assert 0 <= plan.mip_gap < 1e-6


def test_node_limit_message_names_the_option_and_the_gap() -> None:
    stopped = SolveResult(Termination.NODE_LIMIT, 90.0, 100.0, 1.0, True)
    message = time_limit_message("highs", 60.0, "disaggregated model", stopped)
    assert "--node-limit" in message
    assert "11.11%" in message
    assert "--time-limit-s" in time_limit_message("highs", 60.0, "disaggregated model")
