"""Elastic plans: size the prefill and decode pools period by period over a traffic trace (docs/DESIGN.md §5).

Why it exists
    Load follows the day and the request mix shifts (prompt-heavy by day,
    reasoning-heavy by night), so the best prefill:decode ratio moves. This module
    answers what a fixed deployment costs and what an elastic one saves, on the
    same performance model and the same trace.

One multi-period MIP
    :func:`planner.optimize.formulation.build_model` with one period per trace row:
    layouts are chosen once for the horizon (an engine is not rebuilt hourly) unless
    ``elastic.allow_relayout``; instances per layout per period; every period serves
    its load and mix at the SLO within the budget; GPUs may change by at most
    ``elastic.ramp_limit_gpus`` between periods and no pool drops below
    ``elastic.min_pool_gpus``. The objective is GPU-hours (node-hours x price for a
    ``min_cost`` instance). The model is built once; the strategies below only flip
    mutable parameters of the persistent solver:

    - ``static``: one deployment for the whole horizon (``static = 1``), i.e. peak
      provisioning;
    - ``fixed_ratio``: elastic, prefill:decode GPUs held within 3% of one ratio R in
      every period (``ratio_enforced = 1``). The best single R is searched on a
      geometric grid whose +-3% bands tile the range of ratios the dynamic plan uses
      (a step of 1.03/0.97), so every ratio in that range lies in some band; a user's
      R (``--fixed-ratio``) is solved as given;
    - ``dynamic``: elastic with free rate matching (the optimum).

    Every strategy's optimum is feasible for the one above it relaxed, so dynamic
    never uses more GPU-hours than a fixed ratio, which never uses more than static
    (tests check it on the solved numbers).

Unservable periods
    When a strategy cannot serve every period, a first solve minimizes unserved
    requests (hour-weighted) and a second minimizes GPU-hours with that shortfall
    fixed; the plan reports every period and marks the unserved ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from planner.economics import over_horizon
from planner.errors import InfeasibleError, PlannerError
from planner.frontier import mode_tables
from planner.optimize.backends import SolveResult, Termination, TimeLimitError, make_backend
from planner.optimize.controls import Controls
from planner.optimize.formulation import build_model
from planner.optimize.model import FIXED_RATIO_TOLERANCE, MODE_POOLS, combine_classes
from planner.optimize.optimizer import time_limit_message
from planner.optimize.packing import geometry
from planner.optimize.solution import Solution
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.trace import Trace

log = logging.getLogger(__name__)

MODE = "disaggregated"
RATIO_GRID_STEP = (1 + FIXED_RATIO_TOLERANCE) / (1 - FIXED_RATIO_TOLERANCE)
"""Consecutive grid ratios whose +-3% bands touch: the grid covers its range without holes."""
RATIO_SEARCH_TIME_LIMIT_S = 15.0
"""Time limit of each candidate ratio's solve in the best-fixed-ratio search."""
UNSERVED_TOLERANCE = 1e-6
"""Requests/s of shortfall below which a period counts as served."""


@dataclass
class StrategyResult:
    """One strategy's plan over the trace."""

    strategy: str
    periods: pd.DataFrame
    """One row per period (see :func:`period_rows`)."""
    gpu_hours: float
    node_hours: float
    solve_time_s: float
    solves: int
    fixed_ratio: float | None = None
    note: str = ""
    termination: Termination = Termination.OPTIMAL
    mip_gap: float = 0.0

    @property
    def served(self) -> bool:
        """True when every period is served at its SLO."""
        return bool(self.periods["slo_met"].all())


@dataclass
class ElasticResult:
    """All strategies on one trace, plus what was asked."""

    problem: Problem
    trace: Trace
    target_tokens_per_s_per_user: float
    load_scale: float
    strategies: dict[str, StrategyResult] = field(default_factory=dict)
    solver: str = "highs"
    solver_version: str = ""
    build_time_s: float = 0.0

    def periods_frame(self) -> pd.DataFrame:
        """periods.csv: every period of every strategy."""
        return pd.concat([r.periods for r in self.strategies.values()], ignore_index=True)

    def summary_frame(self) -> pd.DataFrame:
        """summary.csv: GPU-hours, cost and savings against static, per strategy."""
        price = self.problem.hardware.price_usd_per_gpu_hour
        static = self.strategies.get("static")
        rows = []
        for name, r in self.strategies.items():
            tokens = float((r.periods["output_tokens_per_s"] * r.periods["duration_h"]).sum() * 3600.0)
            rows.append(
                {
                    "strategy": name,
                    "fixed_ratio": r.fixed_ratio if r.fixed_ratio is not None else float("nan"),
                    "gpu_hours": r.gpu_hours,
                    "node_hours": r.node_hours,
                    "cost_usd": r.gpu_hours * price if price is not None else float("nan"),
                    "peak_gpus": int(r.periods["total_gpus"].max()),
                    "mean_gpus": r.gpu_hours / self.trace.hours,
                    "gpu_hours_saved_vs_static": static.gpu_hours - r.gpu_hours if static else float("nan"),
                    "savings_vs_static_fraction": (
                        1 - r.gpu_hours / static.gpu_hours if static else float("nan")
                    ),
                    "periods_unserved": int((~r.periods["slo_met"]).sum()),
                    "solve_time_s": r.solve_time_s,
                    "solves": r.solves,
                    "note": r.note,
                    "output_tokens": tokens,
                    **over_horizon(r.gpu_hours, tokens, self.trace.hours, self.problem.hardware),
                }
            )
        return pd.DataFrame(rows)

    @property
    def unserved_periods(self) -> list[int]:
        """Periods the dynamic (best) strategy cannot serve."""
        best = self.strategies.get("dynamic")
        return [] if best is None else [int(i) for i in np.flatnonzero(~best.periods["slo_met"].to_numpy())]


class ElasticPlanner:
    """The multi-period model of one problem and trace, built once; strategies flip its parameters."""

    def __init__(
        self,
        problem: Problem,
        trace: Trace,
        calibration: Calibration | None = None,
        *,
        min_tokens_per_s_per_user: float = 0.0,
        load_scale: float = 1.0,
        solver: str = "highs",
        time_limit_s: float = 120.0,
    ):
        start = time.perf_counter()
        self.problem, self.trace = problem, trace
        self.target = min_tokens_per_s_per_user
        self.load_scale = load_scale
        self.time_limit_s = time_limit_s
        inst = problem.instance
        classes = tuple(problem.request_classes)
        if tuple(c.name for c in classes) != trace.classes:
            raise PlannerError("the trace was validated against other request classes; reload it")
        floors = np.array(
            [max(c.tokens_per_s_per_user_min or 0.0, min_tokens_per_s_per_user) for c in classes]
        )
        tables = mode_tables(problem, MODE, calibration)
        sizes = {int(g) for pools in tables.values() for t in pools.values() for g in t["gpus"]}
        self.geometry = geometry(problem.hardware, problem.max_gpus, sizes)
        self.pools = MODE_POOLS[MODE]
        # The target is fixed for the whole horizon: build the model on what can be optimal there only.
        everything = combine_classes(tables, self.geometry, classes)
        allowed, usable = everything.at_target(self.pools[-1], floors[everything.class_of])
        _check_every_class_served(everything, allowed, floors, self.pools)
        self.candidates = everything.restrict(allowed, usable)
        self.model = build_model(
            self.candidates,
            self.geometry,
            pools=self.pools,
            layouts_per_pool=inst.layouts_per_pool,
            exclusive_nodes=inst.cluster.exclusive_nodes,
            periods=trace.periods,
            allow_relayout=inst.elastic.allow_relayout,
            allow_unserved=True,
        )
        m = self.model
        self.controls = Controls(m)
        self.controls.set_load(np.asarray(trace.requests_per_s, dtype=float) * load_scale, trace.shares)
        self.controls.set_elastic_limits(
            ramp_gpus=inst.elastic.ramp_limit_gpus, min_pool_gpus=inst.elastic.min_pool_gpus
        )
        self.cost_objective = inst.objective == "min_cost"
        if self.cost_objective and problem.hardware.price_usd_per_gpu_hour is None:
            raise PlannerError(
                "objective min_cost needs hardware.price_usd_per_gpu_hour; set it or use min_gpus"
            )
        self.solution = Solution(m, self.candidates, self.geometry, self.pools, inst.cluster.exclusive_nodes)
        self.controls.set_target(*self.solution.at_target(self.target, floors))
        # GPU-hours (node-hours x price) only take values on a lattice of whole GPUs x period hours:
        # half the smallest step proves optimality.
        step = float(trace.duration_h.min()) * (
            (problem.hardware.price_usd_per_gpu_hour or 0.0) * self.geometry.gpus_per_node
            if self.cost_objective
            else 1.0
        )
        self.backend = make_backend(solver, m, time_limit_s, abs_gap=0.5 * step)
        self.build_time_s = time.perf_counter() - start
        self._results: list[SolveResult] = []

    # ----------------------------------------------------------------- solving

    def _solve(self, *, incumbent_ok: bool = False) -> SolveResult:
        result = self.backend.solve()
        self._results.append(result)
        if result.termination == Termination.TIME_LIMIT and not (incumbent_ok and result.has_solution):
            raise TimeLimitError(
                time_limit_message(self.backend.name, self.time_limit_s, f"{self.trace.periods}-period model")
            )
        return result

    def _weights(self, *, resources: bool, unserved: bool) -> None:
        node_price = (self.problem.hardware.price_usd_per_gpu_hour or 0.0) * self.geometry.gpus_per_node
        hours = np.asarray(self.trace.duration_h, dtype=float)
        self.controls.set_weights(
            gpu=hours if resources and not self.cost_objective else 0.0,
            node=hours * node_price if resources and self.cost_objective else 0.0,
            unserved=hours if unserved else 0.0,
        )

    def solve(
        self,
        strategy: str,
        fixed_ratio: float | None = None,
        *,
        allow_shortfall: bool = True,
        incumbent_ok: bool = False,
    ):
        """One strategy's plan: every period served if possible, else least shortfall; then least GPU-hours.

        Returns None when ``allow_shortfall`` is False and the strategy cannot serve every period
        (or, with ``incumbent_ok``, when the time limit passes before any plan is found).
        """
        m = self.model
        self.controls.set_strategy(static=strategy == "static", fixed_ratio=fixed_ratio)
        self._results = []
        self.controls.set_unserved_caps(np.zeros(self.trace.periods))
        self._weights(resources=True, unserved=False)
        try:
            result = self._solve(incumbent_ok=incumbent_ok)
        except TimeLimitError:
            if incumbent_ok:
                return None
            raise
        note = ""
        if result.termination == Termination.INFEASIBLE:
            if not allow_shortfall:
                return None
            self.controls.set_unserved_caps(None)
            self._weights(resources=False, unserved=True)
            first = self._solve()
            if first.termination != Termination.OPTIMAL:
                raise InfeasibleError(self._why_infeasible(strategy, fixed_ratio))
            shortfall = np.array([pyo.value(m.unserved_requests_per_s[t]) for t in m.T])
            self.controls.set_unserved_caps(shortfall + UNSERVED_TOLERANCE)
            self._weights(resources=True, unserved=False)
            result = self._solve()
            note = "some periods cannot be served within the budget"
        self.controls.set_unserved_caps(np.zeros(self.trace.periods))
        if result.termination != Termination.OPTIMAL:
            note = f"not proven optimal within the time limit (gap {result.mip_gap:.1%})"
        return self._read(strategy, fixed_ratio, note, result)

    def _why_infeasible(self, strategy: str, fixed_ratio: float | None) -> str:
        limits = self.problem.instance.elastic
        what = f"the {strategy} strategy" + (f" at ratio {fixed_ratio:g}" if fixed_ratio else "")
        return (
            f"{what} has no plan even with unserved load allowed: elastic.min_pool_gpus = "
            f"{limits.min_pool_gpus} or the packing rules exceed the budget of {self.problem.max_gpus} GPUs; "
            "lower elastic.min_pool_gpus or raise cluster.max_gpus"
        )

    def _read(self, strategy: str, fixed_ratio: float | None, note: str, last: SolveResult) -> StrategyResult:
        rows = period_rows(self, strategy)
        hours = self.trace.duration_h
        return StrategyResult(
            strategy=strategy,
            periods=rows,
            gpu_hours=float((rows["total_gpus"] * hours).sum()),
            node_hours=float((rows["nodes"] * hours).sum()),
            solve_time_s=sum(r.solve_time_s for r in self._results),
            solves=len(self._results),
            fixed_ratio=fixed_ratio,
            note=note,
            termination=last.termination,
            mip_gap=last.mip_gap,
        )

    def best_fixed_ratio(self, dynamic: StrategyResult, static: StrategyResult) -> StrategyResult:
        """The best single prefill:decode ratio for the horizon.

        Candidates: every ratio the dynamic optimum uses in some period and the static
        plan's ratio (merged when within 3% of each other). The static plan itself holds
        its ratio in every period, so it is a fixed-ratio plan too: the result never
        uses more GPU-hours than static. Each candidate solve gets at most
        :data:`RATIO_SEARCH_TIME_LIMIT_S`; an unproven one is reported in the note.
        """
        ratios = pd.concat([dynamic.periods, static.periods])["prefill_decode_gpu_ratio"]
        candidates: list[float] = []
        for ratio in sorted(ratios.replace([np.inf], np.nan).dropna().unique()):
            if not candidates or ratio > candidates[-1] * RATIO_GRID_STEP:
                candidates.append(float(ratio))
        best = StrategyResult(
            "fixed_ratio",
            static.periods.assign(strategy="fixed_ratio"),
            static.gpu_hours,
            static.node_hours,
            0.0,
            0,
            fixed_ratio=float(static.periods["prefill_decode_gpu_ratio"].iloc[0]),
            termination=static.termination,
            mip_gap=static.mip_gap,
        )
        elapsed, solves, unproven = 0.0, 0, 0
        limit_s = min(self.time_limit_s, RATIO_SEARCH_TIME_LIMIT_S)
        self.backend.set_time_limit(limit_s)
        try:
            for number, ratio in enumerate(candidates, 1):
                log.info("fixed_ratio: candidate ratio %d of %d, %.3g", number, len(candidates), ratio)
                found = self.solve("fixed_ratio", ratio, allow_shortfall=False, incumbent_ok=True)
                elapsed += sum(r.solve_time_s for r in self._results)
                solves += len(self._results)
                if found is None:
                    unproven += bool(
                        self._results and self._results[-1].termination == Termination.TIME_LIMIT
                    )
                    continue
                unproven += found.termination != Termination.OPTIMAL
                if found.gpu_hours < best.gpu_hours - 1e-9:
                    best = found
        finally:
            self.backend.set_time_limit(self.time_limit_s)
        best.solve_time_s, best.solves = elapsed, solves
        best.note = (
            f"best of {len(candidates)} candidate ratios ({', '.join(f'{r:.3g}' for r in candidates)}) "
            "and the static plan's"
            + (
                f"; {unproven} of them NOT proven optimal within the search's {limit_s:g} s per solve "
                "(the best plan found is used)"
                if unproven
                else ""
            )
        )
        return best


def _check_every_class_served(candidates, allowed: np.ndarray, floors: np.ndarray, pools) -> None:
    """Every class needs a layout in every pool that meets its floor, or no period can be served."""
    for k, cls in enumerate(candidates.classes):
        for pool in pools:
            rows = (candidates.class_of == k) & (candidates.pools == pool)
            if rows.any() and not (rows & allowed).any():
                fastest = candidates.tokens_per_s_per_user[rows].max()
                raise InfeasibleError(
                    f"request class '{cls.name}': no {pool} layout reaches {floors[k]:g} tokens/s per user; "
                    f"the fastest reaches {fastest:.1f}: lower its tokens_per_s_per_user_min or "
                    "--min-tokens-per-s-per-user"
                )


def period_rows(planner: ElasticPlanner, strategy: str) -> pd.DataFrame:
    """periods.csv rows of the loaded solution: load, GPUs per pool, ratio, tokens/s/GPU, SLO met."""
    m, sol, trace = planner.model, planner.solution, planner.trace
    rows = []
    for t in m.T:
        plans = sol.pool_plans(t)
        prefill, decode = plans["prefill"].gpus, plans["decode"].gpus
        load = float(pyo.value(m.load_requests_per_s[t]))
        unserved = max(0.0, float(pyo.value(m.unserved_requests_per_s[t]) or 0.0))
        served = max(0.0, load - unserved) if unserved > UNSERVED_TOLERANCE else load
        tokens = served * sol.mean_osl(t)
        total = prefill + decode
        decode_rows = plans["decode"].rows
        rows.append(
            {
                "strategy": strategy,
                "period": int(t),
                "period_start": trace.start[t].isoformat(),
                "duration_h": float(trace.duration_h[t]),
                "load_requests_per_s": load,
                "served_requests_per_s": served,
                "unserved_requests_per_s": unserved if unserved > UNSERVED_TOLERANCE else 0.0,
                **{f"share_{name}": float(trace.shares[t, k]) for k, name in enumerate(trace.classes)},
                "prefill_gpus": prefill,
                "decode_gpus": decode,
                "total_gpus": total,
                "nodes": sol.nodes(t),
                "prefill_decode_gpu_ratio": prefill / decode if decode else float("nan"),
                "prefill_instances": plans["prefill"].instances,
                "decode_instances": plans["decode"].instances,
                "prefill_layouts": plans["prefill"].layout_text(),
                "decode_layouts": plans["decode"].layout_text(),
                "output_tokens_per_s": tokens,
                "tokens_per_s_per_gpu": tokens / total if total else 0.0,
                "tokens_per_s_per_user": float(decode_rows["tokens_per_s_per_user"].min())
                if len(decode_rows)
                else float("nan"),
                "ttft_ms": float(plans["prefill"].rows["ttft_ms"].max()) if prefill else float("nan"),
                "slo_met": unserved <= UNSERVED_TOLERANCE,
            }
        )
    return pd.DataFrame(rows)


def plan_elastic(
    problem: Problem,
    trace: Trace,
    calibration: Calibration | None = None,
    *,
    min_tokens_per_s_per_user: float = 0.0,
    fixed_ratio: float | None = None,
    load_scale: float = 1.0,
    solver: str = "highs",
    time_limit_s: float = 120.0,
) -> ElasticResult:
    """Static, best fixed ratio (and ``fixed_ratio`` if given), and dynamic plans over one trace."""
    planner = ElasticPlanner(
        problem,
        trace,
        calibration,
        min_tokens_per_s_per_user=min_tokens_per_s_per_user,
        load_scale=load_scale,
        solver=solver,
        time_limit_s=time_limit_s,
    )
    result = ElasticResult(
        problem,
        trace,
        min_tokens_per_s_per_user,
        load_scale,
        solver=solver,
        solver_version=planner.backend.version,
        build_time_s=planner.build_time_s,
    )
    log.info("elastic: %d-period model built in %.1f s", trace.periods, planner.build_time_s)
    log.info("dynamic: solving (free rate matching every period)")
    dynamic = _logged(planner.solve("dynamic"))
    log.info("static: solving (one deployment for the whole horizon)")
    static = _logged(planner.solve("static"))
    result.strategies["static"] = static
    if dynamic.served and static.served:
        log.info("fixed_ratio: searching the best single prefill:decode ratio")
        result.strategies["fixed_ratio"] = _logged(planner.best_fixed_ratio(dynamic, static))
    if fixed_ratio is not None:
        log.info("fixed_ratio_given: solving at ratio %g", fixed_ratio)
        given = _logged(planner.solve("fixed_ratio", fixed_ratio))
        given.strategy = "fixed_ratio_given"
        given.periods["strategy"] = "fixed_ratio_given"
        result.strategies["fixed_ratio_given"] = given
    result.strategies["dynamic"] = dynamic
    return result


def _logged(strategy: StrategyResult) -> StrategyResult:
    """One progress line per strategy solved."""
    log.info(
        "%s: %s GPU-hours, %s, %.1f s",
        strategy.strategy,
        f"{strategy.gpu_hours:,.1f}",
        strategy.termination if not strategy.note else strategy.note,
        strategy.solve_time_s,
    )
    return strategy
