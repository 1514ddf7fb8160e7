"""Frontier points by layout set (planner.optimize.ratio_sets): exact bounds, the full MIP's answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from planner.frontier import mode_optimizer, mode_tables, trace
from planner.optimize import optimizer as optimizer_module
from planner.optimize.ratio_sets import _split_time, set_plans
from planner.problem import resolve

MIX = "llama-3.1-70b-h100-diurnal"


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
