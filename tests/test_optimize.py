"""The MIP (``planner.optimize``) against hand-checked answers and against the brute-force referee.

Hand-checked cases use tiny candidate frames whose optimum is worked out in a
comment next to each test; the MIP's numbers must match it exactly. Small real
instances (shipped instances with a 4-16 GPU budget) are checked against
:mod:`planner.optimize.brute_force`, which enumerates every plan and packs it
constructively. OSL is 100 in the hand cases, so tokens/s/GPU = 100 x requests/s per GPU.
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import cache

import numpy as np
import pytest
from hand_tables import NAN, OSL, frame

from planner.catalog import load_hardware
from planner.errors import InfeasibleError
from planner.frontier import mode_optimizer, mode_tables, solve_frontier, trace, why_no_plan
from planner.optimize.brute_force import BruteForce, Cluster, place
from planner.optimize.model import FIXED_RATIO_TOLERANCE, combine
from planner.optimize.optimizer import ModeOptimizer
from planner.optimize.packing import Geometry, geometry, is_chain, least_shared_nodes, node_patterns
from planner.optimize.plan import Plan
from planner.problem import resolve

EXACT = 1e-9
"""Relative tolerance for "the same number" (float noise only)."""
TIE = 1e-7
"""Relative tolerance between solvers or against the referee (the MIP's tie-break slack)."""


# --------------------------------------------------------------------------- helpers


def _hand(
    prefill: list[tuple[int, float, float]],
    decode: list[tuple[int, float, float]],
    *,
    node: int = 8,
    domain: int = 8,
    budget: int = 8,
    layouts: int = 1,
    exclusive: bool = False,
    mode: str = "disaggregated",
    aggregate: bool = True,
    **options,
) -> tuple[ModeOptimizer, BruteForce]:
    """The MIP and the referee of a hand-written instance (aggregated mode: ``decode`` = aggregated rows)."""
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": node, "scale_up_domain_gpus": domain})
    if mode == "aggregated":
        tables = {"aggregated": frame(decode)}
    else:
        tables = {"prefill": frame(prefill), "decode": frame(decode)}
    geo = geometry(
        hardware, budget, {int(g) for t in tables.values() for g in t["gpus"]}, aggregate=aggregate
    )
    candidates = combine(tables, geo)
    common = {"layouts_per_pool": layouts, "exclusive_nodes": exclusive}
    optimizer = ModeOptimizer(mode, candidates, geo, **common, **options)
    referee_options = {
        k: v for k, v in options.items() if k in ("objective", "load_requests_per_s", "fixed_ratio")
    }
    return optimizer, BruteForce(mode, candidates, geo, osl_tokens=OSL, **common, **referee_options)


def _instances(plan: Plan) -> dict[str, list[tuple[int, int]]]:
    """``pool -> [(gpus per instance, instances), ...]`` of a plan, for readable asserts."""
    return {
        pool: sorted(zip(p.rows["gpus"].astype(int), p.rows["instances"].astype(int), strict=True))
        for pool, p in plan.pools.items()
    }


def _counts(optimizer: ModeOptimizer, plan: Plan) -> dict[int, int]:
    """The plan as ``candidate row -> instances`` (the referee's rows start with the MIP's)."""
    table = optimizer.candidates.table
    counts = {}
    for pool, p in plan.pools.items():
        for cid, n in zip(p.rows["candidate_id"], p.rows["instances"], strict=True):
            row = table.index[(table["pool"] == pool) & (table["candidate_id"] == cid)]
            counts[int(row[0])] = int(n)
    return counts


def _value(plan, objective: str) -> float:
    """Higher is better, for MIP plans and referee plans alike."""
    if objective == "max_tokens_per_s_per_gpu":
        return plan.tokens_per_s_per_gpu
    gpus = plan.total_gpus if isinstance(plan, Plan) else plan.gpus
    return -(gpus if objective == "min_gpus" else plan.nodes)


def _assert_matches_referee(optimizer: ModeOptimizer, referee: BruteForce, plan: Plan | None, target: float):
    """The MIP's plan at a target is valid, scored right, and as good as the referee's best."""
    best = referee.best_at(target)
    if plan is None:
        assert best is None, f"MIP found no plan at {target}, the referee did: {best}"
        return
    mine = referee.evaluate(_counts(optimizer, plan))
    assert mine is not None, f"the MIP's plan at {target} breaks a packing or budget rule: {_instances(plan)}"
    assert plan.tokens_per_s_per_gpu == pytest.approx(mine.tokens_per_s_per_gpu, rel=EXACT)
    assert plan.tokens_per_s_per_user == pytest.approx(mine.tokens_per_s_per_user, rel=EXACT)
    assert plan.nodes == mine.nodes
    objective = referee.objective
    assert _value(plan, objective) == pytest.approx(_value(best, objective), rel=TIE)
    assert plan.output_tokens_per_s == pytest.approx(best.output_tokens_per_s, rel=TIE)


def _valid_placement(placement, instances: list[tuple[str, int]], cluster: Cluster, exclusive: bool) -> bool:
    """An independent reading of the packing rules, applied to an explicit placement."""
    node, domain = cluster.gpus_per_node, cluster.domain_gpus
    if [len(d) for d in placement.domains] != list(cluster.domain_nodes):
        return False
    spots = defaultdict(list)
    for d, nodes in enumerate(placement.domains):
        for n, members in enumerate(nodes):
            sizes = [instances[i][1] for i in members]
            if any(g >= node for g in sizes) and len(members) != 1:
                return False
            if sum(g for g in sizes if g < node) > node:
                return False
            if exclusive and len({instances[i][0] for i in members}) > 1:
                return False
            for i in members:
                spots[i].append((d, n))
    for i, (_, g) in enumerate(instances):
        where = spots[i]
        domains = {d for d, _ in where}
        if g < node:
            ok = len(where) == 1
        elif g <= domain:
            ok = len(where) == g // node and len(domains) == 1
        else:
            full = all(len(placement.domains[d]) == domain // node for d in domains)
            ok = len(where) == g // node and len(domains) == g // domain and full
        if not ok:
            return False
    return sum(g for _, g in instances) <= cluster.max_gpus


# Two prefill and two decode rows: (gpus, requests/s per instance, tokens/s per user).
P1, P2 = (1, 3.0, NAN), (2, 4.0, NAN)  # 3 and 2 requests/s per GPU
D1, D2 = (1, 1.0, 20.0), (2, 1.5, 40.0)  # 1 and 0.75 requests/s per GPU; D2 is the interactive one


# --------------------------------------------------------------------------- hand-checked optima


def test_rate_matching_picks_the_counts() -> None:
    # Budget 8, one 8-GPU node. At T = 20 the best pair is P1 + D1: lambda = min(3a, b) over
    # a + b GPUs peaks when b = 3a, at 3a / 4a = 0.75 requests/s/GPU -> 75 tokens/s/GPU; the
    # tie-break takes the largest such plan, a = 2, b = 6 (8 GPUs, 600 tokens/s). The other
    # pairs top out lower (P1+D2 0.6, P2+D1 0.667, P2+D2 0.5).
    # At T = 40 only D2 is allowed: P1 + D2 has lambda = min(3a, 1.5b) over a + 2b GPUs; a = 1,
    # b = 2 gives 3 / 5 = 0.6 (a = 2, b = 3 gives 4.5 / 8); P2 + D2 gives 0.5. -> 60, 300 tokens/s.
    optimizer, referee = _hand([P1, P2], [D1, D2], budget=8)
    low, high = optimizer.best_at(20.0), optimizer.best_at(40.0)
    assert _instances(low) == {"prefill": [(1, 2)], "decode": [(1, 6)]}
    assert low.tokens_per_s_per_gpu == pytest.approx(75.0, rel=EXACT)
    assert low.output_tokens_per_s == pytest.approx(600.0, rel=EXACT)
    assert low.tokens_per_s_per_user == 20.0
    assert _instances(high) == {"prefill": [(1, 1)], "decode": [(2, 2)]}
    assert high.tokens_per_s_per_gpu == pytest.approx(60.0, rel=EXACT)
    assert high.output_tokens_per_s == pytest.approx(300.0, rel=EXACT)
    assert high.tokens_per_s_per_user == 40.0
    for target, plan in ((20.0, low), (40.0, high)):
        _assert_matches_referee(optimizer, referee, plan, target)
    assert optimizer.best_at(40.000001) is None


def test_budget_forces_a_worse_ratio() -> None:
    # Budget 3: the 1:3 mix of P1 + D1 needs 4 GPUs. With 3: a = 1, b = 2 gives min(3, 2) / 3
    # = 0.667 (a = 1, b = 1: 0.5; a = 2, b = 1: 0.333); P1 + D2 (1, 1) gives 1.5 / 3 = 0.5;
    # P2 + D1 (1, 1) gives 1 / 3. -> 66.67 tokens/s/GPU, 200 tokens/s.
    optimizer, referee = _hand([P1, P2], [D1, D2], budget=3)
    plan = optimizer.best_at(20.0)
    assert _instances(plan) == {"prefill": [(1, 1)], "decode": [(1, 2)]}
    assert plan.tokens_per_s_per_gpu == pytest.approx(200.0 / 3.0, rel=EXACT)
    assert plan.output_tokens_per_s == pytest.approx(200.0, rel=EXACT)
    _assert_matches_referee(optimizer, referee, plan, 20.0)


def test_two_layouts_per_pool_beat_one() -> None:
    # Budget 5. Prefill Q1 = (1 GPU, 1 req/s), Q2 = (2 GPUs, 3 req/s); decode E1 = (1, 1),
    # E2 = (2, 4). One layout per pool: Q2 + E2 (1, 1) = min(3, 4) / 4 = 0.75 is best
    # (Q1 + E2: a = 3, b = 1 -> 3 / 5; Q2 + E1: a = 1, b = 3 -> 3 / 5; Q1 + E1 <= 0.5).
    # Two layouts: Q1 + Q2 give 4 req/s on 3 GPUs, matching one E2 exactly: 4 / 5 = 0.8.
    # -> 75 then 80 tokens/s/GPU (300 then 400 tokens/s).
    prefill = [(1, 1.0, NAN), (2, 3.0, NAN)]
    decode = [(1, 1.0, 20.0), (2, 4.0, 20.0)]
    one, referee_one = _hand(prefill, decode, budget=5, layouts=1)
    two, referee_two = _hand(prefill, decode, budget=5, layouts=2)
    plan_one, plan_two = one.best_at(20.0), two.best_at(20.0)
    assert _instances(plan_one) == {"prefill": [(2, 1)], "decode": [(2, 1)]}
    assert plan_one.tokens_per_s_per_gpu == pytest.approx(75.0, rel=EXACT)
    assert _instances(plan_two) == {"prefill": [(1, 1), (2, 1)], "decode": [(2, 1)]}
    assert plan_two.tokens_per_s_per_gpu == pytest.approx(80.0, rel=EXACT)
    assert plan_two.output_tokens_per_s == pytest.approx(400.0, rel=EXACT)
    _assert_matches_referee(one, referee_one, plan_one, 20.0)
    _assert_matches_referee(two, referee_two, plan_two, 20.0)


def test_exclusive_nodes_change_the_answer() -> None:
    # Two 4-GPU nodes; prefill (1 GPU, 3 req/s), decode (2 GPUs, 2 req/s). Balanced: 3a = 2b,
    # a = 2, b = 3 uses all 8 GPUs for 6 req/s = 0.75 (nodes: 2+2 | 2+1+1). With exclusive
    # nodes prefill needs its own node, leaving one node (two decode instances): a = 2, b = 2
    # gives min(6, 4) / 6 = 0.667 (a = 1, b = 2: 3 / 5). -> 75 vs 66.67 tokens/s/GPU.
    prefill, decode = [(1, 3.0, NAN)], [(2, 2.0, 20.0)]
    shared, referee_shared = _hand(prefill, decode, node=4, domain=4, budget=8)
    apart, referee_apart = _hand(prefill, decode, node=4, domain=4, budget=8, exclusive=True)
    plan_shared, plan_apart = shared.best_at(20.0), apart.best_at(20.0)
    assert _instances(plan_shared) == {"prefill": [(1, 2)], "decode": [(2, 3)]}
    assert plan_shared.tokens_per_s_per_gpu == pytest.approx(75.0, rel=EXACT)
    assert _instances(plan_apart) == {"prefill": [(1, 2)], "decode": [(2, 2)]}
    assert plan_apart.tokens_per_s_per_gpu == pytest.approx(200.0 / 3.0, rel=EXACT)
    assert plan_apart.output_tokens_per_s == pytest.approx(400.0, rel=EXACT)
    assert plan_apart.nodes == 2
    _assert_matches_referee(shared, referee_shared, plan_shared, 20.0)
    _assert_matches_referee(apart, referee_apart, plan_apart, 20.0)


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("budget", [16, 24])
def test_non_chain_sub_node_plans_always_pack(budget: int, exclusive: bool) -> None:
    # 3- and 2-GPU instances in 8-GPU nodes do not chain (8 % 3 != 0): the MIP keeps one size
    # per node, a safe restriction. Its plans must always pack, and never beat the referee.
    prefill = [(3, 1.5, NAN), (2, 0.5, NAN)]
    decode = [(2, 1.5, 20.0), (3, 2.0, 30.0)]
    optimizer, referee = _hand(prefill, decode, budget=budget, exclusive=exclusive)
    assert not optimizer.geometry.sub_node_chain
    for target in referee.breakpoints:
        plan, best = optimizer.best_at(target), referee.best_at(target)
        if plan is None:
            continue
        mine = referee.evaluate(_counts(optimizer, plan))
        assert mine is not None, f"unpackable plan {_instances(plan)}"
        assert plan.tokens_per_s_per_gpu == pytest.approx(mine.tokens_per_s_per_gpu, rel=EXACT)
        assert plan.tokens_per_s_per_gpu <= best.tokens_per_s_per_gpu * (1 + EXACT)


def test_non_chain_sub_node_sizes_share_a_node() -> None:
    # One 8-GPU node: a 3-GPU prefill and a 2-GPU decode instance fit in it (5 GPUs), lambda
    # = min(1.5, 1.5) over 5 GPUs = 0.3 -> 30 tokens/s/GPU (a 3 + 3 + 2 plan: 1.5 / 8).
    optimizer, referee = _hand([(3, 1.5, NAN)], [(2, 1.5, 20.0)], budget=8)
    assert referee.best_at(20.0).tokens_per_s_per_gpu == pytest.approx(30.0, rel=EXACT)
    plan = optimizer.best_at(20.0)
    assert plan is not None
    assert plan.tokens_per_s_per_gpu == pytest.approx(30.0, rel=EXACT)


@pytest.mark.parametrize("aggregate", [True, False])
def test_domains_hold_whole_node_instances(aggregate: bool) -> None:
    # GB200-like: 4-GPU nodes, 72-GPU (18-node) domains, 144 GPUs = two domains. Decode (64 GPUs
    # = 16 nodes, 100 req/s) never binds; prefill P = (16 GPUs = 4 nodes, 4 req/s) or
    # P' = (8 GPUs = 2 nodes, 1.5 req/s). One decode instance leaves 2 nodes in its domain and
    # 18 in the other: 4 x P fit (16 / 128 = 0.125); a fifth needs 4 nodes in one domain, so
    # 5 x P + 1 x decode = 144 GPUs (20 / 144 = 0.139) only fits by GPU count. With P' the
    # spare nodes hold 1 + 9: 15 / 144 = 0.104. -> 12.5 tokens/s/GPU, 1600 tokens/s.
    # Aggregated: one bin of 36 nodes and a prefix row for 4-node instances (4 per 18-node domain).
    optimizer, referee = _hand(
        [(16, 4.0, NAN), (8, 1.5, NAN)],
        [(64, 100.0, 20.0)],
        node=4,
        domain=72,
        budget=144,
        aggregate=aggregate,
    )
    assert optimizer.geometry.bins_are_domains is not aggregate
    assert optimizer.geometry.bin_nodes == ((36,) if aggregate else (18, 18))
    assert optimizer.geometry.prefix_levels == ((4, 16) if aggregate else ())
    plan = optimizer.best_at(20.0)
    assert _instances(plan) == {"prefill": [(16, 4)], "decode": [(64, 1)]}
    assert plan.tokens_per_s_per_gpu == pytest.approx(12.5, rel=EXACT)
    assert plan.output_tokens_per_s == pytest.approx(1600.0, rel=EXACT)
    assert plan.nodes == 32
    _assert_matches_referee(optimizer, referee, plan, 20.0)
    assert referee.evaluate({0: 5, 2: 1}) is None  # fits by GPU count, not in the domains


@pytest.mark.parametrize("aggregate", [True, False])
def test_domain_spanning_instances_take_whole_domains(aggregate: bool) -> None:
    # 216 GPUs = three 18-node domains. A 144-GPU decode instance spans two whole domains; the
    # third holds at most four 16-GPU prefill instances (16 of its 18 nodes): 16 req/s over
    # 208 GPUs = 7.69 tokens/s/GPU.
    optimizer, referee = _hand(
        [(16, 4.0, NAN)], [(144, 100.0, 20.0)], node=4, domain=72, budget=216, aggregate=aggregate
    )
    assert optimizer.geometry.spans_domains
    plan = optimizer.best_at(20.0)
    assert _instances(plan) == {"prefill": [(16, 4)], "decode": [(144, 1)]}
    assert plan.tokens_per_s_per_gpu == pytest.approx(1600.0 / 208.0, rel=EXACT)
    _assert_matches_referee(optimizer, referee, plan, 20.0)


def test_min_gpus_serves_the_load_on_fewest_gpus() -> None:
    # Load 5 req/s, 4-GPU nodes, budget 16. T = 20: prefill needs 2 x P1 (6 req/s, 2 GPUs) or
    # 2 x P2 (4 GPUs); decode 5 x D1 (5 GPUs) or 4 x D2 (8 GPUs): fewest is 2 + 5 = 7 GPUs, and
    # the largest 7-GPU plan serving 5 req/s is that one (500 tokens/s). T = 40 (D2 only):
    # 2 x P1 + 4 x D2 = 10 GPUs, lambda = min(6, 6) -> 600 tokens/s.
    optimizer, referee = _hand(
        [P1, P2], [D1, D2], node=4, domain=4, budget=16, objective="min_gpus", load_requests_per_s=5.0
    )
    low, high = optimizer.best_at(20.0), optimizer.best_at(40.0)
    assert _instances(low) == {"prefill": [(1, 2)], "decode": [(1, 5)]}
    assert low.total_gpus == 7
    assert low.output_tokens_per_s == pytest.approx(500.0, rel=EXACT)
    assert low.nodes == 2
    assert _instances(high) == {"prefill": [(1, 2)], "decode": [(2, 4)]}
    assert high.total_gpus == 10
    assert high.output_tokens_per_s == pytest.approx(600.0, rel=EXACT)
    for target, plan in ((20.0, low), (40.0, high)):
        _assert_matches_referee(optimizer, referee, plan, target)


def test_min_cost_pays_for_fewest_nodes() -> None:
    # As above, priced per node. T = 20: 7 GPUs need 2 nodes, and 2 nodes hold 8 GPUs, so the
    # tie-break grows the plan to 2 x P1 + 6 x D1 = 8 GPUs, lambda = 6 (600 tokens/s) -- more
    # than min_gpus' 500. T = 40: 10 GPUs need 3 nodes; 12 GPUs fit, but no 3-node plan serves
    # more than 6 req/s -> 3 nodes, 600 tokens/s.
    optimizer, referee = _hand(
        [P1, P2],
        [D1, D2],
        node=4,
        domain=4,
        budget=16,
        objective="min_cost",
        load_requests_per_s=5.0,
        price_usd_per_gpu_hour=2.0,
    )
    low, high = optimizer.best_at(20.0), optimizer.best_at(40.0)
    assert _instances(low) == {"prefill": [(1, 2)], "decode": [(1, 6)]}
    assert (low.nodes, low.total_gpus) == (2, 8)
    assert low.output_tokens_per_s == pytest.approx(600.0, rel=EXACT)
    assert high.nodes == 3
    assert high.output_tokens_per_s == pytest.approx(600.0, rel=EXACT)
    for target, plan in ((20.0, low), (40.0, high)):
        _assert_matches_referee(optimizer, referee, plan, target)


def test_min_cost_plan_is_unique_in_its_numbers() -> None:
    # T = 40 of the case above: 2 x P1 + 4 x D2 (10 GPUs) and 2 x P2 + 4 x D2 (12 GPUs) both
    # take 3 nodes and serve 6 req/s; tokens/s/GPU is 60 or 50 depending on the tie.
    optimizer, referee = _hand(
        [P1, P2],
        [D1, D2],
        node=4,
        domain=4,
        budget=16,
        objective="min_cost",
        load_requests_per_s=5.0,
        price_usd_per_gpu_hour=2.0,
    )
    assert optimizer.best_at(40.0).total_gpus == referee.best_at(40.0).gpus == 10


SPLIT_ACROSS_DOMAINS = [
    # (prefill rows, decode rows, gpus per node, domain GPUs, budget, exclusive nodes); target 10.
    ([(4, 5.5, NAN), (24, 3.0, NAN)], [(12, 6.0, 30.0), (16, 0.5, 10.0), (1, 5.5, 20.0)], 8, 24, 44, False),
    ([(32, 4.5, NAN), (4, 3.5, NAN)], [(1, 5.5, 10.0), (2, 6.0, 10.0)], 4, 72, 144, False),
    ([(1, 2.5, NAN), (1, 1.0, NAN)], [(12, 2.0, 30.0), (24, 2.0, 20.0), (1, 5.0, 10.0)], 8, 16, 32, True),
    (
        [(2, 0.5, NAN), (12, 1.5, NAN), (4, 5.5, NAN)],
        [(4, 3.5, 20.0), (1, 1.5, 10.0), (24, 1.5, 10.0)],
        8,
        16,
        32,
        False,
    ),
]


def test_plan_nodes_are_the_least_that_hold_it() -> None:
    # Domain bins (sizes that do not tile a domain). The referee packs each MIP plan and counts
    # the fewest nodes that hold it; the frontier's `nodes` column must be that number.
    reported, least = [], []
    for prefill, decode, node, domain, budget, exclusive in SPLIT_ACROSS_DOMAINS:
        optimizer, referee = _hand(
            prefill, decode, node=node, domain=domain, budget=budget, exclusive=exclusive
        )
        assert optimizer.geometry.spans_domains
        plan = optimizer.best_at(10.0)
        reported.append(plan.nodes)
        least.append(referee.evaluate(_counts(optimizer, plan)).nodes)
    assert reported == least


def test_fixed_ratio_tie_break_finds_the_largest_plan() -> None:
    # Budget 44 (8-GPU nodes, 16-GPU domains), R = 1/3. Best ratio 37.5 tokens/s/GPU: 1 x (4 GPUs,
    # 6 req/s) prefill + 6 x (2 GPUs, 2.5 req/s) decode (16 GPUs, 600 tokens/s), or twice that
    # (32 GPUs, 1200 tokens/s), which the tie-break must prefer. (HiGHS 1.12's presolve answered 600 as
    # "optimal" here, so the tie-break solves without presolve.)
    optimizer, referee = _hand(
        [(4, 6.0, NAN), (1, 1.0, NAN), (4, 2.5, NAN)],
        [(2, 2.5, 20.0), (16, 5.0, 20.0)],
        budget=44,
        domain=16,
        fixed_ratio=1 / 3,
    )
    best = referee.best_at(20.0)
    assert (best.tokens_per_s_per_gpu, best.output_tokens_per_s, best.gpus) == (37.5, 1200.0, 32)
    plan = optimizer.best_at(20.0)
    assert plan.tokens_per_s_per_gpu == pytest.approx(37.5, rel=EXACT)
    assert plan.output_tokens_per_s == pytest.approx(1200.0, rel=EXACT)


def test_fixed_ratio_holds_prefill_to_decode_gpus() -> None:
    # Budget 16 (two 8-GPU nodes), R = 0.5: prefill GPUs within 0.485-0.515 x decode GPUs.
    # Free: 4 x P1 + 12 x D1 = 12 / 16 = 0.75 (1200 tokens/s). Held at 1:2: P1 + D1 with b = 2a
    # gives lambda = 2a on 3a GPUs = 0.667, largest a = 5 (15 GPUs, 1000 tokens/s); P2 + D1
    # with b = 4a also 0.667 but at most 12 GPUs; P1 + D2 (a = b): 0.5.
    free, referee_free = _hand([P1, P2], [D1, D2], budget=16)
    held, referee_held = _hand([P1, P2], [D1, D2], budget=16, fixed_ratio=0.5)
    plan_free, plan_held = free.best_at(20.0), held.best_at(20.0)
    assert plan_free.tokens_per_s_per_gpu == pytest.approx(75.0, rel=EXACT)
    assert plan_free.output_tokens_per_s == pytest.approx(1200.0, rel=EXACT)
    assert _instances(plan_held) == {"prefill": [(1, 5)], "decode": [(1, 10)]}
    assert plan_held.tokens_per_s_per_gpu == pytest.approx(200.0 / 3.0, rel=EXACT)
    assert plan_held.output_tokens_per_s == pytest.approx(1000.0, rel=EXACT)
    for target in referee_held.breakpoints:
        plan = held.best_at(target)
        ratio = plan.pools["prefill"].gpus / plan.pools["decode"].gpus
        assert abs(ratio / 0.5 - 1) <= FIXED_RATIO_TOLERANCE
        _assert_matches_referee(held, referee_held, plan, target)
    _assert_matches_referee(free, referee_free, plan_free, 20.0)


def test_infeasible_budget_names_the_smallest_budget() -> None:
    # The smallest prefill (4 GPUs) and decode (2 GPUs) instances need 6 GPUs; the budget is 5.
    problem = resolve("qwen3-32b-h200-4000-500", overrides={"cluster.max_gpus": 5})
    optimizer, referee = _hand([(4, 1.0, NAN)], [(2, 1.0, 20.0), (4, 3.0, 10.0)], budget=5)
    for target in (10.0, 20.0):
        assert optimizer.best_at(target) is None
        assert referee.best_at(target) is None
    assert trace(optimizer, "max_tokens_per_s_per_gpu") == []
    message = why_no_plan(problem, optimizer)
    assert "4 (prefill) + 2 (decode) = 6 GPUs" in message
    assert "at least 6" in message


def test_one_gpu_budget_leaves_only_aggregated_plans() -> None:
    problem = resolve("qwen3-32b-h200-4000-500", overrides={"cluster.max_gpus": 1})
    frontier = solve_frontier(problem)
    assert "aggregated" in frontier.plans
    assert "disaggregated" not in frontier.plans
    assert "at least 2" in frontier.infeasible["disaggregated"]
    with pytest.raises(InfeasibleError, match="at least 2"):
        solve_frontier(problem, modes=("disaggregated",))


# --------------------------------------------------------------------------- small real instances

REAL = [
    # (instance, scenario, overrides, modes): small budgets, one or two modes each.
    ("qwen3-32b-h200-4000-500", None, {"cluster.max_gpus": 4}, ("disaggregated", "aggregated")),
    ("llama-3.1-70b-h100-8k-1k", None, {"cluster.max_nodes": 2}, ("disaggregated", "aggregated")),
    ("llama-3.1-70b-h100-8k-1k", "exclusive", {"cluster.max_nodes": 2}, ("disaggregated",)),
    ("llama-3.1-8b-gb200-4k-256", None, {"cluster.max_gpus": 4}, ("disaggregated", "aggregated")),
    ("deepseek-r1-gb200-16k-2k", None, {"cluster.max_gpus": 16}, ("disaggregated", "aggregated")),
    ("qwen3-32b-h200-4000-500", "serve_10_rps_min_gpus", {"cluster.max_gpus": 16}, ("disaggregated",)),
    ("llama-3.1-70b-h100-8k-1k", "serve_4_rps_min_cost", {"cluster.max_nodes": 2}, ("disaggregated",)),
]
REAL_CASES = [
    pytest.param(name, scenario, overrides, mode, id=f"{name}-{scenario or 'base'}-{mode}")
    for name, scenario, overrides, modes in REAL
    for mode in modes
]


def _real(name: str, scenario: str | None, overrides: dict, mode: str, *, prune: bool = True):
    problem = resolve(name, scenario=scenario, overrides=overrides)
    optimizer = mode_optimizer(problem, mode, mode_tables(problem, mode, None, prune=prune))
    return problem, optimizer


@cache
def _traced(name: str, scenario: str | None, overrides: tuple, mode: str):
    """Problem, optimizer and HiGHS frontier of a real case (shared by the tests that read them)."""
    problem, optimizer = _real(name, scenario, dict(overrides), mode)
    return problem, optimizer, trace(optimizer, problem.instance.objective)


def _referee(problem, optimizer: ModeOptimizer, **options) -> BruteForce:
    return BruteForce.of(problem, optimizer, **options)


def _assert_frontier_is_pareto_set(frontier: list[Plan], pareto: list, objective: str) -> None:
    """Same points both ways: every referee Pareto point is weakly dominated by a frontier row, and back."""
    assert frontier, "empty frontier"
    for point in pareto:
        assert any(
            row.tokens_per_s_per_user >= point.tokens_per_s_per_user
            and _value(row, objective) >= _value(point, objective) - TIE * abs(_value(point, objective))
            for row in frontier
        ), f"the frontier misses {point}"
    got = [(row.tokens_per_s_per_user, _value(row, objective)) for row in frontier]
    want = [(p.tokens_per_s_per_user, _value(p, objective)) for p in pareto]
    assert len(got) == len(want)
    for (u1, v1), (u2, v2) in zip(got, want, strict=True):
        assert u1 == pytest.approx(u2, rel=EXACT)
        assert v1 == pytest.approx(v2, rel=TIE)


@pytest.mark.parametrize(("name", "scenario", "overrides", "mode"), REAL_CASES)
def test_frontier_equals_the_referee(name: str, scenario: str | None, overrides: dict, mode: str) -> None:
    problem, optimizer, frontier = _traced(name, scenario, tuple(overrides.items()), mode)
    referee = _referee(problem, optimizer)
    for plan in frontier:
        _assert_matches_referee(optimizer, referee, plan, plan.target_tokens_per_s_per_user)
    _assert_frontier_is_pareto_set(frontier, referee.pareto(), problem.instance.objective)


@pytest.mark.parametrize(
    ("name", "scenario", "overrides", "mode"),
    [case for case in REAL_CASES if not case.values[0].startswith("deepseek")],  # 1000s of unpruned rows
)
def test_pruning_never_changes_the_pareto_set(
    name: str, scenario: str | None, overrides: dict, mode: str
) -> None:
    # The referee on the *unpruned* table (every fitting row) against the referee on the pruned
    # one, which the MIP matches (above): dominated rows never change an optimum.
    problem, pruned = _real(name, scenario, overrides, mode)
    _, everything = _real(name, scenario, overrides, mode, prune=False)
    assert len(everything.candidates.table) > len(pruned.candidates.table)
    objective = problem.instance.objective
    want = [(p.tokens_per_s_per_user, _value(p, objective)) for p in _referee(problem, pruned).pareto()]
    got = [(p.tokens_per_s_per_user, _value(p, objective)) for p in _referee(problem, everything).pareto()]
    assert len(got) == len(want)
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), rtol=EXACT)


def test_fixed_ratio_frontier_equals_the_referee() -> None:
    problem = resolve("llama-3.1-70b-h100-8k-1k", overrides={"cluster.max_nodes": 1})
    mode = "disaggregated_fixed_ratio"
    optimizer = mode_optimizer(problem, mode, mode_tables(problem, mode, None), fixed_ratio=0.5)
    referee = _referee(problem, optimizer, fixed_ratio=0.5)
    frontier = trace(optimizer, problem.instance.objective)
    for plan in frontier:
        _assert_matches_referee(optimizer, referee, plan, plan.target_tokens_per_s_per_user)
        ratio = plan.pools["prefill"].gpus / plan.pools["decode"].gpus
        assert abs(ratio / 0.5 - 1) <= FIXED_RATIO_TOLERANCE
    _assert_frontier_is_pareto_set(frontier, referee.pareto(), problem.instance.objective)


def test_mid_sweep_resolve_equals_a_fresh_build() -> None:
    problem, optimizer = _real("llama-3.1-70b-h100-8k-1k", None, {"cluster.max_nodes": 2}, "disaggregated")
    points = optimizer.breakpoints
    t1, t2, t3 = points[0], points[len(points) // 2], points[3 * len(points) // 4]
    first = optimizer.best_at(t1)
    middle = optimizer.best_at(t2)
    last = optimizer.best_at(t3)
    again = optimizer.best_at(t2)  # back down, after the warm start moved past it
    _, fresh_optimizer = _real("llama-3.1-70b-h100-8k-1k", None, {"cluster.max_nodes": 2}, "disaggregated")
    fresh = fresh_optimizer.best_at(t2)
    assert first.tokens_per_s_per_gpu >= middle.tokens_per_s_per_gpu >= last.tokens_per_s_per_gpu
    assert last.tokens_per_s_per_gpu < first.tokens_per_s_per_gpu
    for plan in (middle, again):
        assert plan.tokens_per_s_per_gpu == pytest.approx(fresh.tokens_per_s_per_gpu, rel=EXACT)
        assert plan.output_tokens_per_s == pytest.approx(fresh.output_tokens_per_s, rel=EXACT)
        assert _instances(plan) == _instances(fresh)


def test_referee_enumerators_agree() -> None:
    # The numpy grid (one layout per pool) against plain itertools over every plan.
    problem, optimizer = _real("llama-3.1-70b-h100-8k-1k", None, {"cluster.max_nodes": 1}, "disaggregated")
    grid = _referee(problem, optimizer)
    plain = _referee(problem, optimizer, vectorized=False)

    def numbers(plan) -> tuple | None:
        if plan is None:
            return None
        return plan.tokens_per_s_per_gpu, plan.output_tokens_per_s, plan.gpus, plan.tokens_per_s_per_user

    assert plain.plans_scored > 50  # 62: one layout per pool, the prefill layouts any target can use
    for target in grid.breakpoints:
        assert numbers(grid.best_at(target)) == numbers(plain.best_at(target))
    assert [numbers(p) for p in grid.pareto()] == [numbers(p) for p in plain.pareto()]


# --------------------------------------------------------------------------- HiGHS and OR-Tools


@pytest.mark.parametrize(
    ("name", "overrides", "mode"),
    [
        ("deepseek-r1-gb200-16k-2k", {"cluster.max_gpus": 16}, "disaggregated"),
        ("deepseek-r1-gb200-16k-2k", {"cluster.max_gpus": 16}, "aggregated"),
        ("llama-3.1-70b-h100-8k-1k", {"cluster.max_nodes": 2}, "disaggregated"),
        ("llama-3.1-70b-h100-8k-1k", {"cluster.max_nodes": 2}, "aggregated"),
    ],
)
def test_highs_and_ortools_agree_at_every_target(name: str, overrides: dict, mode: str) -> None:
    # Both in one process: this also guards the highspy / OR-Tools pin (each ships a libhighs.so.1).
    problem, optimizer, frontier = _traced(name, None, tuple(overrides.items()), mode)
    other = ModeOptimizer(
        mode,
        optimizer.candidates,
        optimizer.geometry,
        layouts_per_pool=problem.instance.layouts_per_pool,
        exclusive_nodes=problem.instance.cluster.exclusive_nodes,
        solver="ortools",
    )
    assert other.backend.name == "ortools"
    assert frontier
    for plan in frontier:
        again = other.best_at(plan.target_tokens_per_s_per_user)
        assert again.tokens_per_s_per_gpu == pytest.approx(plan.tokens_per_s_per_gpu, rel=TIE)
        assert again.output_tokens_per_s == pytest.approx(plan.output_tokens_per_s, rel=TIE)
        # Plans equal in both numbers may differ in interactivity; the frontier's next jump then
        # lands on the other one, so the traced Pareto sets agree (the referee tests check them).
        assert again.tokens_per_s_per_user >= plan.target_tokens_per_s_per_user * (1 - EXACT)


# --------------------------------------------------------------------------- packing


@pytest.mark.parametrize(
    ("sizes", "container", "chain"),
    [
        ({1, 2, 4}, 8, True),
        (set(), 8, True),
        ({8}, 8, True),
        ({2, 3}, 8, False),
        ({3}, 8, False),
        ({3}, 6, True),
        ({1, 2, 4, 8, 16}, 18, False),
        ({1, 2}, 18, True),
        ({2, 6}, 12, True),
        ({4, 6}, 12, False),
    ],
)
def test_is_chain(sizes: set[int], container: int, chain: bool) -> None:
    assert is_chain(sizes, container) is chain


def _gb200(max_gpus: int, sizes: set[int], *, aggregate: bool = True) -> Geometry:
    return geometry(load_hardware("gb200-nvl72"), max_gpus, sizes, aggregate=aggregate)


def test_geometry_bins() -> None:
    one_rack = _gb200(72, {4, 8, 16, 32, 64})
    assert one_rack.bin_nodes == (18,)
    assert not one_rack.bins_are_domains
    assert not one_rack.spans_domains
    # Two racks: 1/2/4/8/16-node instances chain but do not tile 18-node domains -> one bin with
    # prefix rows for the sizes that do not divide 18 (4, 8 and 16 nodes).
    two_racks = _gb200(144, {4, 8, 16, 32, 64})
    assert two_racks.bin_nodes == (36,)
    assert two_racks.domain_nodes == (18, 18)
    assert two_racks.prefix_levels == (4, 8, 16)
    assert two_racks.level_capacity(16) == 32
    assert two_racks.level_capacity(4) == 32
    assert two_racks.nodes == 36
    # The reference formulation: one bin per domain.
    assert _gb200(144, {4, 8, 16, 32, 64}, aggregate=False).bin_nodes == (18, 18)
    # 1- and 2-node instances do tile them: one bin, no prefix rows.
    assert _gb200(144, {2, 4, 8}).prefix_levels == ()
    # A partial last domain (7 nodes) needs rows where it is not a multiple of the size.
    partial = _gb200(100, {4, 8, 16, 64})
    assert (partial.bin_nodes, partial.domain_nodes, partial.prefix_levels) == ((25,), (18, 7), (2, 4, 16))
    assert partial.level_capacity(2) == 24
    assert partial.full_domains == 1
    # Sizes that do not chain (3 and 2 nodes) fall back to one bin per domain.
    assert _gb200(144, {12, 8}).bins_are_domains
    assert _gb200(216, {16, 144}).bin_nodes == (54,)
    hgx = geometry(load_hardware("h100-sxm"), 32, {1, 2, 3, 8, 16})
    assert hgx.bin_nodes == (4,)
    assert not hgx.sub_node_chain
    assert hgx.sub_node_patterns
    assert geometry(load_hardware("h100-sxm"), 32, {1, 2, 4, 8, 16}).sub_node_chain
    assert geometry(load_hardware("h100-sxm"), 30, {8}).nodes == 4  # a partial node counts as one


@pytest.mark.parametrize(
    ("sizes", "node", "patterns"),
    [
        ([3, 2], 8, [(2, 1), (1, 2), (0, 4)]),
        ([3], 8, [(2,)]),
        ([5, 3], 8, [(1, 1), (0, 2)]),
        ([1, 2, 4], 4, [(4, 0, 0), (2, 1, 0), (0, 2, 0), (0, 0, 1)]),
    ],
)
def test_node_patterns_are_the_maximal_fillings(sizes: list[int], node: int, patterns: list) -> None:
    assert node_patterns(sizes, node) == patterns


@pytest.mark.parametrize(
    ("sizes", "counts", "nodes"),
    [
        ([3, 2], [2, 1], 1),  # 3 + 3 + 2
        ([3, 2], [3, 3], 2),  # 3 + 3 + 2 | 3 + 2 + 2
        ([3, 2], [0, 5], 2),  # 2 x 4 | 2
        ([3, 5], [3, 1], 2),  # 5 + 3 | 3 + 3
        ([1, 2, 4], [1, 1, 1], 2),  # chain: 7 GPUs in 4-GPU nodes
        ([3], [0], 0),
    ],
)
def test_least_shared_nodes(sizes: list[int], counts: list[int], nodes: int) -> None:
    node = 4 if max(sizes) == 4 else 8
    assert least_shared_nodes(sizes, counts, node) == nodes


def test_geometry_placement() -> None:
    geo = _gb200(216, {16, 144})
    assert geo.placement(2) == "sub_node"
    assert geo.placement(4) == "whole_nodes"
    assert geo.placement(72) == "whole_nodes"
    assert geo.placement(144) == "whole_domains"
    assert "neither fit in one 4-GPU node" in geo.placement(6)
    assert "72-GPU" in geo.placement(96)
    # Where a domain is one node, anything larger spans whole nodes (= whole domains).
    assert geometry(load_hardware("h100-sxm"), 32, {16}).placement(16) == "whole_nodes"


PLACEMENTS = [
    # (gpus per node, domain GPUs, budget, exclusive, instances, packs?)
    (8, 8, 8, False, [("prefill", 3), ("prefill", 3), ("decode", 2)], True),
    (8, 8, 8, False, [("prefill", 3), ("prefill", 3), ("decode", 3)], False),
    (8, 8, 16, False, [("prefill", 3)] * 3 + [("decode", 2)] * 3, True),  # 3+3+2 | 3+2+2
    (8, 8, 16, False, [("prefill", 5), ("prefill", 5), ("decode", 5)], False),  # 15 GPUs, 3 nodes needed
    (8, 8, 16, True, [("prefill", 3), ("decode", 3), ("decode", 2)], True),
    (8, 8, 16, False, [("prefill", 3)] * 3 + [("decode", 2)], True),  # 3+3+2 | 3
    (8, 8, 16, True, [("prefill", 3)] * 3 + [("decode", 2)], False),  # 3+3 | 3 | 2: three nodes
    (4, 4, 8, False, [("prefill", 1), ("prefill", 1), ("decode", 2), ("decode", 2), ("decode", 2)], True),
    (4, 4, 8, True, [("prefill", 1), ("prefill", 1), ("decode", 2), ("decode", 2), ("decode", 2)], False),
    (4, 72, 144, False, [("decode", 64), ("decode", 64), ("prefill", 8), ("prefill", 8)], True),
    (4, 72, 144, False, [("decode", 64), ("decode", 64), ("prefill", 16)], False),
    (4, 72, 144, False, [("decode", 64), ("decode", 64)] + [("prefill", 2)] * 8, True),
    (4, 72, 144, False, [("decode", 64), ("decode", 64), ("prefill", 12)], False),  # 3 nodes, 2 + 2 spare
    (4, 72, 216, False, [("decode", 144), ("prefill", 64), ("prefill", 8)], True),
    (4, 72, 288, False, [("decode", 144), ("prefill", 64), ("prefill", 64), ("prefill", 16)], False),
    (4, 72, 200, False, [("decode", 144), ("prefill", 4)], True),  # domains of 18, 18, 14 nodes
    (4, 72, 140, False, [("decode", 144)], False),  # over budget
    (4, 72, 144, False, [("decode", 96)], False),  # larger than a domain, not whole domains
    (4, 72, 144, False, [("decode", 6)], False),  # neither in one node nor whole nodes
]


@pytest.mark.parametrize(("node", "domain", "budget", "exclusive", "instances", "packs"), PLACEMENTS)
def test_referee_placement(
    node: int, domain: int, budget: int, exclusive: bool, instances: list[tuple[str, int]], packs: bool
) -> None:
    cluster = Cluster(node, domain, budget)
    placement = place(instances, cluster, exclusive)
    assert (placement is not None) is packs
    if placement is not None:
        assert _valid_placement(placement, instances, cluster, exclusive)
        shared = sum(g for _, g in instances if g < node)
        whole = sum(g // node for _, g in instances if g >= node)
        assert whole + math.ceil(shared / node) <= placement.nodes_used <= whole + len(instances)


def test_referee_placement_uses_fewest_nodes() -> None:
    # 3 + 3 + 2 and 3 + 2 + 2 + ... : six instances (15 GPUs) in two 8-GPU nodes, not three.
    cluster = Cluster(8, 8, 24)
    instances = [("prefill", 3)] * 3 + [("decode", 2)] * 3
    assert place(instances, cluster, False).nodes_used == 2
    assert place(instances, cluster, True).nodes_used == 3  # 3+3 | 3 | 2+2+2
    assert np.all([len(d) == 1 for d in place(instances, cluster, False).domains])
