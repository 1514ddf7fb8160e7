"""The Pyomo model of one deployment mode, one ``define_*`` builder per block of the formulation.

The formulation is written out in :mod:`planner.optimize`;
this module builds it, for one or many request classes and one or many periods (a
frontier point is one period; an elastic plan is a day of them). Everything a study
changes between solves is a mutable parameter or a variable bound, changed only through
:class:`planner.optimize.controls.Controls`, so a persistent solver re-solves without a
rebuild.

The table in :mod:`planner.optimize` maps each symbol of the formulation to its name here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyomo.core as pyo

from planner.optimize.model import FIXED_RATIO_TOLERANCE, MODE_POOLS, Candidates, sub_node_groups
from planner.optimize.packing import Geometry, node_patterns


@dataclass(frozen=True)
class Shape:
    """What a model is built for: its candidates, cluster, pools and study switches (fixed at build)."""

    candidates: Candidates
    geometry: Geometry
    pools: tuple[str, ...]
    layouts_per_pool: int
    exclusive_nodes: bool
    periods: int = 1
    fixed_ratio: float | None = None
    allow_relayout: bool = False
    allow_unserved: bool = False

    @cached_property
    def gpus(self) -> np.ndarray:
        """GPUs per instance of each layout."""
        return self.candidates.layouts["gpus"].to_numpy(dtype=np.int64)

    @cached_property
    def pool_of(self) -> np.ndarray:
        """Pool of each layout."""
        return self.candidates.layouts["pool"].to_numpy()

    @cached_property
    def placement(self) -> np.ndarray:
        """``sub_node``, ``whole_nodes`` or ``whole_domains`` per layout."""
        return self.candidates.layouts["placement"].to_numpy()

    def copies_max(self, c: int) -> int:
        """Most instances of layout ``c`` the GPU budget holds."""
        return self.geometry.max_gpus // int(self.gpus[c])


def build_model(
    candidates: Candidates,
    geometry: Geometry,
    *,
    pools: tuple[str, ...],
    layouts_per_pool: int,
    exclusive_nodes: bool,
    periods: int = 1,
    fixed_ratio: float | None = None,
    allow_relayout: bool = False,
    allow_unserved: bool = False,
) -> pyo.ConcreteModel:
    """Build the MIP of one mode over ``periods`` periods (see :mod:`planner.optimize`)."""
    if fixed_ratio is not None and pools != MODE_POOLS["disaggregated"]:
        raise ValueError("a fixed prefill:decode ratio needs the disaggregated pools")
    shape = Shape(
        candidates,
        geometry,
        pools,
        layouts_per_pool,
        exclusive_nodes,
        periods,
        fixed_ratio,
        allow_relayout,
        allow_unserved,
    )
    m = pyo.ConcreteModel(name="disagg-planner")
    define_sets(m, shape)
    define_parameters(m, shape)
    define_variables(m, shape)
    define_capacity(m, shape)
    define_rate_matching(m, shape)
    define_layout_choice(m, shape)
    define_packing(m, shape)
    define_study_constraints(m, shape)
    define_objective(m, shape)
    return m


def define_sets(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Layouts ``L``, rows ``R``, classes ``K``, pools ``Q``, bins ``B``, periods ``T``."""
    placement = shape.placement
    m.L = pyo.Set(initialize=range(len(shape.candidates.layouts)), ordered=True)
    m.R = pyo.Set(initialize=range(len(shape.candidates.table)), ordered=True)
    m.K = pyo.Set(initialize=range(len(shape.candidates.classes)), ordered=True)
    m.Q = pyo.Set(initialize=shape.pools, ordered=True)
    m.B = pyo.Set(initialize=range(len(shape.geometry.bin_nodes)), ordered=True)
    m.T = pyo.Set(initialize=range(shape.periods), ordered=True)
    m.S = pyo.Set(initialize=[c for c in m.L if placement[c] == "whole_domains"], ordered=True)
    m.LBT = pyo.Set(
        initialize=[(c, b, t) for c in m.L if placement[c] != "whole_domains" for b in m.B for t in m.T],
        dimen=3,
        ordered=True,
    )


def define_parameters(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Every mutable parameter (set only through :class:`~planner.optimize.controls.Controls`)."""
    mutable = {"mutable": True}
    geo = shape.geometry
    m.tokens_weight = pyo.Param(initialize=1.0, **mutable)
    m.gpu_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.node_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.unserved_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.load_requests_per_s = pyo.Param(m.T, initialize=0.0, **mutable)
    shares = shape.candidates.shares
    m.share = pyo.Param(m.K, m.T, initialize=lambda _, k, t: float(shares[k]), **mutable)
    m.gpu_cap = pyo.Param(initialize=float(geo.max_gpus), **mutable)
    m.node_cap = pyo.Param(initialize=float(geo.nodes), **mutable)
    m.ratio_floor = pyo.Param(initialize=0.0, **mutable)
    m.tokens_floor = pyo.Param(initialize=0.0, **mutable)
    if shape.pools == MODE_POOLS["disaggregated"]:
        # Off (ratio_enforced = 0) unless a study holds prefill:decode GPUs at fixed_ratio.
        m.fixed_ratio = pyo.Param(initialize=float(shape.fixed_ratio or 1.0), **mutable)
        m.ratio_enforced = pyo.Param(initialize=1.0 if shape.fixed_ratio is not None else 0.0, **mutable)
    m.static = pyo.Param(initialize=0.0, **mutable)
    m.ramp_gpus = pyo.Param(initialize=float(geo.max_gpus), **mutable)
    m.min_pool_gpus = pyo.Param(initialize=0.0, **mutable)
    m.gpus_floor = pyo.Param(m.T, initialize=0.0, **mutable)


def define_variables(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Instance counts, layout choice, flows and served rate; the instance and GPU expressions."""
    placement, gpus, pool_of = shape.placement, shape.gpus, shape.pool_of
    m.copies = pyo.Var(
        m.LBT, domain=pyo.NonNegativeIntegers, bounds=lambda _, c, b, t: (0, shape.copies_max(c))
    )
    m.spanning_copies = pyo.Var(
        m.S, m.T, domain=pyo.NonNegativeIntegers, bounds=lambda _, c, t: (0, shape.copies_max(c))
    )
    m.use = pyo.Var(m.L, m.T if shape.allow_relayout else [0], domain=pyo.Binary)
    m.flow = pyo.Var(m.R, m.T, domain=pyo.NonNegativeReals)
    m.served_requests_per_s = pyo.Var(m.T, domain=pyo.NonNegativeReals)
    if shape.allow_unserved:
        m.unserved_requests_per_s = pyo.Var(m.T, domain=pyo.NonNegativeReals)

    def count(_, c: int, t: int):
        if placement[c] == "whole_domains":
            return m.spanning_copies[c, t]
        return sum(m.copies[c, b, t] for b in m.B)

    m.instances = pyo.Expression(m.L, m.T, rule=count)
    m.pool_gpus = pyo.Expression(
        m.Q, m.T, rule=lambda _, q, t: sum(int(gpus[c]) * m.instances[c, t] for c in m.L if pool_of[c] == q)
    )
    m.total_gpus = pyo.Expression(m.T, rule=lambda _, t: sum(m.pool_gpus[q, t] for q in m.Q))


def define_capacity(m: pyo.ConcreteModel, shape: Shape) -> None:
    """An instance time-shares its capacity between the classes it serves: ``sum f/rho <= n``."""
    rate, row_layout = shape.candidates.requests_per_s, shape.candidates.layout_of
    rows_of = {c: [r for r in m.R if row_layout[r] == c] for c in m.L}
    m.capacity = pyo.Constraint(
        m.L,
        m.T,
        rule=lambda _, c, t: sum(m.flow[r, t] / float(rate[r]) for r in rows_of[c]) <= m.instances[c, t],
    )


def define_rate_matching(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Every pool serves each class its share of the served rate, and the load is served."""
    row_layout, row_class = shape.candidates.layout_of, shape.candidates.class_of
    pool_of = shape.pool_of

    def demand(_, q, k, t):
        supply = [m.flow[r, t] for r in m.R if row_class[r] == k and pool_of[row_layout[r]] == q]
        if not supply:
            return m.share[k, t] * m.served_requests_per_s[t] <= 0
        # Equality: flows are the traffic actually routed (KV bandwidth reads them), never spare capacity.
        return sum(supply) == m.share[k, t] * m.served_requests_per_s[t]

    m.rate_matching = pyo.Constraint(m.Q, m.K, m.T, rule=demand)
    unserved = (lambda t: m.unserved_requests_per_s[t]) if shape.allow_unserved else (lambda t: 0)
    m.serve_load = pyo.Constraint(
        m.T, rule=lambda _, t: m.served_requests_per_s[t] + unserved(t) >= m.load_requests_per_s[t]
    )


def define_layout_choice(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Instances only of used layouts, a used layout runs, 1 to ``layouts_per_pool`` layouts per pool."""
    relayout, pool_of = shape.allow_relayout, shape.pool_of

    def use(c: int, t: int):
        return m.use[c, t if relayout else 0]

    m.only_if_used = pyo.Constraint(
        m.L, m.T, rule=lambda _, c, t: m.instances[c, t] <= shape.copies_max(c) * use(c, t)
    )
    choice_periods = list(m.T) if relayout else [0]
    m.used_runs = pyo.Constraint(
        m.L,
        choice_periods,
        rule=lambda _, c, t: (
            m.use[c, t] <= (m.instances[c, t] if relayout else sum(m.instances[c, s] for s in m.T))
        ),
    )
    m.layouts_per_pool = pyo.Constraint(
        m.Q,
        choice_periods,
        rule=lambda _, q, t: sum(m.use[c, t] for c in m.L if pool_of[c] == q) <= shape.layouts_per_pool,
    )
    m.pool_present = pyo.Constraint(
        m.Q, choice_periods, rule=lambda _, q, t: sum(m.use[c, t] for c in m.L if pool_of[c] == q) >= 1
    )


def define_packing(m: pyo.ConcreteModel, shape: Shape) -> None:
    """GPU budget; instances into nodes, nodes into domains (:mod:`~planner.optimize.packing`)."""
    geo = shape.geometry
    m.gpu_budget = pyo.Constraint(m.T, rule=lambda _, t: m.total_gpus[t] <= m.gpu_cap)
    groups = sub_node_groups(shape.candidates.layouts, geo, shape.exclusive_nodes)
    m.GBT = pyo.Set(initialize=[(k, b, t) for k in sorted(groups) for b in m.B for t in m.T], dimen=3)
    m.shared_nodes = pyo.Var(m.GBT, domain=pyo.NonNegativeIntegers, bounds=(0, geo.nodes))
    if geo.sub_node_patterns:
        _define_node_patterns(m, shape, groups)
    else:
        _define_node_fill(m, shape, groups)
    _define_bins(m, shape, groups)


def _define_node_fill(m: pyo.ConcreteModel, shape: Shape, groups: dict[str, list[int]]) -> None:
    """Sub-node instances fill shared nodes by GPU count (chained sizes), or one size per node."""
    geo, gpus = shape.geometry, shape.gpus
    node = geo.gpus_per_node

    def group_fill(_, key, b, t):
        members = groups[key]
        if geo.sub_node_chain:
            used = sum(int(gpus[c]) * m.copies[c, b, t] for c in members)
            return used <= node * m.shared_nodes[key, b, t]
        per_node = node // int(gpus[members[0]])
        return sum(m.copies[c, b, t] for c in members) <= per_node * m.shared_nodes[key, b, t]

    m.sub_node_fill = pyo.Constraint(m.GBT, rule=group_fill)


def _define_node_patterns(m: pyo.ConcreteModel, shape: Shape, groups: dict[str, list[int]]) -> None:
    """Sizes that do not chain: shared nodes are counted by maximal fillings (exact cutting-stock rows)."""
    geo, gpus = shape.geometry, shape.gpus
    sizes = {key: sorted({int(gpus[c]) for c in members}) for key, members in groups.items()}
    patterns = {key: node_patterns(sizes[key], geo.gpus_per_node) for key in groups}
    m.GPBT = pyo.Set(
        initialize=[
            (k, p, b, t) for k in sorted(groups) for p in range(len(patterns[k])) for b in m.B for t in m.T
        ],
        dimen=4,
    )
    m.pattern_nodes = pyo.Var(m.GPBT, domain=pyo.NonNegativeIntegers, bounds=(0, geo.nodes))
    m.GSBT = pyo.Set(
        initialize=[
            (k, i, b, t) for k in sorted(groups) for i in range(len(sizes[k])) for b in m.B for t in m.T
        ],
        dimen=4,
    )
    m.sub_node_fill = pyo.Constraint(
        m.GSBT,
        rule=lambda _, k, i, b, t: (
            sum(m.copies[c, b, t] for c in groups[k] if int(gpus[c]) == sizes[k][i])
            <= sum(pattern[i] * m.pattern_nodes[k, p, b, t] for p, pattern in enumerate(patterns[k]))
        ),
    )
    m.patterns_fit = pyo.Constraint(
        m.GBT,
        rule=lambda _, k, b, t: (
            sum(m.pattern_nodes[k, p, b, t] for p in range(len(patterns[k]))) <= m.shared_nodes[k, b, t]
        ),
    )


def _define_bins(m: pyo.ConcreteModel, shape: Shape, groups: dict[str, list[int]]) -> None:
    """Whole-node instances and shared nodes into bins; domain-spanning instances into whole domains."""
    geo, gpus, placement = shape.geometry, shape.gpus, shape.placement
    node, domain = geo.gpus_per_node, geo.domain_gpus
    whole = [c for c in m.L if placement[c] == "whole_nodes"]
    m.bin_nodes = pyo.Expression(
        m.B,
        m.T,
        rule=lambda _, b, t: (
            sum(int(gpus[c]) // node * m.copies[c, b, t] for c in whole)
            + sum(m.shared_nodes[key, b, t] for key in sorted(groups))
        ),
    )
    m.spanned_domains = pyo.Expression(
        m.T, rule=lambda _, t: sum(int(gpus[c]) // domain * m.spanning_copies[c, t] for c in m.S)
    )
    if geo.bins_are_domains:
        _define_domain_bins(m, shape)
    else:
        _define_one_bin(m, shape, whole, groups)
    m.nodes_used = pyo.Expression(
        m.T,
        rule=lambda _, t: (
            sum(m.bin_nodes[b, t] for b in m.B)
            + sum(int(gpus[c]) // node * m.spanning_copies[c, t] for c in m.S)
        ),
    )
    m.node_budget = pyo.Constraint(m.T, rule=lambda _, t: m.nodes_used[t] <= m.node_cap)


def _define_one_bin(
    m: pyo.ConcreteModel, shape: Shape, whole: list[int], groups: dict[str, list[int]]
) -> None:
    """One bin for the cluster: node count, whole domains for spanning instances, prefix-capacity rows.

    With instance sizes in nodes s_1 | s_2 | ... (1 for a shared node), a placement into
    domains of M_d nodes exists iff ``sum_{i>=j} s_i n_i <= sum_d floor(M_d/s_j) s_j`` for
    every j (``docs/formulation.md``); spanning instances first take whole full domains.
    """
    geo, gpus = shape.geometry, shape.gpus
    node = geo.gpus_per_node
    per_domain = geo.domain_gpus // node
    m.bin_capacity = pyo.Constraint(
        m.B,
        m.T,
        rule=lambda _, b, t: m.bin_nodes[b, t] + per_domain * m.spanned_domains[t] <= geo.bin_nodes[b],
    )
    if len(m.S):
        m.spanning_fit = pyo.Constraint(m.T, rule=lambda _, t: m.spanned_domains[t] <= geo.full_domains)
    if not geo.prefix_levels:
        return

    def prefix(_, level, t):
        larger = sum(int(gpus[c]) // node * m.copies[c, 0, t] for c in whole if int(gpus[c]) // node >= level)
        shared = sum(m.shared_nodes[key, 0, t] for key in sorted(groups)) if level == 1 else 0
        fit = per_domain // level * level
        return larger + shared + fit * m.spanned_domains[t] <= geo.level_capacity(level)

    m.prefix_capacity = pyo.Constraint(list(geo.prefix_levels), m.T, rule=prefix)


def _define_domain_bins(m: pyo.ConcreteModel, shape: Shape) -> None:
    """The exact fallback: one bin per domain, spanning instances reserve whole bins, bins ordered."""
    geo = shape.geometry
    full_bins = [b for b in m.B if geo.bin_nodes[b] * geo.gpus_per_node >= geo.domain_gpus]
    if len(m.S):
        m.reserved = pyo.Var(m.B, m.T, domain=pyo.Binary)
        for b in m.B:
            if b not in full_bins:
                for t in m.T:
                    m.reserved[b, t].fix(0)
        m.bin_capacity = pyo.Constraint(
            m.B, m.T, rule=lambda _, b, t: m.bin_nodes[b, t] <= geo.bin_nodes[b] * (1 - m.reserved[b, t])
        )
        m.spanning_fit = pyo.Constraint(
            m.T, rule=lambda _, t: m.spanned_domains[t] <= sum(m.reserved[b, t] for b in m.B)
        )
        m.reserved_last = pyo.Constraint(
            range(len(full_bins) - 1),
            m.T,
            rule=lambda _, i, t: m.reserved[full_bins[i], t] <= m.reserved[full_bins[i + 1], t],
        )
    else:
        m.bin_capacity = pyo.Constraint(m.B, m.T, rule=lambda _, b, t: m.bin_nodes[b, t] <= geo.bin_nodes[b])
    if len(full_bins) > 1:
        # Full domains are interchangeable: order them by nodes used to cut symmetric branches.
        m.bins_ordered = pyo.Constraint(
            range(len(full_bins) - 1),
            m.T,
            rule=lambda _, i, t: m.bin_nodes[full_bins[i], t] >= m.bin_nodes[full_bins[i + 1], t],
        )


def define_study_constraints(m: pyo.ConcreteModel, shape: Shape) -> None:
    """Tie-break floor, fixed prefill:decode ratio, pool floors, frozen deployments and ramps."""
    osl, budget = shape.candidates.osl_tokens, shape.geometry.max_gpus
    m.output_tokens_per_s = pyo.Expression(
        m.T, rule=lambda _, t: sum(m.share[k, t] * float(osl[k]) for k in m.K) * m.served_requests_per_s[t]
    )
    m.tokens_per_gpu_floor = pyo.Constraint(
        m.T, rule=lambda _, t: m.output_tokens_per_s[t] >= m.ratio_floor * m.total_gpus[t]
    )
    m.tokens_floor_row = pyo.Constraint(m.T, rule=lambda _, t: m.output_tokens_per_s[t] >= m.tokens_floor)
    if shape.pools == MODE_POOLS["disaggregated"]:
        slack = lambda: budget * (1 - m.ratio_enforced)  # noqa: E731 - reads as the big-M it is
        m.ratio_high = pyo.Constraint(
            m.T,
            rule=lambda _, t: (
                m.pool_gpus["prefill", t]
                <= (1 + FIXED_RATIO_TOLERANCE) * m.fixed_ratio * m.pool_gpus["decode", t] + slack()
            ),
        )
        m.ratio_low = pyo.Constraint(
            m.T,
            rule=lambda _, t: (
                m.pool_gpus["prefill", t]
                >= (1 - FIXED_RATIO_TOLERANCE) * m.fixed_ratio * m.pool_gpus["decode", t] - slack()
            ),
        )
    m.pool_floor = pyo.Constraint(m.Q, m.T, rule=lambda _, q, t: m.pool_gpus[q, t] >= m.min_pool_gpus)
    if shape.periods > 1:
        # Valid inequalities: no period needs fewer GPUs than it needs on its own (period_bounds).
        m.gpus_floor_row = pyo.Constraint(m.T, rule=lambda _, t: m.total_gpus[t] >= m.gpus_floor[t])
        later = [t for t in m.T if t > 0]
        m.frozen_up = pyo.Constraint(
            m.L,
            later,
            rule=lambda _, c, t: (
                m.instances[c, t] - m.instances[c, t - 1] <= shape.copies_max(c) * (1 - m.static)
            ),
        )
        m.frozen_down = pyo.Constraint(
            m.L,
            later,
            rule=lambda _, c, t: (
                m.instances[c, t - 1] - m.instances[c, t] <= shape.copies_max(c) * (1 - m.static)
            ),
        )
        m.ramp_up = pyo.Constraint(
            later, rule=lambda _, t: m.total_gpus[t] - m.total_gpus[t - 1] <= m.ramp_gpus
        )
        m.ramp_down = pyo.Constraint(
            later, rule=lambda _, t: m.total_gpus[t - 1] - m.total_gpus[t] <= m.ramp_gpus
        )


def define_objective(m: pyo.ConcreteModel, shape: Shape) -> None:
    """One linear objective, weights select the study: ``a OSL lam - theta GPUs - kappa nodes - pi e``."""
    m.objective = pyo.Objective(
        expr=sum(
            m.tokens_weight * m.output_tokens_per_s[t]
            - m.gpu_weight[t] * m.total_gpus[t]
            - m.node_weight[t] * m.nodes_used[t]
            - (m.unserved_weight[t] * m.unserved_requests_per_s[t] if shape.allow_unserved else 0)
            for t in m.T
        ),
        sense=pyo.maximize,
    )
