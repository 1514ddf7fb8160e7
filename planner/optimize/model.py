"""The Pyomo model of one deployment mode, built once and steered by mutable parameters.

The formulation is written out in :mod:`planner.optimize`; this module only
builds it, for one or many request classes and one or many periods (a frontier
point is one period; an elastic plan is a day of them). Everything a study changes
between solves is a mutable parameter or a variable bound, so a persistent solver
re-solves without a rebuild:

- the interactivity target: the upper bound of ``flow[r, t]`` for every
  decode-like row (0 below the target, unbounded at or above it);
- the objective weights ``tokens_weight``, ``gpu_weight[t]``, ``node_weight[t]``
  (Dinkelbach's ratio, min-GPUs, min-cost, GPU-hours and the tie-break stages all
  reuse one linear objective);
- per period: ``load_requests_per_s[t]`` and the class shares ``share[k, t]``;
- the caps ``gpu_cap``, ``node_cap`` and ``ratio_floor`` the tie-break tightens;
- multi-period studies: ``static`` (1 freezes every instance count over time),
  ``ramp_gpus`` and ``min_pool_gpus``; ``fixed_ratio`` and ``ratio_enforced``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from planner.optimize.packing import Geometry
from planner.perf.phases import PREFILL_CHUNK_TOKENS
from planner.space import LAYOUT_COLUMNS, dominated_mask
from planner.specs import RequestClass

FIXED_RATIO_TOLERANCE = 0.03
"""A fixed prefill:decode GPU ratio holds within +-3%, the paper's tolerance."""

MODE_POOLS: dict[str, tuple[str, ...]] = {
    "disaggregated": ("prefill", "decode"),
    "aggregated": ("aggregated",),
    "disaggregated_fixed_ratio": ("prefill", "decode"),
}
"""The pools of each deployment mode; the last pool is the one interactivity is judged on."""

LAYOUT_KEY = ("pool", *LAYOUT_COLUMNS)
"""What makes two candidate rows the same physical instance (one engine, any request class)."""

ONE_SHAPE = "all"
"""Class name of one-shape traffic (see :attr:`planner.specs.Traffic.request_classes`)."""


@dataclass(frozen=True)
class Candidates:
    """Every pool's candidates: physical layouts, and their rows per request class.

    A layout is one engine configuration (integer instance counts in the MIP); a
    row is that layout priced at one class's shape (a continuous flow of that
    class's requests). With one class, rows and layouts coincide.
    """

    layouts: pd.DataFrame
    """One row per layout (index = layout id): ``LAYOUT_KEY``, ``gpus``, ``placement``."""
    table: pd.DataFrame
    """One row per (layout, class): the candidate-table columns plus ``pool``, ``layout``,
    ``request_class``, ``class_index``, ``placement``."""
    dropped: pd.DataFrame
    """Rows that cannot be placed in the cluster's nodes, with a ``reason`` column."""
    classes: tuple[RequestClass, ...]
    """The request classes, in ``class_index`` order."""

    @property
    def pools(self) -> np.ndarray:
        """Pool of each row."""
        return self.table["pool"].to_numpy()

    @property
    def gpus(self) -> np.ndarray:
        """GPUs per instance of each row's layout."""
        return self.table["gpus"].to_numpy(dtype=np.int64)

    @property
    def requests_per_s(self) -> np.ndarray:
        """Requests/s of its class one instance serves, per row."""
        return self.table["requests_per_s"].to_numpy(dtype=float)

    @property
    def tokens_per_s_per_user(self) -> np.ndarray:
        """Per-user output tokens/s of each row (prefill rows: not judged)."""
        return self.table["tokens_per_s_per_user"].to_numpy(dtype=float)

    @property
    def layout_of(self) -> np.ndarray:
        """Layout id of each row."""
        return self.table["layout"].to_numpy(dtype=np.int64)

    @property
    def class_of(self) -> np.ndarray:
        """Class index of each row."""
        return self.table["class_index"].to_numpy(dtype=np.int64)

    @property
    def osl_tokens(self) -> np.ndarray:
        """Output tokens per request of each class."""
        return np.array([c.osl_tokens for c in self.classes], dtype=float)

    @property
    def shares(self) -> np.ndarray:
        """Default share of each class."""
        return np.array([c.share_fraction for c in self.classes], dtype=float)

    def at_target(self, judged_pool: str, need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and layouts that can be optimal at a fixed target: ``(allowed_rows, usable_layouts)``.

        ``need[r]`` is the interactivity row ``r`` must reach (its class's floor or the
        target); rows of ``judged_pool`` below it are not allowed. At a fixed target,
        interactivity above it and TTFT below its limit no longer rank rows: among the
        allowed rows of one class and pool, a row with at least another's requests/s per
        GPU on a GPU count dividing it replaces it on the same GPUs (the argument of
        :mod:`planner.space`). A layout stays usable if it survives for some class.
        """
        allowed = (self.pools != judged_pool) | (self.tokens_per_s_per_user >= need)
        usable = np.zeros(len(self.layouts), dtype=bool)
        gpus, per_gpu = self.gpus, self.requests_per_s / self.gpus
        for k in range(len(self.classes)):
            for pool in np.unique(self.pools):
                rows = np.flatnonzero(allowed & (self.class_of == k) & (self.pools == pool))
                if len(rows):
                    kept = rows[~dominated_mask(per_gpu[rows], np.zeros(len(rows)), gpus[rows])]
                    usable[self.layout_of[kept]] = True
        return allowed, usable

    def restrict(self, rows: np.ndarray, layouts: np.ndarray) -> Candidates:
        """Only these rows of these layouts (boolean masks), renumbered: a smaller model at a fixed target."""
        keep = rows & layouts[self.layout_of]
        ids = np.cumsum(layouts) - 1
        table = self.table[keep].assign(layout=ids[self.layout_of[keep]]).reset_index(drop=True)
        return Candidates(self.layouts[layouts].reset_index(drop=True), table, self.dropped, self.classes)


def combine(
    tables: dict[str, pd.DataFrame],
    geometry: Geometry,
    classes: tuple[RequestClass, ...] | None = None,
) -> Candidates:
    """Candidates of one-shape traffic: pool -> candidate table (``classes`` names its one shape)."""
    shape = classes or (RequestClass(name=ONE_SHAPE, isl_tokens=1, osl_tokens=_osl(tables)),)
    return combine_classes({shape[0].name: tables}, geometry, shape)


def _osl(tables: dict[str, pd.DataFrame]) -> int:
    values = {int(v) for t in tables.values() for v in t["osl_tokens"]}
    if len(values) != 1:
        raise ValueError("one-shape candidate tables must share one osl_tokens")
    return values.pop()


def combine_classes(
    tables: dict[str, dict[str, pd.DataFrame]],
    geometry: Geometry,
    classes: tuple[RequestClass, ...],
) -> Candidates:
    """Merge per-class candidate tables (class -> pool -> table) into layouts and rows.

    Layouts are matched on :data:`LAYOUT_KEY`; sizes the cluster cannot place are set aside.
    """
    frames = []
    for k, cls in enumerate(classes):
        for pool, frame in tables[cls.name].items():
            frames.append(frame.assign(pool=pool, request_class=cls.name, class_index=k))
    rows = pd.concat(frames, ignore_index=True)
    for option in ("two_batch_overlap", "eplb"):  # hand-made tables (tests, notebooks) may omit them
        if option not in rows:
            rows[option] = False
    if "prefill_chunk_tokens" not in rows:  # hand-made tables (tests, notebooks) may omit it
        rows["prefill_chunk_tokens"] = PREFILL_CHUNK_TOKENS
    if "kv_transfer_bytes_per_request" not in rows:  # hand-made tables (tests, notebooks) may omit it
        rows["kv_transfer_bytes_per_request"] = rows.get("kv_cache_bytes_per_request", 0.0)
    placement = rows["gpus"].map(geometry.placement)
    ok = placement.isin(["sub_node", "whole_nodes", "whole_domains"])
    dropped = rows[~ok].assign(reason=placement[~ok]).reset_index(drop=True)
    rows = rows[ok].assign(placement=placement[ok]).reset_index(drop=True)
    layouts = rows.drop_duplicates(list(LAYOUT_KEY)).loc[:, [*LAYOUT_KEY, "gpus", "placement"]]
    layouts = layouts.reset_index(drop=True)
    ids = layouts.reset_index().rename(columns={"index": "layout"})[[*LAYOUT_KEY, "layout"]]
    rows = rows.merge(ids, on=list(LAYOUT_KEY), how="left", sort=False)
    return Candidates(layouts, rows, dropped, tuple(classes))


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
    layouts = candidates.layouts
    gpus = layouts["gpus"].to_numpy(dtype=np.int64)
    pool_of = layouts["pool"].to_numpy()
    placement = layouts["placement"].to_numpy()
    row_layout, row_class = candidates.layout_of, candidates.class_of
    rate = candidates.requests_per_s
    osl = candidates.osl_tokens
    node, domain, budget = geometry.gpus_per_node, geometry.domain_gpus, geometry.max_gpus

    m = pyo.ConcreteModel(name="disagg-planner")
    m.L = pyo.Set(initialize=range(len(layouts)), ordered=True)
    m.R = pyo.Set(initialize=range(len(candidates.table)), ordered=True)
    m.K = pyo.Set(initialize=range(len(candidates.classes)), ordered=True)
    m.Q = pyo.Set(initialize=pools, ordered=True)
    m.B = pyo.Set(initialize=range(len(geometry.bin_nodes)), ordered=True)
    m.T = pyo.Set(initialize=range(periods), ordered=True)
    spanning = [c for c in m.L if placement[c] == "whole_domains"]
    m.S = pyo.Set(initialize=spanning, ordered=True)
    m.LBT = pyo.Set(
        initialize=[(c, b, t) for c in m.L if placement[c] != "whole_domains" for b in m.B for t in m.T],
        dimen=3,
        ordered=True,
    )
    rows_of = {c: [r for r in m.R if row_layout[r] == c] for c in m.L}

    def copies_max(c: int) -> int:
        return budget // int(gpus[c])

    # ----------------------------------------------------------------- parameters
    mutable = {"mutable": True}
    m.tokens_weight = pyo.Param(initialize=1.0, **mutable)
    m.gpu_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.node_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.unserved_weight = pyo.Param(m.T, initialize=0.0, **mutable)
    m.load_requests_per_s = pyo.Param(m.T, initialize=0.0, **mutable)
    m.share = pyo.Param(m.K, m.T, initialize=lambda _, k, t: float(candidates.shares[k]), **mutable)
    m.gpu_cap = pyo.Param(initialize=float(budget), **mutable)
    m.node_cap = pyo.Param(initialize=float(geometry.nodes), **mutable)
    m.ratio_floor = pyo.Param(initialize=0.0, **mutable)

    # ----------------------------------------------------------------- variables
    m.copies = pyo.Var(m.LBT, domain=pyo.NonNegativeIntegers, bounds=lambda _, c, b, t: (0, copies_max(c)))
    m.spanning_copies = pyo.Var(
        m.S, m.T, domain=pyo.NonNegativeIntegers, bounds=lambda _, c, t: (0, copies_max(c))
    )
    m.use = pyo.Var(m.L, m.T if allow_relayout else [0], domain=pyo.Binary)
    m.flow = pyo.Var(m.R, m.T, domain=pyo.NonNegativeReals)
    m.served_requests_per_s = pyo.Var(m.T, domain=pyo.NonNegativeReals)
    if allow_unserved:
        m.unserved_requests_per_s = pyo.Var(m.T, domain=pyo.NonNegativeReals)

    def count(c: int, t: int):
        if placement[c] == "whole_domains":
            return m.spanning_copies[c, t]
        return sum(m.copies[c, b, t] for b in m.B)

    def use(c: int, t: int):
        return m.use[c, t if allow_relayout else 0]

    m.instances = pyo.Expression(m.L, m.T, rule=lambda _, c, t: count(c, t))
    m.pool_gpus = pyo.Expression(
        m.Q, m.T, rule=lambda _, q, t: sum(int(gpus[c]) * m.instances[c, t] for c in m.L if pool_of[c] == q)
    )
    m.total_gpus = pyo.Expression(m.T, rule=lambda _, t: sum(m.pool_gpus[q, t] for q in m.Q))

    # ----------------------------------------------------------------- rate matching, per class
    # An instance time-shares its capacity between the classes it serves.
    m.capacity = pyo.Constraint(
        m.L,
        m.T,
        rule=lambda _, c, t: sum(m.flow[r, t] / float(rate[r]) for r in rows_of[c]) <= m.instances[c, t],
    )

    def demand(_, q, k, t):
        supply = [m.flow[r, t] for r in m.R if row_class[r] == k and pool_of[row_layout[r]] == q]
        if not supply:
            return m.share[k, t] * m.served_requests_per_s[t] <= 0
        # Equality: flows are the traffic actually routed (KV bandwidth reads them), never spare capacity.
        return sum(supply) == m.share[k, t] * m.served_requests_per_s[t]

    m.rate_matching = pyo.Constraint(m.Q, m.K, m.T, rule=demand)
    unserved = (lambda t: m.unserved_requests_per_s[t]) if allow_unserved else (lambda t: 0)
    m.serve_load = pyo.Constraint(
        m.T, rule=lambda _, t: m.served_requests_per_s[t] + unserved(t) >= m.load_requests_per_s[t]
    )

    # ----------------------------------------------------------------- layout choice
    m.only_if_used = pyo.Constraint(
        m.L, m.T, rule=lambda _, c, t: m.instances[c, t] <= copies_max(c) * use(c, t)
    )
    choice_periods = list(m.T) if allow_relayout else [0]
    m.used_runs = pyo.Constraint(
        m.L,
        choice_periods,
        rule=lambda _, c, t: (
            m.use[c, t] <= (m.instances[c, t] if allow_relayout else sum(m.instances[c, s] for s in m.T))
        ),
    )
    m.layouts_per_pool = pyo.Constraint(
        m.Q,
        choice_periods,
        rule=lambda _, q, t: sum(m.use[c, t] for c in m.L if pool_of[c] == q) <= layouts_per_pool,
    )
    m.pool_present = pyo.Constraint(
        m.Q, choice_periods, rule=lambda _, q, t: sum(m.use[c, t] for c in m.L if pool_of[c] == q) >= 1
    )
    m.gpu_budget = pyo.Constraint(m.T, rule=lambda _, t: m.total_gpus[t] <= m.gpu_cap)

    # ----------------------------------------------------------------- packing into nodes and domains
    groups = sub_node_groups(layouts, geometry, exclusive_nodes)
    m.GBT = pyo.Set(initialize=[(k, b, t) for k in sorted(groups) for b in m.B for t in m.T], dimen=3)
    m.shared_nodes = pyo.Var(m.GBT, domain=pyo.NonNegativeIntegers, bounds=(0, geometry.nodes))

    def group_fill(_, key, b, t):
        members = groups[key]
        if geometry.sub_node_chain:
            used = sum(int(gpus[c]) * m.copies[c, b, t] for c in members)
            return used <= node * m.shared_nodes[key, b, t]
        per_node = node // int(gpus[members[0]])
        return sum(m.copies[c, b, t] for c in members) <= per_node * m.shared_nodes[key, b, t]

    m.sub_node_fill = pyo.Constraint(m.GBT, rule=group_fill)

    whole = [c for c in m.L if placement[c] == "whole_nodes"]
    m.bin_nodes = pyo.Expression(
        m.B,
        m.T,
        rule=lambda _, b, t: (
            sum(int(gpus[c]) // node * m.copies[c, b, t] for c in whole)
            + sum(m.shared_nodes[key, b, t] for key in sorted(groups))
        ),
    )
    full_bins = [b for b in m.B if geometry.bin_nodes[b] * node >= domain]
    if spanning:
        m.reserved = pyo.Var(m.B, m.T, domain=pyo.Binary)
        for b in m.B:
            if b not in full_bins:
                for t in m.T:
                    m.reserved[b, t].fix(0)
        m.bin_capacity = pyo.Constraint(
            m.B, m.T, rule=lambda _, b, t: m.bin_nodes[b, t] <= geometry.bin_nodes[b] * (1 - m.reserved[b, t])
        )
        m.spanning_fit = pyo.Constraint(
            m.T,
            rule=lambda _, t: (
                sum(int(gpus[c]) // domain * m.spanning_copies[c, t] for c in m.S)
                <= sum(m.reserved[b, t] for b in m.B)
            ),
        )
        m.reserved_last = pyo.Constraint(
            range(len(full_bins) - 1),
            m.T,
            rule=lambda _, i, t: m.reserved[full_bins[i], t] <= m.reserved[full_bins[i + 1], t],
        )
    else:
        m.bin_capacity = pyo.Constraint(
            m.B, m.T, rule=lambda _, b, t: m.bin_nodes[b, t] <= geometry.bin_nodes[b]
        )
    if len(full_bins) > 1:
        # Full domains are interchangeable: order them by nodes used to cut symmetric branches.
        m.bins_ordered = pyo.Constraint(
            range(len(full_bins) - 1),
            m.T,
            rule=lambda _, i, t: m.bin_nodes[full_bins[i], t] >= m.bin_nodes[full_bins[i + 1], t],
        )
    m.nodes_used = pyo.Expression(
        m.T,
        rule=lambda _, t: (
            sum(m.bin_nodes[b, t] for b in m.B)
            + sum(int(gpus[c]) // node * m.spanning_copies[c, t] for c in m.S)
        ),
    )
    m.node_budget = pyo.Constraint(m.T, rule=lambda _, t: m.nodes_used[t] <= m.node_cap)

    # ----------------------------------------------------------------- study constraints
    m.output_tokens_per_s = pyo.Expression(
        m.T, rule=lambda _, t: sum(m.share[k, t] * float(osl[k]) for k in m.K) * m.served_requests_per_s[t]
    )
    m.tokens_per_gpu_floor = pyo.Constraint(
        m.T, rule=lambda _, t: m.output_tokens_per_s[t] >= m.ratio_floor * m.total_gpus[t]
    )
    if pools == MODE_POOLS["disaggregated"]:
        # Off (ratio_enforced = 0) unless a study holds prefill:decode GPUs at fixed_ratio.
        m.fixed_ratio = pyo.Param(initialize=float(fixed_ratio or 1.0), **mutable)
        m.ratio_enforced = pyo.Param(initialize=1.0 if fixed_ratio is not None else 0.0, **mutable)
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
    elif fixed_ratio is not None:
        raise ValueError("a fixed prefill:decode ratio needs the disaggregated pools")
    m.static = pyo.Param(initialize=0.0, **mutable)
    m.ramp_gpus = pyo.Param(initialize=float(budget), **mutable)
    m.min_pool_gpus = pyo.Param(initialize=0.0, **mutable)
    m.pool_floor = pyo.Constraint(m.Q, m.T, rule=lambda _, q, t: m.pool_gpus[q, t] >= m.min_pool_gpus)
    if periods > 1:
        later = [t for t in m.T if t > 0]
        m.frozen_up = pyo.Constraint(
            m.L,
            later,
            rule=lambda _, c, t: m.instances[c, t] - m.instances[c, t - 1] <= copies_max(c) * (1 - m.static),
        )
        m.frozen_down = pyo.Constraint(
            m.L,
            later,
            rule=lambda _, c, t: m.instances[c, t - 1] - m.instances[c, t] <= copies_max(c) * (1 - m.static),
        )
        m.ramp_up = pyo.Constraint(
            later, rule=lambda _, t: m.total_gpus[t] - m.total_gpus[t - 1] <= m.ramp_gpus
        )
        m.ramp_down = pyo.Constraint(
            later, rule=lambda _, t: m.total_gpus[t - 1] - m.total_gpus[t] <= m.ramp_gpus
        )

    m.objective = pyo.Objective(
        expr=sum(
            m.tokens_weight * m.output_tokens_per_s[t]
            - m.gpu_weight[t] * m.total_gpus[t]
            - m.node_weight[t] * m.nodes_used[t]
            - (m.unserved_weight[t] * m.unserved_requests_per_s[t] if allow_unserved else 0)
            for t in m.T
        ),
        sense=pyo.maximize,
    )
    return m


def sub_node_groups(layouts: pd.DataFrame, geometry: Geometry, exclusive_nodes: bool) -> dict[str, list[int]]:
    """Sub-node layouts grouped by what may share a node: all, per pool, per size, or both.

    Keys are labels (``shared``, ``prefill``, ``shared/2gpu``, ...) so the model reads well when printed.
    """
    groups: dict[str, list[int]] = {}
    for c, row in layouts.iterrows():
        if row["placement"] != "sub_node":
            continue
        parts = [row["pool"]] if exclusive_nodes else ["shared"]
        if not geometry.sub_node_chain:
            parts.append(f"{int(row['gpus'])}gpu")
        groups.setdefault("/".join(parts), []).append(int(c))
    return groups
