"""Fewer solves per frontier point (issue 12) must never change a plan.

The shortcuts of :mod:`planner.optimize.optimizer`: the tie-break folded into Dinkelbach's last
improving step, the previous target's optimum as a ceiling, and warm starts.
"""

from __future__ import annotations

import math

import pyomo.environ as pyo
import pytest
from hand_tables import NAN, frame

from planner.catalog import load_hardware
from planner.frontier import mode_optimizer, mode_tables, trace
from planner.optimize.model import combine
from planner.optimize.optimizer import ModeOptimizer
from planner.optimize.packing import geometry
from planner.problem import resolve


def _numbers(plans) -> list[tuple[float, float, float, int]]:
    return [
        (
            p.tokens_per_s_per_user,
            round(p.tokens_per_s_per_gpu, 6),
            round(p.output_tokens_per_s, 3),
            p.total_gpus,
        )
        for p in plans
    ]


@pytest.mark.parametrize("mode", ["disaggregated", "aggregated"])
def test_folded_tie_break_gives_the_explicit_tie_breaks_plans(mode: str, monkeypatch) -> None:
    problem = resolve("llama-3.1-70b-h100-8k-1k")
    tables = mode_tables(problem, mode, None)
    folds = []
    original = ModeOptimizer._largest_from_below

    def counted(self, *args):
        folds.append(original(self, *args))
        return folds[-1]

    monkeypatch.setattr(ModeOptimizer, "_largest_from_below", counted)
    full_mip = mode_optimizer(problem, mode, tables)
    full_mip._by_sets = False  # the fold belongs to the full MIP's Dinkelbach (layout sets have their own)
    folded = trace(full_mip, problem.instance.objective)
    assert any(folds), "no point took the folded tie-break: the comparison below would be vacuous"

    monkeypatch.setattr(ModeOptimizer, "_largest_from_below", lambda self, *args: False)
    explicit = mode_optimizer(problem, mode, tables)
    explicit._by_sets = False
    plans = []
    for plan in folded:  # the same targets, each solved afresh: no ceiling, explicit tie-break
        explicit._last_optimum = ((math.inf, math.inf), math.inf)
        plans.append(explicit.best_at(plan.target_tokens_per_s_per_user))
    assert _numbers(plans) == _numbers(folded)


@pytest.mark.parametrize("solver", ["highs", "ortools"])
def test_a_poor_warm_start_never_changes_the_answer(solver: str) -> None:
    # Budget 16 (two 8-GPU nodes): prefill 1 GPU at 3 req/s or 2 GPUs at 4 req/s; decode 1 GPU
    # at 1 req/s (20 tokens/s per user) or 2 GPUs at 1.5 req/s (40).
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": 8, "scale_up_domain_gpus": 8})
    tables = {
        "prefill": frame([(1, 3.0, NAN), (2, 4.0, NAN)]),
        "decode": frame([(1, 1.0, 20.0), (2, 1.5, 40.0)]),
    }
    geo = geometry(hardware, 16, {1, 2})
    candidates = combine(tables, geo)
    optimizer = ModeOptimizer(
        "disaggregated", candidates, geo, layouts_per_pool=1, exclusive_nodes=False, solver=solver
    )
    cold = optimizer.best_at(20.0)
    # Every variable at its upper bound: infeasible (over budget) as a start.
    for var in optimizer.model.component_data_objects(pyo.Var):
        var.set_value(var.ub if var.ub is not None else 1e6, skip_validation=True)
    optimizer.backend.warm_start()
    optimizer._theta_hint = 0.0  # re-run Dinkelbach from scratch, from that start
    optimizer._last_optimum = ((math.inf, math.inf), math.inf)
    warm = optimizer.best_at(20.0)
    assert _numbers([warm]) == _numbers([cold])
    assert cold.total_gpus == 16  # 4 x P1 + 12 x D1: 12 req/s, 1200 tokens/s
    assert cold.tokens_per_s_per_gpu == pytest.approx(75.0, rel=1e-9)
