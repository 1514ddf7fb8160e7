"""Upper bounds on tokens/s per GPU for every layout set: a frontier point solved by decomposition.

Why it exists
    A frontier point asks for the plan of best output tokens/s per GPU using at most
    ``L = layouts_per_pool`` layouts per pool. For a traffic mix the MIP's LP relaxation cannot
    see ``L`` (a fractional ``use`` lets it serve every class with its own best layout), so an
    aggregated point took 2-4 solves of up to 30 branch-and-bound nodes: most of a mix frontier's
    time. Fixed to a *layout set* ``S`` of the judged pool (decode, or aggregated; ``|S| <= L``)
    the MIP is tiny, and this module bounds every set exactly by enumeration (numpy, no solver).
    :meth:`planner.optimize.optimizer.ModeOptimizer._max_ratio_by_sets` solves the MIP restricted
    to the sets in decreasing bound order until the best plan meets the next bound: the same
    certificate as the elastic decomposition (:mod:`planner.optimize.layout_sets`), and one solve
    per point where the best set's bound is met.

The plans of a set
    For integer counts ``n`` of ``S``'s layouts (each at least 1) with ``sum g_c n_c <= G``, the
    most requests/s they serve at the mix's shares ``s_k`` is ``1 / t`` where ``t`` is the least
    time per unit rate: ``t = sum_k s_k / rho_ck / n_c`` for one layout; for two layouts ``a, b``
    each class's rate is split between them, ``A(x) = sum_k s_k x_k / rho_ak`` on ``a`` and
    ``B(x) = sum_k s_k (1 - x_k) / rho_bk`` on ``b``, and ``t = min_x max(A / n_a, B / n_b)``.
    The least ``A`` for a given ``B`` is a fractional knapsack (classes in decreasing
    ``rho_ak / rho_bk`` go to ``a`` first), so the optimum lies on that greedy path where
    ``A / n_a`` and ``B / n_b`` cross (one class split). Output tokens/s is ``OSL / t``
    (``OSL = sum_k s_k OSL_k``).

The bound of a set
    With one pool, the best ``tokens / GPUs`` over the set's plans. With a prefill pool too, both
    pools serve the same requests/s, so a plan on ``g_P`` prefill and ``g_D`` decode GPUs has at
    most ``min(E_P(g_P), T_S(g_D))`` tokens/s: ``T_S(g)`` the most of the set's plans on at most ``g``
    GPUs, ``E_P(g)`` the same over every prefill set (the prefill pool is left free in the
    restricted MIP). The bound is the best ``min(...) / (g_P + g_D)`` with ``g_P + g_D <= G``, and
    the tie-break (the largest plan at the optimal ratio) bounds each set's tokens/s the same way.
    Node and domain packing are dropped (the GPU budget is kept), so no plan the MIP accepts on
    ``S`` beats these bounds.

Scope
    ``layouts_per_pool <= 2``, the ratio objective at load 0 (a frontier), no fixed
    prefill:decode ratio; past :data:`MAX_PLANS` (counts listed, or the GPU grid of both pools)
    the full MIP answers the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_LAYOUTS_PER_SET = 2
"""Layouts per pool the enumeration handles exactly."""
MAX_PLANS = 2_000_000
"""Instance-count vectors the enumeration may list at one target (x classes numbers each); past it
(huge budgets of small instances, many usable layouts) the full MIP answers the point."""


@dataclass(frozen=True)
class SetPlans:
    """Every count vector of every layout set at one target, with its tokens/s and GPUs."""

    sets: np.ndarray
    """``(sets, 2)`` layout ids; the second is -1 for a one-layout set."""
    set_of: np.ndarray
    """Set of each listed plan."""
    tokens_per_s: np.ndarray
    """Most output tokens/s of each plan (its counts, the best split of classes)."""
    gpus: np.ndarray
    """GPUs of each plan."""

    def staircase(self, max_gpus: int) -> np.ndarray:
        """``(sets, max_gpus + 1)``: per set, the most tokens/s of a plan on at most ``g`` GPUs (0: none).

        A two-layout set counts the plans of either layout alone too: the MIP restricted to a set
        may leave one of its layouts out, so its bound is the best over the set's subsets.
        """
        best = np.zeros((len(self.sets), max_gpus + 1))
        np.maximum.at(best, (self.set_of, self.gpus.astype(np.int64)), self.tokens_per_s)
        single = np.full(int(self.sets.max(initial=0)) + 2, -1)  # layout -> its one-layout set
        alone = self.sets[:, 1] < 0
        single[self.sets[alone, 0]] = np.flatnonzero(alone)
        for member in (self.sets[:, 0], self.sets[:, 1]):
            of = np.where(~alone & (member >= 0), single[member], -1)
            has = of >= 0
            best[has] = np.maximum(best[has], best[of[has]])
        return np.maximum.accumulate(best, axis=1)


@dataclass(frozen=True)
class SetBounds:
    """Bounds of every layout set of the judged pool, the other pools free (their best at each size).

    ``tokens[s, ...]`` is an upper bound on the output tokens/s of a plan whose judged pool runs
    set ``s`` and whose pools use the GPUs of that grid cell (``gpus``): the judged pool's
    staircase and, with a second pool, the least of the two (both serve the same requests/s).
    """

    tokens: np.ndarray
    gpus: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """Per set: no plan on it has more output tokens/s per GPU."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.gpus > 0, self.tokens / self.gpus, 0.0)
        return ratio.max(axis=tuple(range(1, ratio.ndim)), initial=0.0)

    def tokens_at(self, ratio_floor: float) -> np.ndarray:
        """Per set: no plan on it of at least ``ratio_floor`` tokens/s per GPU has more tokens/s."""
        meets = (self.tokens >= ratio_floor * self.gpus) & (self.gpus > 0)
        return np.where(meets, self.tokens, 0.0).max(axis=tuple(range(1, self.tokens.ndim)), initial=0.0)


def grid_fits(sets: int, max_gpus: int, pools: int) -> bool:
    """True when :func:`set_bounds`' grid (sets x GPU counts of every pool) stays within :data:`MAX_PLANS`."""
    return pools <= 2 and sets * (max_gpus + 1) ** pools <= MAX_PLANS


def envelope(plans: SetPlans, max_gpus: int) -> np.ndarray:
    """``(max_gpus + 1,)``: the most tokens/s of any plan of any set of a pool on at most ``g`` GPUs."""
    return plans.staircase(max_gpus).max(axis=0, initial=0.0)


def set_bounds(judged: SetPlans, other: np.ndarray | None, max_gpus: int) -> SetBounds | None:
    """Bounds per set of the judged pool; ``other`` is the free pool's :func:`envelope` (None: one pool).

    None when the grid is too large (:func:`grid_fits`).
    """
    sizes = max_gpus + 1
    if not grid_fits(len(judged.sets), max_gpus, 1 if other is None else 2):
        return None
    judged_best = judged.staircase(max_gpus)
    g = np.arange(sizes, dtype=float)
    if other is None:
        return SetBounds(judged_best, np.broadcast_to(g, judged_best.shape))
    tokens = np.minimum(other[None, :, None], judged_best[:, None, :])  # [set, other GPUs, judged GPUs]
    gpus = g[:, None] + g[None, :]
    fits = (gpus <= max_gpus) & (g[:, None] > 0) & (g[None, :] > 0)
    return SetBounds(np.where(fits, tokens, 0.0), np.broadcast_to(np.where(fits, gpus, 0.0), tokens.shape))


def set_plans(
    rates: np.ndarray,
    gpus: np.ndarray,
    shares: np.ndarray,
    osl_tokens: np.ndarray,
    max_gpus: int,
    layouts_per_pool: int,
) -> SetPlans | None:
    """Every plan on at most ``layouts_per_pool`` of these layouts, or None past :data:`MAX_PLANS`.

    ``rates[c, k]`` is the requests/s of class ``k`` one instance of layout ``c`` serves (0 where
    the row is not allowed at this target); ``gpus[c]`` its GPUs; ``shares`` and ``osl_tokens``
    per class. Sets that cannot serve every class with a positive share are left out.
    """
    if layouts_per_pool > MAX_LAYOUTS_PER_SET:
        return None
    active = shares > 0
    rates, shares = rates[:, active], shares[active]
    osl = float(shares @ osl_tokens[active])
    with np.errstate(divide="ignore"):
        time = np.where(rates > 0, shares / np.where(rates > 0, rates, 1.0), np.inf)  # per unit rate
    counts = max_gpus // gpus
    serves_all = np.isfinite(time).all(axis=1) & (counts > 0)
    singles = np.flatnonzero(serves_all)
    pairs = _pairs(time, gpus, max_gpus) if layouts_per_pool >= 2 else np.zeros((0, 2), dtype=np.int64)
    listed = int(counts[singles].sum()) + int((counts[pairs[:, 0]] * counts[pairs[:, 1]]).sum())
    if listed * max(rates.shape[1], 1) > MAX_PLANS:
        return None
    sets = np.concatenate((np.stack((singles, np.full(len(singles), -1)), axis=1), pairs)).astype(np.int64)
    # One-layout sets: n instances serve n / sum_k t_k requests/s.
    single_set, n = _grid(counts[singles])
    c = singles[single_set]
    single_tokens = osl * n / time[c].sum(axis=1)
    # Two-layout sets: every (n_a, n_b) within the budget, classes split at their best.
    pair_set, local = _grid(counts[pairs[:, 0]] * counts[pairs[:, 1]])
    a, b = pairs[pair_set, 0], pairs[pair_set, 1]
    n_a, n_b = (local - 1) // counts[b] + 1, (local - 1) % counts[b] + 1
    fits = gpus[a] * n_a + gpus[b] * n_b <= max_gpus
    pair_set, n_a, n_b = pair_set[fits], n_a[fits], n_b[fits]
    pair_tokens = osl / _split_time(time[pairs[:, 0]], time[pairs[:, 1]], pair_set, n_a, n_b)
    return SetPlans(
        sets,
        np.concatenate((single_set, len(singles) + pair_set)),
        np.concatenate((single_tokens, pair_tokens)),
        np.concatenate((gpus[c] * n, gpus[pairs[pair_set, 0]] * n_a + gpus[pairs[pair_set, 1]] * n_b)).astype(
            float
        ),
    )


def _grid(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(group, i)`` for ``i`` in ``1..sizes[group]``, every group in turn (a ragged arange)."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.cumsum(sizes) - sizes
    return group, np.arange(len(group)) - starts[group] + 1


def _pairs(time: np.ndarray, gpus: np.ndarray, max_gpus: int) -> np.ndarray:
    """Pairs of layouts that fit the budget together, once each, and together serve every class."""
    a, b = np.triu_indices(len(gpus), k=1)
    fits = gpus[a] + gpus[b] <= max_gpus
    a, b = a[fits], b[fits]
    covers = (np.isfinite(time[a]) | np.isfinite(time[b])).all(axis=1)
    return np.stack((a[covers], b[covers]), axis=1).astype(np.int64)


def _split_time(
    alpha: np.ndarray, beta: np.ndarray, pair: np.ndarray, n_a: np.ndarray, n_b: np.ndarray
) -> np.ndarray:
    """Least time per unit rate of ``n_a`` instances of ``a`` and ``n_b`` of ``b``, classes split.

    ``alpha[p, k]``, ``beta[p, k]``: instance-seconds per unit rate of class ``k`` on pair ``p``'s
    layouts ``a`` and ``b`` (inf where it cannot run); ``pair``, ``n_a``, ``n_b`` list the counts.
    Classes only one layout runs are fixed to it; the others go to ``a`` in increasing
    ``alpha / beta`` (a fractional knapsack's order) until ``A / n_a`` reaches ``B / n_b``, the
    crossing class split so that they are equal.
    """
    only_a, only_b = ~np.isfinite(beta), ~np.isfinite(alpha)
    flexible = ~(only_a | only_b)
    with np.errstate(invalid="ignore"):
        key = np.where(flexible, alpha / np.where(flexible, beta, 1.0), np.inf)
    order = np.argsort(key, axis=1, kind="stable")  # flexible classes first, by alpha / beta
    flex_alpha = np.take_along_axis(np.where(flexible, alpha, 0.0), order, axis=1)
    flex_beta = np.take_along_axis(np.where(flexible, beta, 0.0), order, axis=1)
    a0 = np.where(only_a, alpha, 0.0).sum(axis=1)
    b0 = np.where(only_b, beta, 0.0).sum(axis=1)
    zero = np.zeros((len(alpha), 1))
    # Prefix j: the first j classes of that order on a, the rest on b (non-flexible ones add 0).
    on_a = a0[:, None] + np.concatenate((zero, np.cumsum(flex_alpha, axis=1)), axis=1)
    on_b = (
        b0[:, None]
        + flex_beta.sum(axis=1)[:, None]
        - np.concatenate((zero, np.cumsum(flex_beta, axis=1)), axis=1)
    )
    n_a, n_b = n_a[:, None].astype(float), n_b[:, None].astype(float)
    on_a, on_b = on_a[pair], on_b[pair]
    excess = on_a / n_a - on_b / n_b  # non-decreasing in j
    crossed = excess >= 0
    width = on_a.shape[1]
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), width)
    rows = np.arange(len(pair))
    time = np.empty(len(pair))
    at_start = first == 0  # a is the bottleneck with every flexible class on b
    time[at_start] = on_a[at_start, 0] / n_a[at_start, 0]
    never = first == width  # b is the bottleneck with every flexible class on a
    time[never] = on_b[never, -1] / n_b[never, 0]
    split = ~(at_start | never)
    r, j = rows[split], first[split]  # class order[j - 1] of the pair is split between a and b
    wa = flex_alpha[pair[r], j - 1] / n_a[r, 0]
    wb = flex_beta[pair[r], j - 1] / n_b[r, 0]
    short = -excess[r, j - 1]  # how far b was above a before the split class moved
    time[split] = on_a[r, j - 1] / n_a[r, 0] + short * wa / (wa + wb)
    return time
