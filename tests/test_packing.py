"""Aggregated domain packing (one bin + prefix-capacity rows) equals the per-domain model.

The per-domain model puts every scale-up domain in its own bin and is exact by
construction; the aggregated one counts nodes once for the whole cluster and adds a
row per instance size that does not tile a domain (``docs/formulation.md`` proves it
exact for sizes that chain). Here both run on the same candidates, at every target,
and must give the same optimum; the brute-force referee checks the hand instances too.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hand_tables import NAN, OSL, frame

from planner.catalog import load_hardware
from planner.frontier import mode_tables, trace
from planner.optimize.brute_force import BruteForce
from planner.optimize.model import combine, combine_classes
from planner.optimize.optimizer import ModeOptimizer
from planner.optimize.packing import geometry
from planner.problem import resolve

TIE = 1e-7


def _random_case(seed: int):
    """Prefill and decode rows whose sizes chain in nodes (1, 2, 4, 8 nodes of 4 GPUs) but do not
    tile the domain (3, 5 or 7 nodes), with a budget of two or three domains."""
    rng = np.random.default_rng(seed)
    sizes = [2, 4, 8, 16, 32]

    def rows(n: int, decode: bool):
        return [
            (
                int(rng.choice(sizes)),
                float(rng.integers(1, 12)) / 2,
                float(rng.choice([10.0, 20.0, 30.0])) if decode else NAN,
            )
            for _ in range(n)
        ]

    domain = 4 * int(rng.choice([3, 5, 7]))
    budget = domain * int(rng.integers(2, 4)) - 4 * int(rng.integers(0, 2))
    return rows(3, False), rows(3, True), domain, budget


def _pair(prefill, decode, domain: int, budget: int, exclusive: bool = False):
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": 4, "scale_up_domain_gpus": domain})
    tables = {"prefill": frame(prefill), "decode": frame(decode)}
    sizes = {int(g) for t in tables.values() for g in t["gpus"]}
    built = []
    for aggregate in (True, False):
        geo = geometry(hardware, budget, sizes, aggregate=aggregate)
        candidates = combine(tables, geo)
        built.append(
            ModeOptimizer("disaggregated", candidates, geo, layouts_per_pool=1, exclusive_nodes=exclusive)
        )
    return built


def _numbers(plan):
    return None if plan is None else (plan.tokens_per_s_per_gpu, plan.output_tokens_per_s, plan.nodes)


@pytest.mark.parametrize("seed", range(12))
def test_aggregated_packing_equals_per_domain_bins(seed: int) -> None:
    prefill, decode, domain, budget = _random_case(seed)
    aggregated, per_domain = _pair(prefill, decode, domain, budget, exclusive=seed % 3 == 0)
    assert aggregated.geometry.prefix_levels, "the case should need prefix rows"
    assert per_domain.geometry.bins_are_domains
    referee = BruteForce(
        "disaggregated",
        aggregated.candidates,
        aggregated.geometry,
        osl_tokens=OSL,
        exclusive_nodes=seed % 3 == 0,
    )
    for target in aggregated.breakpoints:
        mine, reference, best = (
            aggregated.best_at(target),
            per_domain.best_at(target),
            referee.best_at(target),
        )
        assert (mine is None) == (reference is None) == (best is None)
        if mine is None:
            continue
        a, b = _numbers(mine), _numbers(reference)
        assert a[:2] == pytest.approx(b[:2], rel=TIE)
        assert a[2] == b[2]
        assert mine.tokens_per_s_per_gpu == pytest.approx(best.tokens_per_s_per_gpu, rel=TIE)


@cache
def _deepseek(gpus: int, mode: str, aggregate: bool) -> list:
    problem = resolve("deepseek-r1-gb200-16k-2k", overrides={"cluster.max_gpus": gpus})
    tables = mode_tables(problem, mode, None)
    sizes = {int(g) for pools in tables.values() for t in pools.values() for g in t["gpus"]}
    geo = geometry(problem.hardware, problem.max_gpus, sizes, aggregate=aggregate)
    candidates = combine_classes(tables, geo, tuple(problem.request_classes))
    optimizer = ModeOptimizer(mode, candidates, geo, layouts_per_pool=1, exclusive_nodes=False)
    return [
        (p.tokens_per_s_per_user, p.tokens_per_s_per_gpu, p.output_tokens_per_s)
        for p in trace(optimizer, problem.instance.objective)
    ]


@pytest.mark.parametrize("mode", ["disaggregated", "aggregated"])
def test_deepseek_two_racks_same_frontier_both_ways(mode: str) -> None:
    # 144 GPUs = two NVL72 racks of 18 four-GPU nodes; 16-node instances do not tile a rack.
    aggregated, per_domain = _deepseek(144, mode, True), _deepseek(144, mode, False)
    assert len(aggregated) == len(per_domain) > 5
    np.testing.assert_allclose(np.array(aggregated), np.array(per_domain), rtol=TIE)
