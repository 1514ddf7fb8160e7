"""Reading a solved model back: targets in, exact counts, served rates, nodes and plans out.

Shared by every study that drives :func:`planner.optimize.formulation.build_model` (a
frontier point is period 0; an elastic plan reads every period). Solver values
carry feasibility tolerances (a GPU total of 51.99999999999977), so instance
counts are rounded and, for one-shape traffic, the served rate is recomputed
exactly from them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.core as pyo

from planner.optimize.model import Candidates, sub_node_groups
from planner.optimize.packing import Geometry, least_shared_nodes
from planner.optimize.plan import Plan, PoolPlan

FLOW_EPSILON = 1e-9
"""Requests/s below which a flow counts as zero (solver noise)."""


_VARIABLES = "_planner_variables"
"""Model attribute caching its variables in order (walking the model's components is slow)."""


def variables_of(model: pyo.ConcreteModel) -> list:
    """The model's variables in order (cached on the model: walking its components is slow)."""
    variables = getattr(model, _VARIABLES, None)
    if variables is None:
        variables = list(model.component_data_objects(pyo.Var))
        setattr(model, _VARIABLES, variables)
    return variables


def snapshot(model: pyo.ConcreteModel) -> tuple[list, list]:
    """Every variable and its value (to put a solution back after a follow-up solve)."""
    variables = variables_of(model)
    return variables, [var.value for var in variables]


def restore(values: tuple[list, list]) -> None:
    """Load a :func:`snapshot` back into its variables."""
    for var, value in zip(*values, strict=True):
        var.set_value(value, skip_validation=True)


class KeptPlan:
    """The best plan a search has found, copied out of the model only when a later solve would overwrite it.

    Most searches end with their best plan still loaded (it was the last solved), so the copy
    and the reload of every variable are usually skipped.
    """

    def __init__(self, model: pyo.ConcreteModel, *, loaded: bool = False):
        self.model = model
        self._saved: tuple[list, list] | None = None
        self._loaded = loaded
        """The model holds the kept plan now (``loaded=True``: the plan loaded at the start)."""

    def keep_loaded(self) -> None:
        """The plan the model holds now is the new best."""
        self._saved, self._loaded = None, True

    def before_solve(self) -> None:
        """Another solve is coming: copy the kept plan out if the model still holds it only."""
        if self._loaded and self._saved is None:
            self._saved = snapshot(self.model)
        self._loaded = False

    def load(self) -> None:
        """Put the kept plan back in the model (nothing to do when it is still there, or none was kept)."""
        if not self._loaded and self._saved is not None:
            restore(self._saved)
            self._loaded = True


_PLAN_COLUMNS = (
    *("pool", "tp", "pp", "ep", "attention_dp", "batch", "gpus", "chunked_prefill", "prefill_chunk_tokens"),
    *("two_batch_overlap", "eplb", "draft_tokens", "candidate_id", "requests_per_s", "tokens_per_s_per_user"),
    *("tpot_ms", "ttft_ms", "kv_transfer_bytes_per_request", "request_class"),
)
"""Candidate-table columns a plan reports (read once per model as arrays)."""


def _values(variables: list) -> np.ndarray:
    """The variables' values as one array (0 where a solver left none)."""
    return np.fromiter((v.value or 0.0 for v in variables), dtype=float, count=len(variables))


def _by_group(reduce: np.ufunc, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``reduce`` over each run of ``values`` beginning at ``starts`` (none: an empty array)."""
    return reduce.reduceat(values, starts) if len(starts) else values[:0]


class Solution:
    """Views of one model's loaded solution (call after a successful solve)."""

    def __init__(
        self, model: pyo.ConcreteModel, candidates: Candidates, geometry: Geometry, pools, exclusive
    ):
        self.model = model
        self.candidates = candidates
        self.geometry = geometry
        self.pools = pools
        self._groups = sub_node_groups(candidates.layouts, geometry, exclusive)
        self._judged_rows = candidates.pools == pools[-1]
        layout_pools = candidates.layouts["pool"].to_numpy()
        self._judged_layouts = layout_pools == pools[-1]
        self._layout_gpus = candidates.layouts["gpus"].to_numpy(dtype=np.int64)
        self._row_rate, self._row_layout = candidates.requests_per_s, candidates.layout_of
        self._row_in_pool = [candidates.pools == pool for pool in pools]
        self._osl_tokens = candidates.osl_tokens
        table = candidates.table
        self._columns = {key: table[key].to_numpy() for key in _PLAN_COLUMNS}
        gaps = table.get("worst_inter_token_gap_ms", table["tpot_ms"])  # older tables lack the column
        self._columns["worst_inter_token_gap_ms"] = gaps.to_numpy()
        # Instances of layout c in period t are the sum of its count variables (copies per bin, or
        # domain-spanning copies): read as one array per period, summed with bincount.
        parts: dict[int, list] = {t: [] for t in model.T}
        for (c, _b, t), var in model.copies.items():
            parts[t].append((c, var))
        for (c, t), var in model.spanning_copies.items():
            parts[t].append((c, var))
        self._count_vars = {
            t: ([v for _, v in members], np.array([c for c, _ in members], dtype=np.int64))
            for t, members in parts.items()
        }

    # ----------------------------------------------------------------- targets

    def at_target(
        self, min_tokens_per_s_per_user: float, floors: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows allowed and layouts usable at a target (``Candidates.at_target``): ``Controls.set_target``.

        Rows below the target get no flow; layouts another dominates at this target are
        switched off, so the MIP sees a handful of layouts per pool instead of every batch.
        """
        return self.candidates.at_target(self.pools[-1], self.need(min_tokens_per_s_per_user, floors))

    def need(self, min_tokens_per_s_per_user: float, floors: np.ndarray | None = None) -> np.ndarray:
        """The interactivity each row must reach: the target, or its class's floor if higher."""
        c = self.candidates
        need = np.full(len(c.table), float(min_tokens_per_s_per_user))
        return need if floors is None else np.maximum(need, floors[c.class_of])

    def breakpoints(self, floors: np.ndarray | None = None) -> list[float]:
        """Distinct interactivities of decode-like rows that can be allowed: where optima can change."""
        c = self.candidates
        u = c.tokens_per_s_per_user[self._judged_rows]
        if floors is not None:
            u = u[u >= floors[c.class_of[self._judged_rows]]]
        return sorted(set(u.tolist()))

    # ----------------------------------------------------------------- reading

    def counts(self, t: int = 0) -> np.ndarray:
        """Instances per layout in period ``t``, rounded."""
        variables, layouts = self._count_vars[t]
        values = _values(variables)
        return np.rint(np.bincount(layouts, weights=values, minlength=len(self._layout_gpus))).astype(
            np.int64
        )

    def flows(self, t: int = 0) -> np.ndarray:
        """Requests/s per row in period ``t`` (0 below :data:`FLOW_EPSILON`)."""
        m = self.model
        values = _values([m.flow[r, t] for r in m.R])
        return np.where(values > FLOW_EPSILON, values, 0.0)

    def gpus(self, t: int = 0) -> float:
        """GPUs in period ``t``, from the rounded counts."""
        return float((self._layout_gpus * self.counts(t)).sum())

    def served_requests_per_s(self, t: int = 0) -> float:
        """Served rate in period ``t``: exact from the counts for one-shape traffic, else the MIP's."""
        if len(self.candidates.classes) == 1:
            capacity = self._row_rate * self.counts(t)[self._row_layout]
            return float(min(capacity[in_pool].sum() for in_pool in self._row_in_pool))
        return float(pyo.value(self.model.served_requests_per_s[t]))

    def tokens(self, t: int = 0) -> float:
        """Output tokens/s in period ``t`` (served rate x the period's mean OSL)."""
        return self.served_requests_per_s(t) * self.mean_osl(t)

    def shares(self, t: int = 0) -> np.ndarray:
        """Class shares in period ``t``."""
        m = self.model
        return np.array([pyo.value(m.share[k, t]) for k in m.K])

    def mean_osl(self, t: int = 0) -> float:
        """Mean output tokens per request in period ``t``."""
        return float((self.shares(t) * self._osl_tokens).sum())

    def nodes(self, t: int = 0) -> int:
        """The fewest nodes that hold period ``t``'s instances (solvers may leave idle shared nodes).

        The MIP only bounds shared nodes from below, so with a throughput objective the
        solver is free to report idle ones, or spread small instances over domains; any
        placement of the plan still fits with its shared nodes packed tightest (fewer
        one-node items), so the count is whole nodes plus the fewest shared nodes.
        """
        geo = self.geometry
        gpus = self._layout_gpus
        counts = self.counts(t)
        whole = gpus >= geo.gpus_per_node
        nodes = int((gpus[whole] // geo.gpus_per_node * counts[whole]).sum())
        for members in self._groups.values():
            nodes += least_shared_nodes(
                [int(gpus[c]) for c in members], [int(counts[c]) for c in members], geo.gpus_per_node
            )
        return nodes

    def pool_plans(self, t: int = 0) -> dict[str, PoolPlan]:
        """Every pool's used layouts in period ``t``, with their worst metrics over the classes they serve.

        A layout's rows (one per class it may serve) are judged by the rows that carry flow,
        or all of them when none does; built with array reductions over the row groups
        (a plan is read at every frontier point).
        """
        columns, one_class = self._columns, len(self.candidates.classes) == 1
        flows, instances = self.flows(t), self.counts(t)[self._row_layout]
        used = np.flatnonzero(instances > 0)
        used = used[np.argsort(self._row_layout[used], kind="stable")]  # by layout, rows in table order
        starts = np.flatnonzero(np.diff(self._row_layout[used], prepend=-1))  # each layout's first row
        sizes = np.diff(np.append(starts, len(used)))
        lead, flow = used[starts], flows[used]
        served = flow > 0
        flow_sum = _by_group(np.add, flow, starts)
        any_served = flow_sum > 0
        judged = served | ~np.repeat(any_served, sizes)

        def worst(key: str, reduce: np.ufunc, skip: float) -> np.ndarray:
            return _by_group(reduce, np.where(judged, columns[key][used].astype(float), skip), starts)

        kv = columns["kv_transfer_bytes_per_request"][used].astype(float)
        kv_weighted = _by_group(np.add, kv * flow, starts) / np.where(any_served, flow_sum, 1.0)
        names = columns["request_class"][used]
        classes = [
            ",".join(str(k) for k in names[a:b][judged[a:b]])
            for a, b in zip(starts, starts + sizes, strict=True)
        ]
        per_layout = {
            **{
                key: columns[key][lead] for key in ("pool", "tp", "pp", "ep", "attention_dp", "batch", "gpus")
            },
            "chunked_prefill": columns["chunked_prefill"][lead].astype(bool),
            "prefill_chunk_tokens": columns["prefill_chunk_tokens"][lead].astype(np.int64),
            "two_batch_overlap": columns["two_batch_overlap"][lead].astype(bool),
            "eplb": columns["eplb"][lead].astype(bool),
            "draft_tokens": columns["draft_tokens"][lead].astype(np.int64),
            "candidate_id": columns["candidate_id"][lead].astype(np.int64),
            "instances": instances[lead].astype(np.int64),
            "requests_per_s": columns["requests_per_s"][lead].astype(float)
            if one_class
            else np.full(len(lead), np.nan),
            "served_requests_per_s": flow_sum,
            "tokens_per_s_per_user": worst("tokens_per_s_per_user", np.minimum, np.inf),
            "tpot_ms": worst("tpot_ms", np.maximum, -np.inf),
            "ttft_ms": worst("ttft_ms", np.maximum, -np.inf),
            "worst_inter_token_gap_ms": worst("worst_inter_token_gap_ms", np.maximum, -np.inf),
            # Flow-weighted over the rows served; the plain mean when none is.
            "kv_transfer_bytes_per_request": np.where(
                any_served, kv_weighted, _by_group(np.add, kv, starts) / np.maximum(sizes, 1)
            ),
            "classes": np.array(classes, dtype=object),
        }
        pools = per_layout["pool"]
        plans = {}
        for pool in self.pools:
            mine = np.flatnonzero(pools == pool)
            # Most instances first, then candidate id (ties keep layout order).
            mine = mine[np.lexsort((per_layout["candidate_id"][mine], -per_layout["instances"][mine]))]
            plans[pool] = PoolPlan(
                pool, pd.DataFrame({key: values[mine] for key, values in per_layout.items()})
            )
        return plans

    def plan(self, mode: str, target: float, results: list, main, t: int = 0) -> Plan:
        """The :class:`Plan` of period ``t``."""
        return Plan(
            mode=mode,
            target_tokens_per_s_per_user=target,
            pools=self.pool_plans(t),
            classes=self.candidates.classes,
            shares=self.shares(t),
            requests_per_s=self.served_requests_per_s(t),
            nodes=self.nodes(t),
            gpus_per_node=self.geometry.gpus_per_node,
            termination=main.termination,
            mip_gap=main.mip_gap,
            solve_time_s=sum(r.solve_time_s for r in results),
            solves=len(results),
        )
