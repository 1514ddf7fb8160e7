"""Lower bounds on an elastic plan's GPU-hours for every layout set: the decomposition's certificate.

Why it exists
    In a multi-period plan the layouts (at most ``layouts_per_pool`` per pool, fixed over the
    horizon) are the only coupling between periods besides the ramp rows (and ``static``, which
    freezes the instances). Fix a layout set ``S`` (one subset per pool) and every pool of every
    period is a tiny integer problem: the fewest GPUs of ``S``'s layouts in that pool serving
    its classes' demand. This module solves all of them exactly by enumeration (numpy, no
    solver): with one layout, ``ceil(sum_k d_k / rho_k)`` instances; with two, every count
    ``n_1`` of the first, the rest of the demand going to the second by the fractional-knapsack
    rule (classes in decreasing ``rho_1k / rho_2k``, which is optimal for one capacity row).

    Dropping the rows that join the pools of a period (node packing; the GPU budget is kept as
    ``P_t + D_t <= G``) and the integer steps between periods gives, for each ``S``,

        m_t(S) = max(P_t(S) + D_t(S), LB_t)          (LB_t: the period alone, layouts free)
        bound(S) = sum_t hours_t x_t,  x_t = max_s (m_s(S) - ramp |t - s|)   (the ramp envelope)

    (GPU totals on ``S`` move in multiples of the gcd ``g`` of its layouts' GPUs, so the ramp is
    rounded down to a multiple of ``g``.)
    and for ``static`` (one instance vector for every period) ``P(S)`` is the fewest GPUs
    serving all periods at once, ``bound(S) = hours x max_t m_t(S)``. With a fixed
    prefill:decode ratio ``R``, ``P`` and ``D`` are raised in turn to the lattice of their
    layouts' GPU counts until ``0.97 R D <= P <= 1.03 R D`` can hold.

    Every plan on ``S`` (or a subset of it) costs at least ``bound(S)``, so ``min_S bound(S)``
    bounds the optimum from below, and solving the multi-period MIP restricted to the sets in
    increasing bound order, until the next bound reaches the best plan, proves that plan
    optimal (:mod:`planner.elastic`). The per-period floors ``x_t`` are valid rows of the
    restricted MIP too.

Scope
    Up to two layouts per pool (``layouts_per_pool <= 2``, or pools with at most that many
    usable layouts), layouts fixed over the horizon, two pools (prefill, decode); other
    studies use the full multi-period MIP.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from planner.optimize.model import FIXED_RATIO_TOLERANCE, Candidates

EPSILON = 1e-6
"""Relative slack on instance counts before rounding up: a bound never exceeds what the solver
(feasibility tolerance 1e-6) accepts as a plan."""
MAX_LAYOUTS_PER_SET = 2
"""Layouts per pool the enumeration handles exactly."""
MAX_TOTALS = 256
"""GPU totals the ramp walk (a DP over periods) visits per set; past it the ramp envelope bounds alone."""
MAX_PAIRS = 1_000_000
"""Prefill x decode GPU counts listed to find the totals a fixed ratio allows."""
MAX_ENUMERATION = 30_000_000
"""Numbers the enumeration may compute (instance counts x periods x classes per subset, and sets x
periods); past it (huge budgets of 1-GPU layouts, hundreds of layouts) the full MIP answers instead."""


def _round_up(values, totals: np.ndarray | None):
    """Each value raised to the least of ``totals`` at or above it (inf past the last; kept without)."""
    if totals is None:
        return values
    at = np.searchsorted(totals, np.asarray(values) - EPSILON)
    return np.where(at < len(totals), totals[np.minimum(at, len(totals) - 1)], np.inf)


@dataclass(frozen=True)
class LayoutSet:
    """One layout set and what no plan on it can go below."""

    layouts: np.ndarray
    """Boolean mask over layouts: the set's layouts of every pool."""
    gpu_hours_bound: float
    """GPU-hours no plan on these layouts (every period served) goes below (inf: none exists)."""
    gpu_floors: np.ndarray
    """Per period: GPUs no plan on these layouts goes below (the ramp envelope)."""

    @property
    def key(self) -> tuple[int, ...]:
        """The set's layout ids (hashable)."""
        return tuple(int(c) for c in np.flatnonzero(self.layouts))


class LayoutSetBounds:
    """Per-pool, per-period fewest GPUs of every layout subset; bounds of every layout set."""

    def __init__(
        self,
        candidates: Candidates,
        *,
        pools: tuple[str, str],
        layouts_per_pool: int,
        allowed_rows: np.ndarray,
        usable_layouts: np.ndarray,
        demand: np.ndarray,
        hours: np.ndarray,
        max_gpus: int,
        min_pool_gpus: float,
        ramp_gpus: float | None,
    ):
        """``demand[t, k]``: requests/s of class ``k`` to serve in period ``t``."""
        self.pools, self.hours, self.max_gpus = pools, np.asarray(hours, dtype=float), int(max_gpus)
        self.ramp_gpus = float(max_gpus if ramp_gpus is None else ramp_gpus)
        self.min_pool_gpus = float(min_pool_gpus)
        self.demand = np.asarray(demand, dtype=float)
        layouts = len(candidates.layouts)
        self.gpus = candidates.layouts["gpus"].to_numpy(dtype=np.int64)
        # rho[c, k]: requests/s of class k one instance of layout c serves (0: it may not serve it).
        self.rho = np.zeros((layouts, len(candidates.classes)))
        rows = np.flatnonzero(allowed_rows)
        self.rho[candidates.layout_of[rows], candidates.class_of[rows]] = candidates.requests_per_s[rows]
        pool_of = candidates.layouts["pool"].to_numpy()
        self.subsets: dict[str, list[tuple[int, ...]]] = {}
        self.per_period: dict[str, np.ndarray] = {}  # pool -> subsets x periods: fewest pool GPUs
        self.all_periods: dict[str, np.ndarray] = {}  # pool -> subsets: fewest GPUs serving every period
        for pool in pools:
            ids = [int(c) for c in np.flatnonzero((pool_of == pool) & usable_layouts)]
            self.subsets[pool] = (
                list(itertools.combinations(ids, min(layouts_per_pool, len(ids)))) if ids else []
            )
        periods, classes = self.demand.shape
        work = sum(
            (self.max_gpus // int(self.gpus[list(s)].max()) + 1) * periods * classes
            for pool in pools
            for s in self.subsets[pool]
        )
        sets = len(self.subsets[pools[0]]) * len(self.subsets[pools[1]])
        self.available = bool(sets) and max(work, sets * periods) <= MAX_ENUMERATION
        """False when the enumeration would be too large (or a pool has no layout): use the full MIP."""
        self.lattice: dict[str, np.ndarray] = {}
        self._totals_cache: dict[tuple, np.ndarray | None] = {}
        if not self.available:
            return
        for pool in pools:
            solved = [self._pool_gpus(subset) for subset in self.subsets[pool]]
            self.per_period[pool] = np.array([p for p, _ in solved]).reshape(-1, len(self.demand))
            self.all_periods[pool] = np.array([s for _, s in solved])
            self.lattice[pool] = np.array(
                [np.gcd.reduce(self.gpus[list(s)]) for s in self.subsets[pool]], float
            )

    @staticmethod
    def applies(layouts_per_pool: int, pools: tuple[str, ...], allow_relayout: bool) -> bool:
        """True when this decomposition is exact for the study (else the full MIP answers)."""
        return layouts_per_pool <= MAX_LAYOUTS_PER_SET and len(pools) == 2 and not allow_relayout

    # ----------------------------------------------------------------- one pool

    def _instances(self, need: np.ndarray) -> np.ndarray:
        """Whole instances covering ``need`` (fractional instances), never above what a solver accepts."""
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(need), np.ceil(need - EPSILON * np.maximum(need, 1.0)), np.inf)

    def _floor_count(self, gpus_taken: np.ndarray, size: int) -> np.ndarray:
        """Instances of ``size`` GPUs the pool floor still asks for after ``gpus_taken``."""
        return np.maximum(np.ceil((self.min_pool_gpus - gpus_taken) / size - EPSILON), 0.0)

    def _pool_gpus(self, subset: tuple[int, ...]) -> tuple[np.ndarray, float]:
        """Fewest GPUs of ``subset`` serving the pool per period, and serving every period at once."""
        demand, cap = self.demand, self.max_gpus
        if len(subset) == 1:
            (c,) = subset
            with np.errstate(divide="ignore", invalid="ignore"):
                need = np.where(demand > 0, demand / self.rho[c], 0.0).sum(axis=1)
            count = np.maximum(self._instances(need), self._floor_count(np.zeros(1), int(self.gpus[c])))
            gpus = np.where(self.gpus[c] * count <= cap, self.gpus[c] * count, np.inf)
            return gpus, float(gpus.max())
        big, small = sorted(subset, key=lambda c: (-self.gpus[c], c))  # fewer counts to enumerate
        g1, g2 = int(self.gpus[big]), int(self.gpus[small])
        rho1, rho2 = self.rho[big], self.rho[small]
        # Give the first layout's capacity to classes in decreasing rho1/rho2 (saved second-layout
        # instances per first-layout instance); classes only it serves first, classes neither serves last.
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(rho2 > 0, rho1 / rho2, np.where(rho1 > 0, np.inf, -np.inf))
        order = np.argsort(-gain, kind="stable")
        rho1, rho2, d = rho1[order], rho2[order], demand[:, order]
        with np.errstate(divide="ignore", invalid="ignore"):
            size = np.where(d > 0, d / rho1, 0.0)  # first-layout instances each class would take
        before = np.concatenate([np.zeros((len(d), 1)), np.cumsum(size, axis=1)[:, :-1]], axis=1)
        n1 = np.arange(cap // g1 + 1, dtype=float)
        taken = np.clip(n1[:, None, None] - before[None], 0.0, size[None])  # n1 x periods x classes
        with np.errstate(invalid="ignore"):
            left = np.maximum(d[None] - np.where(rho1 > 0, taken * rho1, 0.0), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            need2 = np.where(left > 1e-9 * np.maximum(d[None], 1.0), left / rho2, 0.0).sum(axis=2)
        n2 = np.maximum(self._instances(need2), self._floor_count(g1 * n1[:, None], g2))
        total = g1 * n1[:, None] + g2 * n2
        per_period = np.where(total <= cap, total, np.inf).min(axis=0)
        every = g1 * n1 + g2 * n2.max(axis=1)
        return per_period, float(np.where(every <= cap, every, np.inf).min())

    # ----------------------------------------------------------------- layout sets

    def sets(
        self,
        period_gpus: np.ndarray,
        *,
        static: bool = False,
        fixed_ratio: float | None = None,
        first: int | None = None,
    ) -> list[LayoutSet]:
        """The ``first`` layout sets of cheapest bound (all if None), cheapest first (ties: set order).

        ``period_gpus``: ``LB_t``, the fewest GPUs of each period alone (layouts free).
        """
        rows = [self._row(i, period_gpus, static, fixed_ratio) for i in self._rows()]
        bounds = np.array([row[0] for row in rows])
        order = np.argsort(bounds, axis=None, kind="stable")[: bounds.size if first is None else first]
        found, layouts = [], len(self.gpus)
        second_subsets = self.subsets[self.pools[1]]
        for i, j in zip(*np.unravel_index(order, bounds.shape), strict=True):
            floors = rows[i][1][j]
            mask = np.zeros(layouts, dtype=bool)
            mask[list(self.subsets[self.pools[0]][i]) + list(second_subsets[j])] = True
            found.append(LayoutSet(mask, float(bounds[i, j]), floors))
        return found

    def _rows(self) -> range:
        return range(len(self.subsets[self.pools[0]]))

    def _row(
        self, i: int, period_gpus: np.ndarray, static: bool, fixed_ratio: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bounds and per-period floors of every set with the first pool's ``i``-th subset."""
        first, second = self.pools
        firsts = self.all_periods[first][:, None] if static else self.per_period[first]
        seconds = self.all_periods[second][:, None] if static else self.per_period[second]
        p = np.broadcast_to(firsts[i], (len(seconds), firsts.shape[1])).astype(float)
        d = seconds.astype(float)
        if fixed_ratio is not None:
            steps = (self.lattice[first][i], self.lattice[second][:, None])
            p, d = self._hold_ratio(p, d, *steps, fixed_ratio)
        gpus = p + d
        gpus = np.where(gpus <= self.max_gpus, gpus, np.inf)
        totals = [
            self._totals(self.lattice[first][i], d_step, fixed_ratio) for d_step in self.lattice[second]
        ]
        if static:
            peak = np.maximum(gpus[:, 0], period_gpus.max())
            peak = np.array([_round_up(x, f) for x, f in zip(peak, totals, strict=True)])
            return peak * self.hours.sum(), np.repeat(peak[:, None], len(self.hours), axis=1)
        # Totals move in steps of the set's GPU lattice: a ramp of 6 on 4-GPU steps allows 4.
        step = np.gcd(int(self.lattice[first][i]), self.lattice[second].astype(np.int64))
        ramp = np.floor(self.ramp_gpus / step) * step
        need = np.maximum(gpus, period_gpus[None])
        floors = self._ramp_envelope(need, ramp)
        bounds = (floors * self.hours).sum(axis=1)
        groups: dict[int, list[int]] = {}  # sets sharing one list of totals walk together
        for j, f in enumerate(totals):
            floors[j] = _round_up(floors[j], f)
            if f is not None and len(f) <= MAX_TOTALS:
                groups.setdefault(id(f), []).append(j)
        for js in groups.values():
            bounds[js] = np.maximum(bounds[js], self._ramp_walk(need[js], totals[js[0]]))
        return bounds, floors

    def _totals(self, p_step: float, d_step: float, ratio: float | None) -> np.ndarray | None:
        """GPU totals ``P + D <= G`` a set can hold: ``P``, ``D`` on their lattices, within the ratio band.

        None when there are too many to list (the envelope alone bounds then).
        """
        key = (float(p_step), float(d_step), ratio)
        if key not in self._totals_cache:
            cap = self.max_gpus
            if ratio is None:
                step = math.gcd(int(p_step), int(d_step))
                found = np.arange(0, cap + 1, step, dtype=float) if cap // step < MAX_TOTALS else None
            elif (cap // p_step + 1) * (cap // d_step + 1) > MAX_PAIRS:
                found = None
            else:
                low, high = (1 - FIXED_RATIO_TOLERANCE) * ratio, (1 + FIXED_RATIO_TOLERANCE) * ratio
                p, d = np.meshgrid(
                    np.arange(0, cap + 1, p_step), np.arange(0, cap + 1, d_step), indexing="ij"
                )
                ok = (p + d <= cap) & (p >= low * d * (1 - EPSILON)) & (p <= high * d * (1 + EPSILON))
                found = np.unique((p + d)[ok]).astype(float)
            self._totals_cache[key] = found
        return self._totals_cache[key]

    def _ramp_walk(self, need: np.ndarray, totals: np.ndarray) -> np.ndarray:
        """Per row: least ``sum_t hours_t x_t``, ``x_t`` in ``totals``, ``x_t >= need_t``, ramp between.

        A shortest path over the totals, period by period (a DP; exact for this relaxation).
        """
        reach = np.abs(totals[:, None] - totals[None, :]) <= self.ramp_gpus + EPSILON
        cost = np.where(totals[None] >= need[:, :1] - EPSILON, self.hours[0] * totals[None], np.inf)
        for t in range(1, need.shape[1]):
            before = np.where(reach[None], cost[:, None, :], np.inf).min(axis=2)
            fits = totals[None] >= need[:, t : t + 1] - EPSILON
            cost = np.where(fits, before + self.hours[t] * totals, np.inf)
        return cost.min(axis=1)

    @staticmethod
    def _hold_ratio(p, d, p_step, d_step, ratio: float, rounds: int = 100):
        """Raise prefill ``p`` and decode ``d`` GPUs (on their lattices) until the ratio band can hold."""
        low, high = (1 - FIXED_RATIO_TOLERANCE) * ratio, (1 + FIXED_RATIO_TOLERANCE) * ratio

        def up(x, step):
            return np.ceil(x / step - EPSILON) * step

        for _ in range(rounds):
            with np.errstate(invalid="ignore"):
                p_next = np.maximum(p, up(low * d, p_step))
                d_next = np.maximum(d, up(p_next / high, d_step))
            if np.array_equal(p_next, p) and np.array_equal(d_next, d):
                break
            p, d = p_next, d_next
        return p, d

    @staticmethod
    def _ramp_envelope(gpus: np.ndarray, ramp: np.ndarray) -> np.ndarray:
        """``x_t = max_s (m_s - ramp |t - s|)`` per row: the least each period holds given its neighbours."""
        out, ramp = gpus.copy(), np.broadcast_to(np.asarray(ramp, dtype=float), len(gpus))
        for t in range(1, out.shape[1]):
            out[:, t] = np.maximum(out[:, t], out[:, t - 1] - ramp)
        for t in range(out.shape[1] - 2, -1, -1):
            out[:, t] = np.maximum(out[:, t], out[:, t + 1] - ramp)
        return out
