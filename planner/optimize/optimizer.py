"""Solve one mode's model at an interactivity target: the optimum, then the largest plan achieving it.

One :class:`ModeOptimizer` per mode and instance builds its model and its
persistent backend once; every call of :meth:`ModeOptimizer.best_at` only
changes variable bounds and mutable parameters.

- ``max_tokens_per_s_per_gpu`` is a ratio (output tokens/s over GPUs), which a
  MIP cannot maximize directly. Dinkelbach's method solves it exactly with linear
  MIPs: maximize ``tokens - theta x gpus``; if the optimum is 0, ``theta`` is the
  best ratio, else set ``theta`` to the ratio just found and repeat. It converges
  superlinearly (2-3 solves in practice) and each step is exact. Warm-started
  with the previous frontier point's ratio.
- ``min_gpus`` minimizes GPUs and ``min_cost`` the price of the whole nodes the
  plan occupies, both serving ``traffic.requests_per_s``.

Then a tie-break solve fixes the optimum as a constraint and maximizes output
tokens/s, so the plan reported is the largest one at the optimal value: unique
in its numbers, whichever solver runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from planner.errors import PlannerError
from planner.optimize.backends import SolveResult, TimeLimitError, make_backend
from planner.optimize.model import MODE_POOLS, Candidates, build_model, sub_node_groups
from planner.optimize.packing import Geometry
from planner.optimize.plan import Plan, PoolPlan

RATIO_TOLERANCE = 1e-9
"""Dinkelbach stops when ``tokens - theta x gpus`` (exact, from the counts) is within this fraction
of the tokens: the tokens/s per GPU found is optimal to this relative precision, up to the MIP gap."""
TIE_BREAK_SLACK = 1e-7
"""The tie-break keeps the optimum within this relative slack (solver feasibility tolerance)."""
MAX_DINKELBACH_STEPS = 60


class ModeOptimizer:
    """The MIP of one deployment mode, built once, re-solved per target."""

    def __init__(
        self,
        mode: str,
        candidates: Candidates,
        geometry: Geometry,
        *,
        osl_tokens: int,
        layouts_per_pool: int,
        exclusive_nodes: bool,
        objective: str = "max_tokens_per_s_per_gpu",
        load_requests_per_s: float | None = None,
        price_usd_per_gpu_hour: float | None = None,
        fixed_ratio: float | None = None,
        solver: str = "highs",
        time_limit_s: float = 60.0,
    ):
        self.mode = mode
        self.pools = MODE_POOLS[mode]
        self.candidates = candidates
        self.geometry = geometry
        self.osl_tokens = osl_tokens
        self.objective = objective
        self.price_usd_per_gpu_hour = price_usd_per_gpu_hour
        self.time_limit_s = time_limit_s
        self.model = build_model(
            candidates,
            geometry,
            pools=self.pools,
            osl_tokens=osl_tokens,
            layouts_per_pool=layouts_per_pool,
            exclusive_nodes=exclusive_nodes,
            fixed_ratio=fixed_ratio,
        )
        if objective != "max_tokens_per_s_per_gpu":
            if load_requests_per_s is None:
                raise PlannerError(f"objective {objective} needs traffic.requests_per_s (the load to serve)")
            self.model.load_requests_per_s.value = load_requests_per_s
        if objective == "min_cost" and price_usd_per_gpu_hour is None:
            raise PlannerError(
                "objective min_cost needs hardware.price_usd_per_gpu_hour; set it or use min_gpus"
            )
        self.backend = make_backend(solver, self.model, time_limit_s)
        self._groups = sub_node_groups(candidates.table, geometry, exclusive_nodes)
        self._whole = np.flatnonzero(candidates.table["placement"].to_numpy() == "whole_nodes")
        self._interactivity = candidates.tokens_per_s_per_user
        self._judged = candidates.pools == self.pools[-1]
        self._theta_hint = 0.0

    @property
    def breakpoints(self) -> list[float]:
        """Distinct interactivities of the decode-like candidates, ascending: where the optimum can change."""
        return sorted(set(self._interactivity[self._judged].tolist()))

    # ----------------------------------------------------------------- public

    def best_at(self, min_tokens_per_s_per_user: float) -> Plan | None:
        """The optimal plan whose every decode-like instance meets the target, or None if none does."""
        self._set_target(min_tokens_per_s_per_user)
        self._results: list[SolveResult] = []
        ratio = self.objective == "max_tokens_per_s_per_gpu"
        if not (self._max_ratio() if ratio else self._min_resources()):
            return None
        return self._read_plan(min_tokens_per_s_per_user)

    def max_requests_per_s(self, min_tokens_per_s_per_user: float) -> float | None:
        """The most requests/s the budget can serve at a target, ignoring the load (for diagnoses)."""
        m = self.model
        self._set_target(min_tokens_per_s_per_user)
        self._results = []
        saved = m.load_requests_per_s.value
        m.load_requests_per_s.value = 0.0
        self._weights(1.0, 0.0, 0.0)
        try:
            result = self._solve()
        finally:
            m.load_requests_per_s.value = saved
        return None if result.termination != "optimal" else float(pyo.value(m.served_requests_per_s))

    # ----------------------------------------------------------------- internals

    def _set_target(self, target: float) -> None:
        for c in range(len(self._interactivity)):
            if self._judged[c]:
                self.model.use[c].setub(1 if self._interactivity[c] >= target else 0)

    def _solve(self) -> SolveResult:
        result = self.backend.solve()
        self._results.append(result)
        if result.termination == "time_limit":
            raise TimeLimitError(
                f"the {self.backend.name} solver hit its {self.time_limit_s:g} s time limit on the "
                f"{self.mode} model; raise --time-limit-s, lower layouts_per_pool, or try --solver "
                + ("ortools" if self.backend.name == "highs" else "highs")
            )
        return result

    def _weights(self, tokens: float, gpu: float, node: float) -> None:
        m = self.model
        m.tokens_weight.value, m.gpu_weight.value, m.node_weight.value = tokens, gpu, node

    def _counts(self) -> np.ndarray:
        """Instances per candidate in the loaded solution, rounded (solvers return 2.9999999)."""
        m = self.model
        return np.array([round(pyo.value(m.instances[c])) for c in m.C], dtype=np.int64)

    def _tokens_and_gpus(self) -> tuple[float, float]:
        """Output tokens/s and GPUs of the loaded solution, recomputed exactly from its counts.

        Solver values carry feasibility tolerances (a GPU total of 51.99999999999977);
        Dinkelbach's ratios must not, or two near-equal plans can make it cycle.
        """
        counts = self._counts()
        pools = self.candidates.pools
        rates = self.candidates.requests_per_s * counts
        served = min(rates[pools == pool].sum() for pool in self.pools)
        return self.osl_tokens * served, float((self.candidates.gpus * counts).sum())

    def _max_ratio(self) -> bool:
        m = self.model
        theta = self._theta_hint
        for _ in range(MAX_DINKELBACH_STEPS):
            self._weights(1.0, theta, 0.0)
            result = self._solve()
            if result.termination == "infeasible":
                return False
            tokens, gpus = self._tokens_and_gpus()
            if tokens - theta * gpus <= RATIO_TOLERANCE * max(tokens, 1.0):
                if tokens - theta * gpus < -RATIO_TOLERANCE * max(tokens, 1.0):
                    theta = tokens / gpus  # the hint overshot: restart from a feasible ratio
                    continue
                break
            theta = tokens / gpus  # strictly larger than before: no cycling
        else:  # pragma: no cover - Dinkelbach converges finitely on a finite feasible set
            raise RuntimeError("Dinkelbach's method did not converge; this is a bug")
        self._theta_hint = theta
        self._main = result
        # Tie-break: the largest plan at the optimal tokens/s per GPU.
        m.ratio_floor.value = theta * (1 - TIE_BREAK_SLACK)
        self._weights(1.0, 0.0, 0.0)
        try:
            result = self._solve()
        finally:
            m.ratio_floor.value = 0.0
        if result.termination == "optimal":  # else the Dinkelbach solution is still loaded: keep it
            self._main = result  # its gap is relative to tokens/s, a meaningful scale
        return True

    def _min_resources(self) -> bool:
        m = self.model
        node_price = (self.price_usd_per_gpu_hour or 0.0) * self.geometry.gpus_per_node
        if self.objective == "min_gpus":
            self._weights(0.0, 1.0, 0.0)
        else:
            self._weights(0.0, 0.0, node_price)
        result = self._solve()
        if result.termination == "infeasible":
            return False
        self._main = result
        cap = m.gpu_cap if self.objective == "min_gpus" else m.node_cap
        saved = cap.value
        used = pyo.value(m.total_gpus if self.objective == "min_gpus" else m.nodes_used)
        cap.value = round(used)
        self._weights(1.0, 0.0, 0.0)
        try:
            self._solve()  # if it fails, the minimal plan is still loaded: keep it
        finally:
            cap.value = saved
        return True

    def _nodes_used(self) -> int:
        """Nodes the loaded solution occupies, recounted from its placement (solvers may leave slack).

        The MIP only bounds shared nodes from below, so with a throughput objective the
        solver is free to report idle ones; the real count is the least that holds it.
        """
        m, geo = self.model, self.geometry
        gpus = self.candidates.gpus
        nodes = 0
        for b in m.B:
            for members in self._groups.values():
                placed = [(c, round(pyo.value(m.copies[c, b]))) for c in members]
                if geo.sub_node_chain:
                    nodes += -(-sum(int(gpus[c]) * n for c, n in placed) // geo.gpus_per_node)
                else:
                    per_node = geo.gpus_per_node // int(gpus[members[0]])
                    nodes += -(-sum(n for _, n in placed) // per_node)
            for c in self._whole:
                nodes += int(gpus[c]) // geo.gpus_per_node * round(pyo.value(m.copies[c, b]))
        for c in m.S:
            nodes += int(gpus[c]) // geo.gpus_per_node * round(pyo.value(m.spanning_copies[c]))
        return nodes

    def _read_plan(self, target: float) -> Plan:
        table = self.candidates.table
        counts = pd.Series(self._counts(), index=table.index)
        pools = {}
        for pool in self.pools:
            chosen = table[(table["pool"] == pool) & (counts > 0)].assign(instances=counts[counts > 0])
            chosen = chosen.sort_values(
                ["instances", "candidate_id"], ascending=[False, True], kind="mergesort"
            )
            pools[pool] = PoolPlan(pool, chosen.reset_index(drop=True))
        main = self._main
        return Plan(
            mode=self.mode,
            target_tokens_per_s_per_user=target,
            pools=pools,
            osl_tokens=self.osl_tokens,
            nodes=self._nodes_used(),
            gpus_per_node=self.geometry.gpus_per_node,
            termination=main.termination,
            mip_gap=main.mip_gap,
            solve_time_s=sum(r.solve_time_s for r in self._results),
            solves=len(self._results),
        )
