"""Frontier points by layout set (planner.optimize.ratio_sets): exact bounds, the full MIP's answers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hand_tables import NAN, frame
from scipy.optimize import linprog

from planner.catalog import load_hardware
from planner.frontier import mode_optimizer, mode_tables, trace
from planner.optimize import optimizer as optimizer_module
from planner.optimize.model import MODE_POOLS, combine_classes
from planner.optimize.optimizer import ModeOptimizer
from planner.optimize.packing import geometry
from planner.optimize.ratio_sets import _split_time, set_plans
from planner.problem import resolve
from planner.specs import RequestClass

MIX = "llama-3.1-70b-h100-diurnal"
LONG = os.environ.get("DISAGG_FUZZ_LONG") == "1"
"""The long fuzz profile tries more random mixes."""


def _lp_rate(alpha: np.ndarray, beta: np.ndarray, n_a: int, n_b: int) -> float:
    """Most requests/s (unit shares folded into alpha, beta) two layouts serve, by linprog."""
    k = len(alpha)
    # Variables: rate, then the share x_k of class k on a. Maximize rate.
    # a: rate * sum alpha_k x_k <= n_a is not linear in (rate, x); use f_ak = rate x_k instead:
    # variables (rate, f_a[k], f_b[k]); f_a + f_b = rate; sum alpha f_a <= n_a; sum beta f_b <= n_b.
    cost = np.zeros(1 + 2 * k)
    cost[0] = -1.0
    a_ub = np.zeros((2, 1 + 2 * k))
    a_ub[0, 1 : 1 + k] = np.where(np.isfinite(alpha), alpha, 0.0)
    a_ub[1, 1 + k :] = np.where(np.isfinite(beta), beta, 0.0)
    a_eq = np.zeros((k, 1 + 2 * k))
    a_eq[:, 0] = -1.0
    a_eq[np.arange(k), 1 + np.arange(k)] = 1.0
    a_eq[np.arange(k), 1 + k + np.arange(k)] = 1.0
    bounds = [(0, None)] + [(0, 0 if not np.isfinite(x) else None) for x in (*alpha, *beta)]
    result = linprog(cost, A_ub=a_ub, b_ub=[n_a, n_b], A_eq=a_eq, b_eq=np.zeros(k), bounds=bounds)
    assert result.status == 0
    return -result.fun


def test_the_split_of_classes_between_two_layouts_serves_the_lp_optimum() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        k = int(rng.integers(1, 6))
        alpha, beta = rng.uniform(0.1, 3.0, (2, k))
        alpha[rng.random(k) < 0.2] = np.inf  # classes only b can run
        beta[rng.random(k) < 0.2] = np.inf  # classes only a can run
        both = ~np.isfinite(alpha) & ~np.isfinite(beta)
        beta[both] = 1.0  # every class runs somewhere
        n_a, n_b = (int(x) for x in rng.integers(1, 9, 2))
        time = _split_time(
            alpha[None], beta[None], np.zeros(1, dtype=np.int64), np.array([n_a]), np.array([n_b])
        )
        assert 1.0 / time[0] == pytest.approx(_lp_rate(alpha, beta, n_a, n_b), rel=1e-9)


def test_set_plans_list_every_count_vector_within_the_budget() -> None:
    rates = np.array([[2.0, 1.0], [1.0, 2.0], [0.0, 4.0]])  # layout 2 cannot serve class 0
    gpus = np.array([2, 4, 8])
    plans = set_plans(rates, gpus, np.array([0.5, 0.5]), np.array([100.0, 300.0]), 8, 2)
    sets = [tuple(s) for s in plans.sets]
    assert sets == [(0, -1), (1, -1), (0, 1)]  # (0, 2) and (1, 2) leave no room; 2 alone misses class 0
    singles = plans.set_of == 0
    # Layout 0 alone: n instances, each class's time 0.5/2 + 0.5/1 = 0.75 s per unit rate.
    np.testing.assert_allclose(plans.tokens_per_s[singles], 200.0 * np.arange(1, 5) / 0.75)
    assert sorted(plans.gpus[plans.set_of == 2].tolist()) == [6.0, 8.0]  # (1, 1) and (2, 1)


def _optimizer(mode: str, **overrides):
    problem = resolve(MIX, overrides={"cluster.max_gpus": 16, **overrides})
    return problem, mode_optimizer(problem, mode, mode_tables(problem, mode, None))


@pytest.mark.parametrize("mode", ["aggregated", "disaggregated"])
def test_every_set_bound_is_its_restricted_optimum_where_packing_never_binds(mode: str) -> None:
    # Two 8-GPU H100 nodes, 1- to 8-GPU instances: a chain, so the GPU budget is the only packing
    # row that binds and each set's bound is exactly the MIP's optimum on it.
    _, optimizer = _optimizer(mode)
    solved = 0
    for target in optimizer.breakpoints[::4]:
        optimizer._masks = optimizer.solution.at_target(target, optimizer.class_floors)
        optimizer.controls.set_target(*optimizer._masks)
        judged, bounds = optimizer._set_bounds()
        for s in np.flatnonzero(bounds.ratio > 0):
            optimum = optimizer._set_optimum(optimizer._set_mask(judged, s), bounds.ratio[s])
            assert optimum is not None
            assert optimum[0] == pytest.approx(bounds.ratio[s], rel=1e-7)
            solved += 1
    assert solved >= 30


def _frontier(problem, mode: str, by_sets: bool) -> np.ndarray:
    optimizer = mode_optimizer(problem, mode, mode_tables(problem, mode, None))
    optimizer._by_sets &= by_sets
    plans = trace(optimizer, problem.instance.objective)
    return np.array([(p.tokens_per_s_per_user, p.tokens_per_s_per_gpu, p.output_tokens_per_s) for p in plans])


@pytest.mark.parametrize("mode", ["aggregated", "disaggregated"])
@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        (MIX, {}),  # the shipped mix: three classes, two layouts per pool, four nodes
        (MIX, {"layouts_per_pool": 1, "cluster.max_gpus": 16}),
        ("deepseek-r1-gb200-16k-2k", {"cluster.max_gpus": 144}),  # two racks: prefix rows bind
    ],
)
def test_the_decomposed_frontier_is_the_full_mips(name: str, overrides: dict, mode: str) -> None:
    problem = resolve(name, overrides=overrides)
    by_sets, full = _frontier(problem, mode, True), _frontier(problem, mode, False)
    assert len(by_sets) == len(full) > 5
    # A mix's served rate is a solver value (feasibility tolerance): agreement to the mix tolerance.
    np.testing.assert_allclose(by_sets, full, rtol=1e-7)


def test_past_its_solve_allowance_a_point_falls_back_to_the_full_mip(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = resolve(MIX, overrides={"cluster.max_gpus": 16})
    full = _frontier(problem, "aggregated", False)
    monkeypatch.setattr(optimizer_module, "SET_SOLVES", 0)
    fallen_back = _frontier(problem, "aggregated", True)
    np.testing.assert_allclose(fallen_back, full, rtol=1e-7)


def _random_candidates(rng: np.random.Generator, mode: str):
    """A random traffic mix on one 8-GPU node type: layouts with random GPUs, rates and interactivity."""
    k = int(rng.integers(1, 4))
    shares = rng.dirichlet(np.ones(k))
    classes = tuple(
        RequestClass(
            name=f"c{i}", isl_tokens=100, osl_tokens=int(rng.choice([50, 100, 400])), share_fraction=s
        )
        for i, s in enumerate(shares)
    )
    pools = MODE_POOLS[mode]
    sizes = [1, 2, 4, 8] if rng.random() < 0.8 else [2, 3, 8]  # now and then sizes that do not chain
    layouts = {pool: [int(rng.choice(sizes)) for _ in range(int(rng.integers(2, 6)))] for pool in pools}
    tables = {}
    for cls in classes:
        tables[cls.name] = {}
        for pool, gpus in layouts.items():
            judged = pool == pools[-1]
            rows = [
                (
                    g,
                    float(rng.uniform(0.2, 2.0) * g ** rng.uniform(0.8, 1.1)),
                    float(rng.choice([20, 40, 60, 80])),
                )
                if judged
                else (g, float(rng.uniform(0.5, 4.0) * g), NAN)
                for g in gpus
            ]
            table = frame(rows)
            keep = rng.random(len(table)) < 0.85  # some layouts cannot run some classes
            keep[int(rng.integers(len(table)))] = True
            tables[cls.name][pool] = table[keep].reset_index(drop=True)
    budget = int(rng.choice([8, 12, 16, 24]))
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": 8, "scale_up_domain_gpus": 8})
    all_sizes = {g for per_pool in layouts.values() for g in per_pool}
    geo = geometry(hardware, budget, all_sizes)
    return combine_classes(tables, geo, classes), geo


@pytest.mark.parametrize("mode", ["aggregated", "disaggregated"])
def test_random_mixes_get_the_full_mips_optimum_by_layout_set(mode: str) -> None:
    rng = np.random.default_rng(12 if mode == "aggregated" else 13)
    compared = 0
    for _ in range(60 if LONG else 12):
        candidates, geo = _random_candidates(rng, mode)
        layouts_per_pool = int(rng.integers(1, 3))
        answers = []
        for by_sets in (True, False):
            optimizer = ModeOptimizer(
                mode,
                candidates,
                geo,
                layouts_per_pool=layouts_per_pool,
                exclusive_nodes=bool(rng.random() < 0.3),
            )
            optimizer._by_sets &= by_sets
            plans = [optimizer.best_at(t) for t in optimizer.breakpoints]
            answers.append(
                [None if p is None else (p.tokens_per_s_per_gpu, p.output_tokens_per_s) for p in plans]
            )
        by_sets, full = answers
        assert [a is None for a in by_sets] == [b is None for b in full]
        for a, b in zip(by_sets, full, strict=True):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-6)
                compared += 1
    assert compared >= 20
