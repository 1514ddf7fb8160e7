"""The Pyomo model of one deployment mode, built once and steered by mutable parameters.

The formulation is written out in :mod:`planner.optimize`; this module only
builds it. Everything a study changes between solves is a mutable parameter or a
variable bound, so a persistent solver re-solves without a rebuild:

- the interactivity target: the upper bound of ``use[c]`` for every decode-like
  candidate (0 below the target, 1 at or above it);
- the objective weights ``tokens_weight``, ``gpu_weight``, ``node_weight``
  (Dinkelbach's ratio, min-GPUs, min-cost, and the tie-break stage all reuse one
  linear objective);
- ``load_requests_per_s`` (the load a ``min_*`` plan must serve), and the caps
  ``gpu_cap``, ``node_cap`` and ``ratio_floor`` the tie-break stage tightens;
- ``fixed_ratio`` (prefill:decode GPUs) when the model is built for a fixed-ratio study.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from planner.optimize.packing import Geometry

FIXED_RATIO_TOLERANCE = 0.03
"""A fixed prefill:decode GPU ratio holds within +-3%, the paper's tolerance."""

MODE_POOLS: dict[str, tuple[str, ...]] = {
    "disaggregated": ("prefill", "decode"),
    "aggregated": ("aggregated",),
    "disaggregated_fixed_ratio": ("prefill", "decode"),
}
"""The pools of each deployment mode; the last pool is the one interactivity is judged on."""


@dataclass(frozen=True)
class Candidates:
    """The candidate rows of every pool of one mode, with the arrays the model needs."""

    table: pd.DataFrame
    """All pools' rows (column ``pool``), index 0..n-1 = the model's candidate index."""
    dropped: pd.DataFrame
    """Rows that cannot be placed in the cluster's nodes, with a ``reason`` column."""

    @property
    def pools(self) -> np.ndarray:
        """Pool of each candidate."""
        return self.table["pool"].to_numpy()

    @property
    def gpus(self) -> np.ndarray:
        """GPUs per instance of each candidate."""
        return self.table["gpus"].to_numpy(dtype=np.int64)

    @property
    def requests_per_s(self) -> np.ndarray:
        """Requests/s one instance of each candidate serves."""
        return self.table["requests_per_s"].to_numpy(dtype=float)

    @property
    def tokens_per_s_per_user(self) -> np.ndarray:
        """Per-user output tokens/s of each candidate (prefill: NaN or unused)."""
        return self.table["tokens_per_s_per_user"].to_numpy(dtype=float)


def combine(tables: dict[str, pd.DataFrame], geometry: Geometry) -> Candidates:
    """Stack the pools' candidate tables and set aside sizes the cluster cannot place."""
    frames = [t.assign(pool=pool) for pool, t in tables.items()]
    table = pd.concat(frames, ignore_index=True)
    placement = table["gpus"].map(geometry.placement)
    ok = placement.isin(["sub_node", "whole_nodes", "whole_domains"])
    dropped = table[~ok].assign(reason=placement[~ok]).reset_index(drop=True)
    table = table[ok].assign(placement=placement[ok]).reset_index(drop=True)
    return Candidates(table, dropped)


def build_model(
    candidates: Candidates,
    geometry: Geometry,
    *,
    pools: tuple[str, ...],
    osl_tokens: int,
    layouts_per_pool: int,
    exclusive_nodes: bool,
    fixed_ratio: float | None = None,
) -> pyo.ConcreteModel:
    """Build the MIP of one mode (see :mod:`planner.optimize` for the formulation)."""
    table = candidates.table
    gpus = candidates.gpus
    rate = candidates.requests_per_s
    pool_of = candidates.pools
    placement = table["placement"].to_numpy()
    node, domain, budget = geometry.gpus_per_node, geometry.domain_gpus, geometry.max_gpus
    n_bins = len(geometry.bin_nodes)

    m = pyo.ConcreteModel(name="disagg-planner")
    m.C = pyo.Set(initialize=range(len(table)), ordered=True)
    m.Q = pyo.Set(initialize=pools, ordered=True)
    m.B = pyo.Set(initialize=range(n_bins), ordered=True)
    spanning = [c for c in m.C if placement[c] == "whole_domains"]
    placed = [(c, b) for c in m.C if placement[c] != "whole_domains" for b in m.B]
    m.S = pyo.Set(initialize=spanning, ordered=True)
    m.CB = pyo.Set(initialize=placed, dimen=2, ordered=True)

    def copies_max(c: int) -> int:
        return budget // int(gpus[c])

    # ----------------------------------------------------------------- parameters
    mutable = {"mutable": True}
    m.tokens_weight = pyo.Param(initialize=1.0, **mutable)
    m.gpu_weight = pyo.Param(initialize=0.0, **mutable)
    m.node_weight = pyo.Param(initialize=0.0, **mutable)
    m.load_requests_per_s = pyo.Param(initialize=0.0, **mutable)
    m.gpu_cap = pyo.Param(initialize=float(budget), **mutable)
    m.node_cap = pyo.Param(initialize=float(geometry.nodes), **mutable)
    m.ratio_floor = pyo.Param(initialize=0.0, **mutable)

    # ----------------------------------------------------------------- variables
    m.copies = pyo.Var(m.CB, domain=pyo.NonNegativeIntegers, bounds=lambda _, c, b: (0, copies_max(c)))
    m.spanning_copies = pyo.Var(m.S, domain=pyo.NonNegativeIntegers, bounds=lambda _, c: (0, copies_max(c)))
    m.use = pyo.Var(m.C, domain=pyo.Binary)
    m.served_requests_per_s = pyo.Var(domain=pyo.NonNegativeReals)

    def count(c: int):
        if placement[c] == "whole_domains":
            return m.spanning_copies[c]
        return sum(m.copies[c, b] for b in m.B)

    m.instances = pyo.Expression(m.C, rule=lambda _, c: count(c))
    m.pool_gpus = pyo.Expression(
        m.Q, rule=lambda _, q: sum(int(gpus[c]) * m.instances[c] for c in m.C if pool_of[c] == q)
    )
    m.total_gpus = pyo.Expression(expr=sum(m.pool_gpus[q] for q in m.Q))

    # ----------------------------------------------------------------- rate matching and choice
    m.rate_matching = pyo.Constraint(
        m.Q,
        rule=lambda _, q: (
            m.served_requests_per_s <= sum(float(rate[c]) * m.instances[c] for c in m.C if pool_of[c] == q)
        ),
    )
    m.serve_load = pyo.Constraint(expr=m.served_requests_per_s >= m.load_requests_per_s)
    m.only_if_used = pyo.Constraint(m.C, rule=lambda _, c: m.instances[c] <= copies_max(c) * m.use[c])
    m.used_runs = pyo.Constraint(m.C, rule=lambda _, c: m.instances[c] >= m.use[c])
    m.layouts_per_pool = pyo.Constraint(
        m.Q, rule=lambda _, q: sum(m.use[c] for c in m.C if pool_of[c] == q) <= layouts_per_pool
    )
    m.pool_present = pyo.Constraint(m.Q, rule=lambda _, q: sum(m.use[c] for c in m.C if pool_of[c] == q) >= 1)
    m.gpu_budget = pyo.Constraint(expr=m.total_gpus <= m.gpu_cap)

    # ----------------------------------------------------------------- packing into nodes and domains
    groups = sub_node_groups(table, geometry, exclusive_nodes)
    m.GB = pyo.Set(initialize=[(k, b) for k in sorted(groups) for b in m.B], dimen=2, ordered=True)
    m.shared_nodes = pyo.Var(m.GB, domain=pyo.NonNegativeIntegers, bounds=(0, geometry.nodes))

    def group_fill(_, key, b):
        members = groups[key]
        if geometry.sub_node_chain:
            used = sum(int(gpus[c]) * m.copies[c, b] for c in members)
            return used <= node * m.shared_nodes[key, b]
        per_node = node // int(gpus[members[0]])
        return sum(m.copies[c, b] for c in members) <= per_node * m.shared_nodes[key, b]

    m.sub_node_fill = pyo.Constraint(m.GB, rule=group_fill)

    whole = [c for c in m.C if placement[c] == "whole_nodes"]
    m.bin_nodes = pyo.Expression(
        m.B,
        rule=lambda _, b: (
            sum(int(gpus[c]) // node * m.copies[c, b] for c in whole)
            + sum(m.shared_nodes[idx] for idx in m.GB if idx[1] == b)
        ),
    )
    full_bins = [b for b in m.B if geometry.bin_nodes[b] * node >= domain]
    if spanning:
        m.reserved = pyo.Var(m.B, domain=pyo.Binary)
        for b in m.B:
            if b not in full_bins:
                m.reserved[b].fix(0)
        m.bin_capacity = pyo.Constraint(
            m.B, rule=lambda _, b: m.bin_nodes[b] <= geometry.bin_nodes[b] * (1 - m.reserved[b])
        )
        m.spanning_fit = pyo.Constraint(
            expr=sum(int(gpus[c]) // domain * m.spanning_copies[c] for c in m.S)
            <= sum(m.reserved[b] for b in m.B)
        )
        m.reserved_last = pyo.Constraint(
            range(len(full_bins) - 1),
            rule=lambda _, i: m.reserved[full_bins[i]] <= m.reserved[full_bins[i + 1]],
        )
    else:
        m.bin_capacity = pyo.Constraint(m.B, rule=lambda _, b: m.bin_nodes[b] <= geometry.bin_nodes[b])
    if len(full_bins) > 1:
        # Full domains are interchangeable: order them by nodes used to cut symmetric branches.
        m.bins_ordered = pyo.Constraint(
            range(len(full_bins) - 1),
            rule=lambda _, i: m.bin_nodes[full_bins[i]] >= m.bin_nodes[full_bins[i + 1]],
        )
    m.nodes_used = pyo.Expression(
        expr=sum(m.bin_nodes[b] for b in m.B) + sum(int(gpus[c]) // node * m.spanning_copies[c] for c in m.S)
    )
    m.node_budget = pyo.Constraint(expr=m.nodes_used <= m.node_cap)

    # ----------------------------------------------------------------- objective and study constraints
    output_tokens_per_s = osl_tokens * m.served_requests_per_s
    m.tokens_per_gpu_floor = pyo.Constraint(expr=output_tokens_per_s >= m.ratio_floor * m.total_gpus)
    if fixed_ratio is not None:
        if pools != MODE_POOLS["disaggregated"]:
            raise ValueError("a fixed prefill:decode ratio needs the disaggregated pools")
        m.fixed_ratio = pyo.Param(initialize=float(fixed_ratio), **mutable)
        prefill, decode = m.pool_gpus["prefill"], m.pool_gpus["decode"]
        m.ratio_high = pyo.Constraint(expr=prefill <= (1 + FIXED_RATIO_TOLERANCE) * m.fixed_ratio * decode)
        m.ratio_low = pyo.Constraint(expr=prefill >= (1 - FIXED_RATIO_TOLERANCE) * m.fixed_ratio * decode)
    m.objective = pyo.Objective(
        expr=m.tokens_weight * output_tokens_per_s
        - m.gpu_weight * m.total_gpus
        - m.node_weight * m.nodes_used,
        sense=pyo.maximize,
    )
    return m


def sub_node_groups(table: pd.DataFrame, geometry: Geometry, exclusive_nodes: bool) -> dict:
    """Sub-node candidates grouped by what may share a node: all, per pool, per size, or both.

    Keys are labels (``shared``, ``prefill``, ``shared/2gpu``, ...) so the model reads well when printed.
    """
    groups: dict = {}
    for c, row in table.iterrows():
        if row["placement"] != "sub_node":
            continue
        parts = [row["pool"]] if exclusive_nodes else ["shared"]
        if not geometry.sub_node_chain:
            parts.append(f"{int(row['gpus'])}gpu")
        groups.setdefault("/".join(parts), []).append(int(c))
    return groups
