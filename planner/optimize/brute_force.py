"""The referee: every plan of a small instance, enumerated, packed and scored the plain way.

Why it exists
    The MIP of :mod:`planner.optimize` claims the optimum, and the frontier claims
    to be the exact Pareto set, yet a MIP is a chain of modelling tricks (packing
    counted per bin, Dinkelbach's ratio, bounds toggled per target) any of which
    could be subtly wrong. This module answers the same questions with none of
    them, so the tests (``tests/test_optimize.py``) and the benchmark
    (``benchmarks/frontier.py``) can hold the MIP to it.

Why it is trustworthy
    - It enumerates. For every pool, every set of at most ``layouts_per_pool``
      candidate rows and every positive instance count within the GPU budget; the
      plans of the mode are all combinations of those. Nothing is relaxed or
      pruned, except by monotonicity: removing an instance from a packable plan
      leaves it packable.
    - Metrics follow the contract word for word, from rows and counts:
      ``lambda = min over pools of sum(requests_per_s x instances)``, output
      tokens/s ``lambda x OSL``, tokens/s/GPU over every GPU of the plan,
      interactivity the slowest decode-like row used.
    - Packing is checked constructively, by :func:`place`, which returns where every
      instance goes (domain, nodes) or ``None``. It reads only the node size, the
      domain size and the budget from the :class:`~planner.optimize.packing.Geometry`;
      it shares no code with the MIP's counting (no bins, no chain shortcut). Each
      bin-packing step is solved exactly by a search over *maximal* fillings of the
      first container (if a packing exists, one exists whose first container
      cannot take another remaining item: move it there), so it is exact for any
      sizes, divisibility chain or not.

The cluster (the contract's packing rules)
    ``ceil(max_gpus / gpus_per_node)`` nodes of ``gpus_per_node`` GPUs, at most
    ``max_gpus`` of them in use, grouped into scale-up domains of
    ``domain_gpus / gpus_per_node`` consecutive nodes (the last one may be partial).
    An instance smaller than a node sits in one node, next to any other such
    instances (of its own pool only, with ``exclusive_nodes``); a larger one spans
    ``g / gpus_per_node`` whole nodes inside one domain; one larger than a domain
    spans ``g / domain_gpus`` whole, full domains. Other sizes cannot be placed.

Speed
    With one layout per pool (every shipped instance) :class:`BruteForce` loops over
    the layout pairs and scores each pair's whole grid of instance counts with
    numpy. Packability is monotone in the counts, so the packable part of a grid
    is a staircase found with ``O(A + B)`` packings, cached per pair of sizes. With
    more layouts per pool it walks plain :mod:`itertools` products: tiny cases only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from planner.optimize.model import MODE_POOLS, Candidates
from planner.optimize.packing import Geometry

FIXED_RATIO_TOLERANCE = 0.03
"""The contract's fixed prefill:decode ratio holds within +-3%."""
TIE_SLACK = 1e-7
"""The MIP reports the largest plan within this relative slack of the best tokens/s/GPU; so does this."""
SAME_VALUE = 1e-9
"""Relative difference under which two objective values count as equal (as in :mod:`planner.frontier`)."""


# --------------------------------------------------------------------------- the cluster and packing


@dataclass(frozen=True)
class Cluster:
    """Nodes of ``gpus_per_node`` GPUs in scale-up domains of ``domain_gpus``, at most ``max_gpus`` in use."""

    gpus_per_node: int
    domain_gpus: int
    max_gpus: int

    def __post_init__(self) -> None:
        if self.domain_gpus % self.gpus_per_node:
            raise ValueError("the referee needs a whole number of nodes per scale-up domain")

    @classmethod
    def of(cls, geometry: Geometry) -> Cluster:
        """The physical cluster behind a geometry (only its three sizes are read)."""
        return cls(geometry.gpus_per_node, geometry.domain_gpus, geometry.max_gpus)

    @property
    def nodes(self) -> int:
        """Nodes in the budget (a partial last node counts as a whole one)."""
        return math.ceil(self.max_gpus / self.gpus_per_node)

    @property
    def domain_nodes(self) -> tuple[int, ...]:
        """Nodes in each domain, in order; only the last may be partial."""
        per = self.domain_gpus // self.gpus_per_node
        full, rest = divmod(self.nodes, per)
        return (per,) * full + ((rest,) if rest else ())


@dataclass(frozen=True)
class Placement:
    """Where every instance sits: ``domains[d][n]`` lists the instances (input indices) on that node."""

    domains: tuple[tuple[tuple[int, ...], ...], ...]

    @property
    def nodes_used(self) -> int:
        """Nodes holding at least one instance."""
        return sum(1 for domain in self.domains for node in domain if node)


def _maximal_fillings(items: tuple[int, ...], capacity: int) -> Iterator[tuple[int, ...]]:
    """Sub-multisets of ``items`` (sizes, descending) that fit ``capacity`` and leave no room for one more."""
    sizes = sorted(set(items), reverse=True)
    counts = [items.count(s) for s in sizes]

    def extend(i: int, left: int, chosen: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if i == len(sizes):
            spare = [s for s, c in zip(sizes, counts, strict=True) if chosen.count(s) < c]
            if all(s > left for s in spare):
                yield chosen
            return
        for k in range(min(counts[i], left // sizes[i]), -1, -1):
            yield from extend(i + 1, left - k * sizes[i], chosen + (sizes[i],) * k)

    yield from extend(0, capacity, ())


def _without(items: tuple[int, ...], taken: tuple[int, ...]) -> tuple[int, ...]:
    rest = list(items)
    for size in taken:
        rest.remove(size)
    return tuple(rest)


@cache
def fill(items: tuple[int, ...], capacities: tuple[int, ...]) -> tuple[tuple[int, ...], ...] | None:
    """Pack items (sizes, descending) into containers of these capacities: each container's items, or None.

    Exact: try every maximal filling of the first container, then pack the rest
    into the remaining containers (a packing, if one exists, can always be made
    to fill the first container maximally).
    """
    if not items:
        return ((),) * len(capacities)
    if not capacities or sum(items) > sum(capacities) or items[0] > max(capacities):
        return None
    for chosen in _maximal_fillings(items, capacities[0]):
        rest = fill(_without(items, chosen), capacities[1:])
        if rest is not None:
            return (chosen, *rest)
    return None


def _kind(gpus: int, cluster: Cluster) -> str | None:
    """``sub_node``, ``nodes`` (whole nodes in one domain), ``domains`` (whole domains), or None."""
    node, domain = cluster.gpus_per_node, cluster.domain_gpus
    if gpus < node:
        return "sub_node"
    if gpus % node:
        return None
    if gpus <= domain:
        return "nodes"
    return "domains" if gpus % domain == 0 else None


def place(instances: Sequence[tuple[str, int]], cluster: Cluster, exclusive_nodes: bool) -> Placement | None:
    """Place ``(pool, gpus)`` instances in the cluster by the contract's rules, or None if they cannot be.

    1. at most ``max_gpus`` GPUs in use, every size placeable;
    2. sub-node instances into the fewest nodes (per pool with ``exclusive_nodes``):
       each such shared node is then a one-node item;
    3. domain-spanning instances onto whole full domains;
    4. whole-node instances and shared nodes into the remaining domains.
    Using the fewest shared nodes never hurts step 4, so the search is exact.
    """
    node = cluster.gpus_per_node
    if sum(g for _, g in instances) > cluster.max_gpus:
        return None
    kinds = [_kind(g, cluster) for _, g in instances]
    if None in kinds:
        return None

    # Step 2: shared nodes, each a tuple of instance indices.
    shared: list[tuple[int, ...]] = []
    groups: dict[str, list[int]] = {}
    for i, ((pool, _), kind) in enumerate(zip(instances, kinds, strict=True)):
        if kind == "sub_node":
            groups.setdefault(pool if exclusive_nodes else "", []).append(i)
    for members in groups.values():
        sizes = tuple(sorted((instances[i][1] for i in members), reverse=True))
        count = math.ceil(sum(sizes) / node)
        while (contents := fill(sizes, (node,) * count)) is None:
            count += 1
        queues = _queues(members, instances)
        shared += [tuple(queues[s].pop() for s in content) for content in contents]

    # Step 3: spanning instances take whole full domains (all full domains are alike; use the last ones).
    capacities = list(cluster.domain_nodes)
    full = [d for d, n in enumerate(capacities) if n == cluster.domain_gpus // node]
    spanning = [i for i, k in enumerate(kinds) if k == "domains"]
    needed = sum(instances[i][1] // cluster.domain_gpus for i in spanning)
    if needed > len(full):
        return None
    reserved = full[len(full) - needed :]
    owner: dict[int, int] = {}
    free = iter(reserved)
    for i in spanning:
        for _ in range(instances[i][1] // cluster.domain_gpus):
            owner[next(free)] = i

    # Step 4: whole-node instances (g / node nodes) and shared nodes (1 node) into the other domains.
    open_domains = [d for d in range(len(capacities)) if d not in owner]
    whole = [i for i, k in enumerate(kinds) if k == "nodes"]
    items = tuple(sorted([instances[i][1] // node for i in whole] + [1] * len(shared), reverse=True))
    contents = fill(items, tuple(capacities[d] for d in open_domains))
    if contents is None:
        return None
    by_nodes = {k: [i for i in whole if instances[i][1] // node == k] for k in set(items)}
    domains: list[list[tuple[int, ...]]] = [[()] * n for n in capacities]
    for d, i in owner.items():
        domains[d] = [(i,)] * capacities[d]
    for d, content in zip(open_domains, contents, strict=True):
        at = 0
        for k in content:
            if k == 1 and not by_nodes.get(1):
                domains[d][at] = shared.pop()
            else:
                i = by_nodes[k].pop()
                domains[d][at : at + k] = [(i,)] * k
            at += k
    return Placement(tuple(tuple(nodes) for nodes in domains))


def _queues(members: list[int], instances: Sequence[tuple[str, int]]) -> dict[int, list[int]]:
    queues: dict[int, list[int]] = {}
    for i in members:
        queues.setdefault(instances[i][1], []).append(i)
    return queues


@cache
def _nodes_for(counts: tuple[tuple[str, int, int], ...], cluster: Cluster, exclusive: bool) -> int | None:
    """Nodes used by a packing of ``(pool, gpus, instances)`` counts, or None when they do not pack."""
    instances = [(pool, gpus) for pool, gpus, n in counts for _ in range(n)]
    placement = place(instances, cluster, exclusive)
    return None if placement is None else placement.nodes_used


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class RefPlan:
    """One plan and its metrics, computed by the contract's formulas."""

    counts: tuple[tuple[int, int], ...]
    """``(row, instances)`` pairs; rows index :attr:`BruteForce.rows`."""
    pools: tuple[str, ...]
    """The pool of each entry of ``counts``."""
    requests_per_s: float
    output_tokens_per_s: float
    gpus: int
    pool_gpus: Mapping[str, int]
    nodes: int
    tokens_per_s_per_user: float

    @property
    def tokens_per_s_per_gpu(self) -> float:
        """Output tokens/s over every GPU of the plan."""
        return self.output_tokens_per_s / self.gpus


@dataclass
class _Level:
    """Candidate plans of one interactivity: objective value, tokens/s and GPUs (the tie-breaks), counts."""

    value: list[float]
    tokens: list[float]
    gpus: list[int]
    counts: list[tuple[tuple[int, int], ...]]

    def reduce(self) -> None:
        """Keep only plans no other plan of the level beats on value and tokens (exact for every query)."""
        order = sorted(range(len(self.value)), key=lambda i: (-self.value[i], -self.tokens[i], self.gpus[i]))
        keep, best = [], -math.inf
        for i in order:
            if self.tokens[i] > best:
                keep.append(i)
                best = self.tokens[i]
        for name in ("value", "tokens", "gpus", "counts"):
            setattr(self, name, [getattr(self, name)[i] for i in keep])

    def entries(self) -> Iterator[tuple[float, float, int, tuple[tuple[int, int], ...]]]:
        return zip(self.value, self.tokens, self.gpus, self.counts, strict=True)


class BruteForce:
    """Every plan of one mode, enumerated once; then the best plan at any target and the Pareto set.

    The objective value of a plan is higher-is-better: tokens/s/GPU, or minus its
    GPUs (``min_gpus``), or minus the nodes it occupies (``min_cost``: price per
    node is a constant). Ties are broken as the MIP does: the most output tokens/s
    among plans within :data:`TIE_SLACK` of the best tokens/s/GPU (exactly the
    best GPU or node count for the ``min_*`` objectives); then, where the MIP leaves
    it open, the fewest GPUs.

    ``vectorized`` (default: one layout per pool) picks the numpy grid enumerator;
    ``False`` walks every plan with :mod:`itertools`, the plainer of the two.
    """

    @classmethod
    def of(cls, problem, optimizer, **options) -> BruteForce:
        """The referee of an instance's mode, on the very candidates and cluster its optimizer uses."""
        inst = problem.instance
        return cls(
            optimizer.mode,
            optimizer.candidates,
            optimizer.geometry,
            osl_tokens=inst.traffic.osl_tokens,
            layouts_per_pool=inst.layouts_per_pool,
            exclusive_nodes=inst.cluster.exclusive_nodes,
            objective=inst.objective,
            load_requests_per_s=inst.traffic.requests_per_s,
            **options,
        )

    def __init__(
        self,
        mode: str,
        candidates: Candidates,
        geometry: Geometry,
        *,
        osl_tokens: int,
        layouts_per_pool: int = 1,
        exclusive_nodes: bool = False,
        objective: str = "max_tokens_per_s_per_gpu",
        load_requests_per_s: float | None = None,
        fixed_ratio: float | None = None,
        vectorized: bool | None = None,
    ):
        if len(getattr(candidates, "classes", ())) > 1:
            raise ValueError("the referee plans one-shape traffic only (one request class)")
        self.mode = mode
        self.pools = MODE_POOLS[mode]
        # Rows the MIP dropped as unplaceable are included: the referee judges placement itself.
        self.rows = pd.concat([candidates.table, candidates.dropped], ignore_index=True)
        self.cluster = Cluster.of(geometry)
        self.osl_tokens = osl_tokens
        self.layouts_per_pool = layouts_per_pool
        self.exclusive_nodes = exclusive_nodes
        self.objective = objective
        self.load = load_requests_per_s if objective != "max_tokens_per_s_per_gpu" else None
        if objective != "max_tokens_per_s_per_gpu" and self.load is None:
            raise ValueError(f"objective {objective} needs the load to serve")
        self.fixed_ratio = fixed_ratio
        self._gpus = self.rows["gpus"].to_numpy(dtype=np.int64)
        self._rate = self.rows["requests_per_s"].to_numpy(dtype=float)
        self._user = self.rows["tokens_per_s_per_user"].to_numpy(dtype=float)
        self._pool = self.rows["pool"].to_numpy()
        self._masks: dict[tuple, np.ndarray] = {}
        self.plans_scored = 0
        if vectorized is None:
            vectorized = layouts_per_pool == 1
        self._levels: dict[float, _Level] = {}
        (self._enumerate_grids if vectorized else self._enumerate_all)()
        for level in self._levels.values():
            level.reduce()

    # ----------------------------------------------------------------- answers

    def best_at(self, min_tokens_per_s_per_user: float) -> RefPlan | None:
        """The best plan whose every decode-like instance meets the target, or None."""
        levels = [lv for u, lv in self._levels.items() if u >= min_tokens_per_s_per_user]
        return self._pick(levels)

    def pareto(self) -> list[RefPlan]:
        """Plans no other plan beats on both interactivity and objective value, interactivity ascending."""
        front, best = [], -math.inf
        for u in sorted(self._levels, reverse=True):
            level = self._levels[u]
            if not level.value:
                continue
            top = max(level.value)
            if top > best + SAME_VALUE * max(abs(best), 1.0) or best == -math.inf:
                front.append(self._pick([level]))
                best = top
        return front[::-1]

    def evaluate(self, counts: Mapping[int, int]) -> RefPlan | None:
        """Metrics of an explicit plan (row -> instances), or None if it breaks a rule of the contract."""
        return self._plan(tuple(sorted((int(r), int(n)) for r, n in counts.items() if n > 0)))

    @property
    def breakpoints(self) -> list[float]:
        """The distinct interactivities of the decode-like rows, ascending."""
        return sorted(set(self._user[self._pool == self.pools[-1]].tolist()))

    # ----------------------------------------------------------------- one plan

    def _plan(self, counts: tuple[tuple[int, int], ...]) -> RefPlan | None:
        """Score one plan by the contract, or None when it breaks a rule."""
        pools = tuple(str(self._pool[r]) for r, _ in counts)
        per_pool = {
            q: [(r, n) for (r, n), p in zip(counts, pools, strict=True) if p == q] for q in self.pools
        }
        if any(not chosen for chosen in per_pool.values()) or set(pools) - set(self.pools):
            return None
        if any(len(chosen) > self.layouts_per_pool for chosen in per_pool.values()):
            return None
        pool_gpus = {q: sum(int(self._gpus[r]) * n for r, n in per_pool[q]) for q in self.pools}
        gpus = sum(pool_gpus.values())
        if gpus > self.cluster.max_gpus or not self._ratio_ok(pool_gpus):
            return None
        rate = min(sum(self._rate[r] * n for r, n in per_pool[q]) for q in self.pools)
        if self.load is not None and rate < self.load:
            return None
        label = {q: (q if self.exclusive_nodes else "") for q in self.pools}
        key = _count_key((label[p], int(self._gpus[r]), n) for (r, n), p in zip(counts, pools, strict=True))
        nodes = _nodes_for(key, self.cluster, self.exclusive_nodes)
        if nodes is None:
            return None
        user = min(self._user[r] for r, _ in per_pool[self.pools[-1]])
        return RefPlan(counts, pools, rate, rate * self.osl_tokens, gpus, pool_gpus, nodes, float(user))

    def _ratio_ok(self, pool_gpus: Mapping[str, int]) -> bool:
        if self.fixed_ratio is None:
            return True
        prefill, decode = pool_gpus["prefill"], pool_gpus["decode"]
        low, high = (
            (1 - FIXED_RATIO_TOLERANCE) * self.fixed_ratio,
            (1 + FIXED_RATIO_TOLERANCE) * self.fixed_ratio,
        )
        return low * decode <= prefill <= high * decode

    def _value(self, plan: RefPlan) -> float:
        if self.objective == "max_tokens_per_s_per_gpu":
            return plan.tokens_per_s_per_gpu
        if self.objective == "min_gpus":
            return -plan.gpus
        return -plan.nodes

    def _add(
        self, user: float, value: float, tokens: float, gpus: int, counts: tuple[tuple[int, int], ...]
    ) -> None:
        level = self._levels.setdefault(float(user), _Level([], [], [], []))
        level.value.append(float(value))
        level.tokens.append(float(tokens))
        level.gpus.append(int(gpus))
        level.counts.append(counts)

    def _pick(self, levels: list[_Level]) -> RefPlan | None:
        """The best value; within its tie window the most tokens/s, then the fewest GPUs."""
        entries = [entry for level in levels for entry in level.entries()]
        if not entries:
            return None
        best = max(value for value, *_ in entries)
        slack = TIE_SLACK * abs(best) if self.objective == "max_tokens_per_s_per_gpu" else 0.0
        tied = [e for e in entries if e[0] >= best - slack]
        *_, counts = max(tied, key=lambda e: (e[1], -e[2], e[0]))
        plan = self._plan(counts)
        assert plan is not None, "an enumerated plan failed its own re-check"
        return plan

    # ----------------------------------------------------------------- enumeration: any layouts per pool

    def _enumerate_all(self) -> None:
        """Every plan, one by one (tiny cases)."""
        per_pool = [list(self._pool_choices(q)) for q in self.pools]
        for parts in itertools.product(*per_pool):
            counts = tuple(sorted(pair for part in parts for pair in part))
            if sum(int(self._gpus[r]) * n for r, n in counts) > self.cluster.max_gpus:
                continue
            self.plans_scored += 1
            plan = self._plan(counts)
            if plan is not None:
                self._add(
                    plan.tokens_per_s_per_user, self._value(plan), plan.output_tokens_per_s, plan.gpus, counts
                )

    def _pool_choices(self, pool: str) -> Iterator[tuple[tuple[int, int], ...]]:
        """Every set of at most L rows of a pool with positive counts within the budget."""
        rows = np.flatnonzero(self._pool == pool).tolist()
        budget = self.cluster.max_gpus
        for k in range(1, self.layouts_per_pool + 1):
            for subset in itertools.combinations(rows, k):
                ranges = [range(1, budget // int(self._gpus[r]) + 1) for r in subset]
                for ns in itertools.product(*ranges):
                    if sum(int(self._gpus[r]) * n for r, n in zip(subset, ns, strict=True)) <= budget:
                        yield tuple(zip(subset, ns, strict=True))

    # ----------------------------------------------------------------- enumeration: one layout a pool, numpy

    def _enumerate_grids(self) -> None:
        """One row per pool: loop over the row combinations, score each one's count grid at once."""
        rows = [np.flatnonzero(self._pool == q).tolist() for q in self.pools]
        for combo in itertools.product(*rows):
            self._grid(tuple(int(r) for r in combo))

    def _grid(self, combo: tuple[int, ...]) -> None:
        gpus = [int(self._gpus[r]) for r in combo]
        limits = [self.cluster.max_gpus // g for g in gpus]
        if min(limits) == 0:
            return
        fits = self._fit_mask(tuple(zip(self.pools, gpus, strict=True)))
        n = np.meshgrid(*[np.arange(1, k + 1) for k in limits], indexing="ij")
        self.plans_scored += fits.size
        rate = np.minimum.reduce([self._rate[r] * n_q for r, n_q in zip(combo, n, strict=True)])
        total = sum(g * n_q for g, n_q in zip(gpus, n, strict=True))
        ok = fits.copy()
        if self.load is not None:
            ok &= rate >= self.load
        if self.fixed_ratio is not None:
            prefill, decode = gpus[0] * n[0], gpus[1] * n[1]
            ok &= (1 - FIXED_RATIO_TOLERANCE) * self.fixed_ratio * decode <= prefill
            ok &= prefill <= (1 + FIXED_RATIO_TOLERANCE) * self.fixed_ratio * decode
        if not ok.any():
            return
        tokens = rate * self.osl_tokens
        if self.objective == "max_tokens_per_s_per_gpu":
            value = tokens / total
        elif self.objective == "min_gpus":
            value = -total.astype(float)
        else:
            value = np.full(ok.shape, -np.inf)
            for idx in zip(*np.nonzero(ok), strict=True):
                key = _count_key(
                    (self._label(q), g, int(n_q[idx])) for q, g, n_q in zip(self.pools, gpus, n, strict=True)
                )
                value[idx] = -_nodes_for(key, self.cluster, self.exclusive_nodes)
        # Keep the grid's plans that no other plan of it beats on both value and tokens.
        flat = np.flatnonzero(ok)
        v, t, g = value.ravel()[flat], tokens.ravel()[flat], total.ravel()[flat]
        order = np.lexsort((g, -t, -v))
        running = np.maximum.accumulate(t[order])
        keep = order[np.concatenate(([True], t[order][1:] > running[:-1]))]
        user = self._user[combo[-1]]
        for i in keep:
            idx = np.unravel_index(flat[i], ok.shape)
            counts = tuple(sorted((r, int(n_q[idx])) for r, n_q in zip(combo, n, strict=True)))
            self._add(user, v[i], t[i], g[i], counts)

    def _label(self, pool: str) -> str:
        return pool if self.exclusive_nodes else ""

    def _fit_mask(self, sizes: tuple[tuple[str, int], ...]) -> np.ndarray:
        """``mask[i, j]``: whether ``i + 1`` instances of the first size and ``j + 1`` of the second pack."""
        key = tuple((self._label(q), g) for q, g in sizes)
        if key in self._masks:
            return self._masks[key]
        limits = [self.cluster.max_gpus // g for _, g in key]

        def packs(*ns: int) -> bool:
            counts = _count_key((q, g, n) for (q, g), n in zip(key, ns, strict=True))
            return _nodes_for(counts, self.cluster, self.exclusive_nodes) is not None

        mask = np.zeros(limits, dtype=bool)
        if len(key) == 1:
            for a in range(1, limits[0] + 1):
                if not packs(a):
                    break
                mask[a - 1] = True
        elif len(key) == 2:
            # Staircase: packable counts are closed downwards, so the largest b falls as a grows.
            b = limits[1]
            for a in range(1, limits[0] + 1):
                while b >= 1 and not packs(a, b):
                    b -= 1
                if b == 0:
                    break
                mask[a - 1, :b] = True
        else:  # pragma: no cover - modes have one or two pools
            raise ValueError("the grid enumerator handles one or two pools")
        self._masks[key] = mask
        return mask


def _count_key(parts) -> tuple[tuple[str, int, int], ...]:
    """A canonical, hashable multiset of ``(pool label, gpus, instances)``."""
    merged: dict[tuple[str, int], int] = {}
    for label, gpus, n in parts:
        merged[(label, gpus)] = merged.get((label, gpus), 0) + n
    return tuple(sorted((label, gpus, n) for (label, gpus), n in merged.items()))
