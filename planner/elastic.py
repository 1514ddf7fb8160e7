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

Decomposed by layout set
    Layouts are the only coupling between periods besides the ramp rows, so each strategy
    is first solved on one layout set at a time (:mod:`planner.optimize.layout_sets` bounds
    every set's GPU-hours exactly per pool and period), cheapest bound first, until the next
    bound reaches the best plan: proven optimal, usually after one restricted solve. Past
    :data:`LAYOUT_SET_SOLVES` sets the full model takes over with that plan's bound; which
    path answered is ``solution_path``, and any remaining gap is reported, never hidden.

Unservable periods
    When a strategy cannot serve every period, a first solve minimizes unserved
    requests (hour-weighted) and a second minimizes GPU-hours with that shortfall
    fixed; the plan reports every period and marks the unserved ones.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.core as pyo

from planner.economics import over_horizon
from planner.errors import InfeasibleError, PlannerError
from planner.frontier import mode_tables
from planner.optimize.backends import SolveResult, Termination, TimeLimitError, make_backend
from planner.optimize.controls import Controls
from planner.optimize.formulation import build_model
from planner.optimize.layout_sets import LayoutSetBounds
from planner.optimize.model import FIXED_RATIO_TOLERANCE, MODE_POOLS, combine_classes
from planner.optimize.optimizer import time_limit_message
from planner.optimize.packing import geometry
from planner.optimize.period_bounds import PeriodBounder
from planner.optimize.solution import Solution, restore, snapshot
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.trace import Trace

log = logging.getLogger(__name__)

MODE = "disaggregated"
RATIO_GRID_STEP = (1 + FIXED_RATIO_TOLERANCE) / (1 - FIXED_RATIO_TOLERANCE)
"""Consecutive grid ratios whose +-3% bands touch: the grid covers its range without holes."""
RATIO_SEARCH_NODE_LIMIT = 2_000
"""Branch-and-bound nodes of each candidate ratio's solve in the best-fixed-ratio search (deterministic:
the same answer on a busy machine); an unproven candidate is reported with its gap."""
NODE_LIMIT = 200_000
"""Branch-and-bound nodes of a strategy's full solve; past it the best plan found is reported with its
certified gap (never silently as optimal)."""
UNSERVED_TOLERANCE = 1e-6
"""Requests/s of shortfall below which a period counts as served."""
LAYOUT_SET_SOLVES = 40
"""Layout sets the decomposition solves (cheapest bound first) before the full MIP takes over
(deterministic: a count, never a time)."""
LAYOUT_SET_NODE_LIMIT = 20_000
"""Branch-and-bound nodes of one layout set's solve; past it its bound still counts."""
DECOMPOSITION = "layout sets"
"""``solution_path`` of a plan the decomposition proved (or bounded) without the full MIP."""
FULL_MIP = "full MIP"
"""``solution_path`` of a plan the full multi-period MIP answered."""


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
    solution_path: str = FULL_MIP
    """Which path answered: :data:`DECOMPOSITION` or :data:`FULL_MIP`."""

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
        """periods.csv: every period of every strategy, with its strategy's termination and gap."""
        return pd.concat(
            [
                r.periods.assign(termination=str(r.termination), mip_gap=r.mip_gap)
                for r in self.strategies.values()
            ],
            ignore_index=True,
        )

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
                    "termination": str(r.termination),
                    "mip_gap": r.mip_gap,
                    "solution_path": r.solution_path,
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
        node_limit: int = NODE_LIMIT,
        decompose: bool = True,
    ):
        """``decompose=False`` always solves the full multi-period MIP (the exact path, for audits)."""
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
        self._allowed, self._usable = self.solution.at_target(self.target, floors)
        self.controls.set_target(self._allowed, self._usable)
        self.hours = np.asarray(trace.duration_h, dtype=float)
        demand = np.asarray(trace.requests_per_s, dtype=float)[:, None] * load_scale * trace.shares
        self.layout_sets = (
            LayoutSetBounds(
                self.candidates,
                pools=self.pools,
                layouts_per_pool=inst.layouts_per_pool,
                allowed_rows=self._allowed,
                usable_layouts=self._usable,
                demand=demand,
                hours=self.hours,
                max_gpus=problem.max_gpus,
                min_pool_gpus=float(inst.elastic.min_pool_gpus),
                ramp_gpus=inst.elastic.ramp_limit_gpus,
            )
            if decompose
            and LayoutSetBounds.applies(inst.layouts_per_pool, self.pools, inst.elastic.allow_relayout)
            and not self.cost_objective
            else None
        )
        if self.layout_sets is not None and not self.layout_sets.available:
            self.layout_sets = None
        self.path = FULL_MIP
        self.bounder = PeriodBounder(
            self.candidates,
            self.geometry,
            pools=self.pools,
            layouts_per_pool=inst.layouts_per_pool,
            exclusive_nodes=inst.cluster.exclusive_nodes,
            loads=np.asarray(trace.requests_per_s, dtype=float) * load_scale,
            shares=np.asarray(trace.shares, dtype=float),
            hours=self.hours,
            allowed_rows=self._allowed,
            usable_layouts=self._usable,
            min_pool_gpus=float(inst.elastic.min_pool_gpus),
            solver=solver,
        )
        # GPU-hours (node-hours x price) only take values on a lattice of whole GPUs x period hours:
        # half the smallest step proves optimality.
        step = float(trace.duration_h.min()) * (
            (problem.hardware.price_usd_per_gpu_hour or 0.0) * self.geometry.gpus_per_node
            if self.cost_objective
            else 1.0
        )
        self._abs_gap = 0.5 * step
        self.node_limit = node_limit
        self.backend = make_backend(solver, m, time_limit_s, abs_gap=self._abs_gap, node_limit=node_limit)
        self.build_time_s = time.perf_counter() - start
        self._results: list[SolveResult] = []

    # ----------------------------------------------------------------- solving

    def _solve(self, *, incumbent_ok: bool = True) -> SolveResult:
        """One solve; an incumbent at a limit is kept (with its gap), a limit without one is an error."""
        result = self.backend.solve()
        self._results.append(result)
        if result.termination.limit and not (incumbent_ok and result.has_solution):
            raise TimeLimitError(
                time_limit_message(
                    self.backend.name, self.time_limit_s, f"{self.trace.periods}-period model", result
                )
            )
        return result

    def _solve_served(
        self, strategy: str, fixed_ratio: float | None, cutoff_gpu_hours: float = float("inf")
    ) -> SolveResult:
        """Every period served, least GPU-hours: layout sets first, else popular layouts, then all of them.

        The decomposition (:meth:`_solve_by_layout_sets`) usually proves the optimum on its own.
        Otherwise the layouts the periods' optima favour make a small MIP that may meet the lower
        bound, which proves it optimal; failing that the full model is solved too.

        The result's gap is certified against the best of the solver's, the periods' and the
        layout sets' bounds.
        """
        best, kept, sets_lower = None, None, 0.0
        self.path = FULL_MIP
        if self.layout_sets is not None:
            # Every strategy restricts the dynamic one: the periods' dynamic bounds hold for all.
            alone = self.bounder.bounds(None)
            decomposed = None
            if alone.servable.all():
                self.controls.set_gpu_floors(alone.gpus)
                decomposed = self._solve_by_layout_sets(strategy, fixed_ratio, alone.gpus, cutoff_gpu_hours)
            if decomposed is not None:
                best, kept, sets_lower = decomposed
                if best.termination == Termination.OPTIMAL or sets_lower >= cutoff_gpu_hours - self._abs_gap:
                    self.path = DECOMPOSITION
                    return best
                log.info(
                    "%s: layout sets leave a %.2f%% gap after %d solves; solving the full model",
                    strategy,
                    100 * best.mip_gap,
                    LAYOUT_SET_SOLVES,
                )
        bounds = self.bounder.bounds(fixed_ratio)
        self.controls.set_gpu_floors(bounds.gpus)
        lower = (
            bounds.static_lower_bound(self.hours)
            if strategy == "static"
            else bounds.hours_lower_bound(self.hours)
        )
        lower = max(lower, sets_lower)
        bound = -lower if not self.cost_objective and np.isfinite(lower) else float("inf")
        popular = bounds.popular_layouts(
            self.candidates.layouts["pool"].to_numpy(), self.problem.instance.layouts_per_pool
        )
        if best is None and popular.any() and not self.problem.instance.elastic.allow_relayout:
            self.controls.set_target(self._allowed, self._usable & popular)
            try:
                first = self._solve()
            except TimeLimitError:  # no plan on these layouts within the limit: solve on all of them
                first = SolveResult(Termination.NODE_LIMIT, float("nan"), float("nan"), 0.0)
            finally:
                self.controls.set_target(self._allowed, self._usable)
            if first.has_solution:
                best, kept = first, snapshot(self.model)
                if first.objective >= bound - self.backend_abs_gap:
                    return dataclasses.replace(first, termination=Termination.OPTIMAL, bound=bound)
        full = self._solve()
        if full.termination == Termination.INFEASIBLE:
            return full
        if best is None or (full.has_solution and full.objective >= best.objective):
            best, kept = full, None
        elif kept is not None:
            restore(kept)
        upper = min(full.bound if full.bound == full.bound else float("inf"), bound)
        if full.termination == Termination.OPTIMAL:
            return dataclasses.replace(best, termination=Termination.OPTIMAL, bound=best.objective)
        proven = best.objective >= upper - self.backend_abs_gap
        return dataclasses.replace(
            best, termination=Termination.OPTIMAL if proven else full.termination, bound=upper
        )

    def _solve_by_layout_sets(
        self,
        strategy: str,
        fixed_ratio: float | None,
        period_gpus: np.ndarray,
        cutoff_gpu_hours: float = float("inf"),
    ) -> tuple[SolveResult, list, float] | None:
        """The horizon on one layout set at a time, cheapest bound first (:mod:`.optimize.layout_sets`).

        Stops when the next set's bound reaches the best plan (proven optimal) or the cutoff, or
        after :data:`LAYOUT_SET_SOLVES` sets. At a fixed ratio, the periods' own bounds at that
        ratio (solves) join the sets' bounds once the first set does not settle it. Returns the
        best plan (loaded in the model), its snapshot and the GPU-hours no plan goes below; None
        when no set found a plan (the full MIP decides).
        """
        done: set[tuple[int, ...]] = set()

        def ranked(floors: np.ndarray) -> list:
            found = self.layout_sets.sets(
                floors,
                static=strategy == "static",
                fixed_ratio=fixed_ratio,
                first=LAYOUT_SET_SOLVES + 1 + len(done),
            )
            return [s for s in found if s.key not in done]

        sets = ranked(period_gpus)
        if not sets or not np.isfinite(sets[0].gpu_hours_bound):
            return None
        best, kept, unproven = None, None, []
        refined = fixed_ratio is None
        limit = self.backend.node_limit  # the caller's (the ratio search sets a smaller one)
        self.backend.set_node_limit(min(LAYOUT_SET_NODE_LIMIT, limit or LAYOUT_SET_NODE_LIMIT))
        try:
            while True:
                next_bound = sets[0].gpu_hours_bound if sets else float("inf")
                stop = min(float("inf") if best is None else -best.objective, cutoff_gpu_hours)
                if best is not None and next_bound < stop - self._abs_gap and not refined:
                    refined = True
                    at_ratio = self.bounder.bounds(fixed_ratio)
                    if at_ratio.servable.all():
                        period_gpus = np.maximum(period_gpus, at_ratio.gpus)
                        sets = ranked(period_gpus)
                        continue
                if next_bound >= stop - self._abs_gap or len(done) == LAYOUT_SET_SOLVES:
                    break
                layout_set = sets.pop(0)
                done.add(layout_set.key)
                self.controls.set_target(self._allowed, self._usable & layout_set.layouts)
                self.controls.set_gpu_floors(layout_set.gpu_floors)
                result = self.backend.solve()
                self._results.append(result)
                if result.termination.limit:  # this set's optimum lies between its bounds
                    solver_bound = -result.bound if result.bound == result.bound else 0.0
                    unproven.append(max(solver_bound, layout_set.gpu_hours_bound))
                if result.has_solution and (best is None or result.objective > best.objective + 1e-9):
                    best, kept = result, snapshot(self.model)
        finally:
            self.backend.set_node_limit(limit)
            self.controls.set_target(self._allowed, self._usable)
            self.controls.set_gpu_floors(period_gpus)
        if best is None:
            return None
        restore(kept)
        lower = min([next_bound, *unproven])
        if lower >= -best.objective - self._abs_gap:
            proven = dataclasses.replace(best, termination=Termination.OPTIMAL, bound=best.objective)
            return proven, kept, lower
        return dataclasses.replace(best, termination=Termination.NODE_LIMIT, bound=-lower), kept, lower

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
        cutoff_gpu_hours: float = float("inf"),
    ):
        """One strategy's plan: every period served if possible, else least shortfall; then least GPU-hours.

        Returns None when ``allow_shortfall`` is False and the strategy cannot serve every period
        (or, with ``incumbent_ok``, when the time limit passes before any plan is found).
        ``cutoff_gpu_hours``: a plan the caller already has; the layout sets stop searching once no
        set can beat it (the plan returned is then proven no better than the cutoff, not optimal).
        """
        m = self.model
        self.controls.set_strategy(static=strategy == "static", fixed_ratio=fixed_ratio)
        self._results = []
        self.controls.set_unserved_caps(np.zeros(self.trace.periods))
        self._weights(resources=True, unserved=False)
        try:
            result = self._solve_served(strategy, fixed_ratio, cutoff_gpu_hours)
        except TimeLimitError:
            if incumbent_ok:
                return None
            raise
        note = ""
        if result.termination == Termination.INFEASIBLE:
            if not allow_shortfall:
                return None
            # The periods' bounds assume every period served: off while some load goes unserved.
            self.controls.set_gpu_floors(None)
            self.controls.set_unserved_caps(None)
            self._weights(resources=False, unserved=True)
            first = self._solve(incumbent_ok=False)
            if first.termination != Termination.OPTIMAL:
                raise InfeasibleError(self._why_infeasible(strategy, fixed_ratio))
            self.path = FULL_MIP
            shortfall = np.array([pyo.value(m.unserved_requests_per_s[t]) for t in m.T])
            self.controls.set_unserved_caps(shortfall + UNSERVED_TOLERANCE)
            self._weights(resources=True, unserved=False)
            result = self._solve()
            note = "some periods cannot be served within the budget"
        self.controls.set_unserved_caps(np.zeros(self.trace.periods))
        if result.termination != Termination.OPTIMAL:
            note = (note + "; " if note else "") + (
                f"NOT proven optimal ({result.termination}; node limit {self.backend.node_limit:,}), "
                f"GPU-hours within {result.mip_gap:.2%} of the optimum"
            )
        return self._read(strategy, fixed_ratio, note, result)

    @property
    def backend_abs_gap(self) -> float:
        """The objective's lattice half-step: two values closer than this are equal."""
        return self._abs_gap

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
            solution_path=self.path,
        )

    def _ratio_floor(self, ratio: float, stop_at_gpu_hours: float) -> tuple[float, bool]:
        """GPU-hours no plan at ``ratio`` goes below, and whether that already rules the ratio out.

        From the layout sets' bounds when they apply (no solve), else from every period alone at the ratio.
        """
        alone = self.bounder.bounds(None)
        if self.layout_sets is not None and alone.servable.all():
            sets = self.layout_sets.sets(alone.gpus, fixed_ratio=ratio, first=1)
            floor = sets[0].gpu_hours_bound if sets else float("inf")
            return floor, floor >= stop_at_gpu_hours
        bounds = self.bounder.bounds(ratio, stop_at_gpu_hours=stop_at_gpu_hours)
        return bounds.hours_lower_bound(self.hours), not bounds.complete

    def best_fixed_ratio(self, dynamic: StrategyResult, static: StrategyResult) -> StrategyResult:
        """The best single prefill:decode ratio for the horizon.

        Candidates: every ratio the dynamic optimum uses in some period and the static
        plan's ratio (merged when within 3% of each other). The static plan itself holds
        its ratio in every period, so it is a fixed-ratio plan too: the result never
        uses more GPU-hours than static. Each candidate solve gets at most
        :data:`RATIO_SEARCH_NODE_LIMIT` branch-and-bound nodes (deterministic). The
        result's gap is certified over the candidates: a proven candidate counts with
        its optimum, an unproven one with its bound (or, without a plan, the dynamic
        optimum, which no fixed ratio beats); the gap is 0 when every candidate is proven.
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
            solution_path=static.solution_path,
        )
        lower = [static.gpu_hours * (1 - static.mip_gap)]  # no candidate (nor static) goes below these
        elapsed, solves, unproven = 0.0, 0, 0
        self.backend.set_node_limit(min(RATIO_SEARCH_NODE_LIMIT, self.node_limit))
        # The periods alone at each ratio bound its GPU-hours from below: solve the most promising
        # ratio first, and skip a ratio whose bound the best plan already meets.
        # Ratios the dynamic plan runs longest at go first: they tend to be best, and prune the others.
        at = ratios.replace([np.inf], np.nan).to_numpy(dtype=float)
        hours = np.tile(self.hours, 2)
        near = {r: float(hours[np.abs(at / r - 1) <= FIXED_RATIO_TOLERANCE].sum()) for r in candidates}
        floor: dict[float, float] = {}
        try:
            order = sorted(candidates, key=lambda r: (-near[r], r))
            for number, ratio in enumerate(order, 1):
                log.info("fixed_ratio: candidate ratio %d of %d, %.3g", number, len(order), ratio)
                floor[ratio], hopeless = self._ratio_floor(ratio, best.gpu_hours - self._abs_gap)
                if hopeless:  # some period unservable at this ratio, or the bound already loses
                    lower.append(min(floor[ratio], best.gpu_hours))
                    continue
                found = self.solve(
                    "fixed_ratio",
                    ratio,
                    allow_shortfall=False,
                    incumbent_ok=True,
                    cutoff_gpu_hours=best.gpu_hours,
                )
                elapsed += sum(r.solve_time_s for r in self._results)
                solves += len(self._results)
                if found is None:
                    limited = bool(self._results and self._results[-1].termination.limit)
                    unproven += limited
                    if limited:
                        lower.append(max(dynamic.gpu_hours, floor[ratio]))
                    continue
                at_least = found.gpu_hours * (1 - found.mip_gap)
                # Unproven only if it might still beat the best (a cutoff stop proves it cannot).
                might_win = at_least < best.gpu_hours - self._abs_gap
                unproven += found.termination != Termination.OPTIMAL and might_win
                lower.append(max(at_least, floor[ratio]))
                if found.gpu_hours < best.gpu_hours - 1e-9:
                    best = found
        finally:
            self.backend.set_node_limit(self.node_limit)
        best.solve_time_s, best.solves = elapsed, solves
        gap = max(0.0, 1 - min(lower) / best.gpu_hours) if best.gpu_hours else 0.0
        if gap > 0 and (unproven or best.termination != Termination.OPTIMAL):
            best.termination, best.mip_gap = Termination.NODE_LIMIT, gap
        elif gap == 0:
            best.termination, best.mip_gap = Termination.OPTIMAL, 0.0
        best.note = (
            f"best of {len(candidates)} candidate ratios ({', '.join(f'{r:.3g}' for r in candidates)}) "
            "and the static plan's"
            + (
                f"; NOT proven: {unproven} candidate(s) hit the {RATIO_SEARCH_NODE_LIMIT:,}-node limit, "
                f"GPU-hours within {gap:.2%} of the best over the candidates"
                if gap > 0
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
    node_limit: int = NODE_LIMIT,
    decompose: bool = True,
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
        node_limit=node_limit,
        decompose=decompose,
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
