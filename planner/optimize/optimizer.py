"""Solve one mode's model at an interactivity target: the optimum, then the largest plan achieving it.

One :class:`ModeOptimizer` per mode and instance builds its model and its
persistent backend once; every call of :meth:`ModeOptimizer.best_at` only
changes variable bounds and mutable parameters.

- ``max_tokens_per_s_per_gpu`` is a ratio (output tokens/s over GPUs), which a
  MIP cannot maximize directly. Dinkelbach's method solves it exactly with linear
  MIPs: maximize ``tokens - theta x gpus``; if the optimum is 0, ``theta`` is the
  best ratio, else set ``theta`` to the ratio just found and repeat. It converges
  superlinearly (2-3 solves in practice) and each step is exact. It starts a
  little below the previous frontier point's ratio, and each step starts from the
  plan the step before found (the backend's ``warm_start``).
- ``min_gpus`` minimizes GPUs and ``min_cost`` the price of the whole nodes the
  plan occupies, both serving ``traffic.requests_per_s``.
- ``max_throughput`` maximizes the requests/s served (output tokens/s at the
  traffic's mix) within the budget: the owned-fleet question. Its tie-break keeps
  that rate as the load to serve and minimizes GPUs.

Then a tie-break solve fixes the optimum as a constraint and maximizes output
tokens/s, so the plan reported is the largest one at the optimal value: unique
in its numbers, whichever solver runs. For the ratio, the Dinkelbach step just
below the optimum has usually found that plan already, and then no tie-break
solve runs (:meth:`ModeOptimizer._largest_from_below`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pyomo.core as pyo

from planner.errors import PlannerError, SpecError
from planner.optimize.backends import (
    SINGLE_PERIOD_HIGHS_OPTIONS,
    SolveResult,
    Termination,
    TimeLimitError,
    make_backend,
)
from planner.optimize.controls import Controls
from planner.optimize.formulation import build_model
from planner.optimize.model import MODE_POOLS, Candidates
from planner.optimize.packing import Geometry
from planner.optimize.plan import Plan
from planner.optimize.ratio_sets import (
    MAX_LAYOUTS_PER_SET,
    SetBounds,
    SetPlans,
    envelope,
    grid_fits,
    set_bounds,
    set_plans,
)
from planner.optimize.solution import KeptPlan, Solution, restore, snapshot, variables_of
from planner.specs import LOAD_OBJECTIVES

RATIO_TOLERANCE = 1e-9
"""Dinkelbach stops when ``tokens - theta x gpus`` is within this fraction of the tokens (exact
counts for one-shape traffic): the tokens/s per GPU found is optimal to this relative precision."""
MIX_RATIO_TOLERANCE = 1e-7
"""The same for a traffic mix, whose served rate is a solver value (feasibility tolerance ~1e-9)."""
TIE_BREAK_SLACK = 1e-7
"""The tie-break keeps the optimum within this relative slack (solver feasibility tolerance)."""
MAX_DINKELBACH_STEPS = 60
START_DROP_MIN, START_DROP_MAX = 0.1, 0.5
"""Dinkelbach starts this fraction below the previous optimum: twice the last drop, within these."""
FOLD_SAFETY = 10.0
"""How many times wider than the tie-break slack needs (per GPU of the budget) the step below must be
for its plan to count as the largest at the optimal ratio (:meth:`ModeOptimizer._largest_from_below`)."""
SET_SOLVES = 40
"""Restricted solves a frontier point may spend on layout sets (:meth:`ModeOptimizer._max_ratio_by_sets`)
before the full MIP answers it instead: a count, so the path taken never depends on machine load."""
DEFAULT_NODE_LIMIT = 1_000_000
"""Branch-and-bound nodes per solve: the deterministic limit (hitting it is an error naming
``--node-limit``); the time limit is only a safety net against a stuck solve."""


def time_limit_message(
    backend_name: str, time_limit_s: float, what: str, result: SolveResult | None = None
) -> str:
    """What to do when a solve hits its time limit (or, given its result, its node limit)."""
    other = "ortools" if backend_name == "highs" else "highs"
    if result is not None and result.termination == Termination.NODE_LIMIT:
        gap = f" (gap {result.mip_gap:.2%})" if result.has_solution else ""
        return (
            f"the {backend_name} solver hit its node limit on the {what} before proving optimality{gap}; "
            f"raise --node-limit, lower layouts_per_pool, or try --solver {other}"
        )
    return (
        f"the {backend_name} solver hit its {time_limit_s:g} s time limit on the {what}; raise "
        f"--time-limit-s, lower layouts_per_pool, or try --solver {other}"
    )


class ModeOptimizer:
    """The MIP of one deployment mode, built once, re-solved per target."""

    def __init__(
        self,
        mode: str,
        candidates: Candidates,
        geometry: Geometry,
        *,
        layouts_per_pool: int,
        exclusive_nodes: bool,
        objective: str = "max_tokens_per_s_per_gpu",
        load_requests_per_s: float | None = None,
        price_usd_per_gpu_hour: float | None = None,
        fixed_ratio: float | None = None,
        class_floors: np.ndarray | None = None,
        solver: str = "highs",
        time_limit_s: float = 60.0,
        node_limit: int | None = DEFAULT_NODE_LIMIT,
    ):
        self.mode = mode
        self.pools = MODE_POOLS[mode]
        self.candidates = candidates
        self.geometry = geometry
        self.objective = objective
        self.price_usd_per_gpu_hour = price_usd_per_gpu_hour
        self.time_limit_s = time_limit_s
        self.class_floors = class_floors
        self.model = build_model(
            candidates,
            geometry,
            pools=self.pools,
            layouts_per_pool=layouts_per_pool,
            exclusive_nodes=exclusive_nodes,
            fixed_ratio=fixed_ratio,
        )
        self.controls = Controls(self.model)
        if objective in LOAD_OBJECTIVES:
            if load_requests_per_s is None:
                raise PlannerError(f"objective {objective} needs traffic.requests_per_s (the load to serve)")
            self.controls.set_load(load_requests_per_s)
        if objective == "min_cost" and price_usd_per_gpu_hour is None:
            raise PlannerError(
                "objective min_cost needs hardware.price_usd_per_gpu_hour; set it or use min_gpus"
            )
        self.backend = make_backend(
            solver, self.model, time_limit_s, node_limit=node_limit, highs_options=SINGLE_PERIOD_HIGHS_OPTIONS
        )
        self.solution = Solution(self.model, candidates, geometry, self.pools, exclusive_nodes)
        self._exact = len(candidates.classes) == 1
        self._by_sets = (
            objective == "max_tokens_per_s_per_gpu"
            and fixed_ratio is None
            and len(self.pools) <= 2
            and layouts_per_pool <= MAX_LAYOUTS_PER_SET
        )
        """Ratio points are decomposed by the judged pool's layout set (:mod:`.ratio_sets`)."""
        self._layouts_per_pool = layouts_per_pool
        self._layout_gpus = candidates.layouts["gpus"].to_numpy(dtype=np.int64)
        self._layout_pools = candidates.layouts["pool"].to_numpy()
        self._masks: tuple[np.ndarray, np.ndarray] | None = None
        """The rows allowed and layouts usable at the current target."""
        self._envelope_memo: tuple[tuple[bytes, ...], np.ndarray | None] | None = None
        """The free pool's envelope and the masks it was computed for (:meth:`_free_pool_envelope`)."""
        self._theta_hint = 0.0
        # ((target, load), tokens/s per GPU) of the last ratio answer
        self._last_optimum = ((math.inf, math.inf), math.inf)
        self._ceiling = math.inf
        self._kept_by_start: set[int] | None = None
        self._drop = 0.0
        self._results: list[SolveResult] = []

    @property
    def ratio_tolerance(self) -> float:
        """Relative precision of the tokens/s per GPU found (exact for one shape; solver values in a mix)."""
        return RATIO_TOLERANCE if self._exact else MIX_RATIO_TOLERANCE

    @property
    def breakpoints(self) -> list[float]:
        """Distinct interactivities of the decode-like candidates, ascending: where the optimum can change."""
        return self.solution.breakpoints(self.class_floors)

    # ----------------------------------------------------------------- public

    def best_at(self, min_tokens_per_s_per_user: float) -> Plan | None:
        """The optimal plan whose every decode-like instance meets the target, or None if none does."""
        self._masks = self.solution.at_target(min_tokens_per_s_per_user, self.class_floors)
        self.controls.set_target(*self._masks)
        self._results = []
        # A higher target or load only removes plans: the optimum at a lower one bounds this one's.
        asked = (min_tokens_per_s_per_user, self.controls.load())
        before, optimum = self._last_optimum
        self._ceiling = optimum if all(a >= b for a, b in zip(asked, before, strict=True)) else math.inf
        solve = {"max_tokens_per_s_per_gpu": self._max_ratio, "max_throughput": self._max_throughput}
        if not solve.get(self.objective, self._min_resources)():
            return None
        if self.objective == "max_tokens_per_s_per_gpu":
            self._last_optimum = (asked, self._theta_hint)
        if self.solution.served_requests_per_s() <= 0:
            # Feasible only by serving nothing: some class has no layout at this target.
            return None
        return self.solution.plan(self.mode, min_tokens_per_s_per_user, self._results, self._main)

    def max_requests_per_s(self, min_tokens_per_s_per_user: float) -> float | None:
        """The most requests/s the budget can serve at a target, ignoring the load (for diagnoses)."""
        self.controls.set_target(*self.solution.at_target(min_tokens_per_s_per_user, self.class_floors))
        self._results = []
        saved = self.controls.load()
        self.controls.set_load(0.0)
        self.controls.set_weights(tokens=1.0)
        try:
            result = self._solve()
        finally:
            self.controls.set_load(saved)
        return None if result.termination != Termination.OPTIMAL else self.solution.served_requests_per_s()

    def write_lp(self, path, min_tokens_per_s_per_user: float) -> None:
        """Write the model as set for the first solve at this target (CPLEX LP format, readable names)."""
        self.controls.set_target(*self.solution.at_target(min_tokens_per_s_per_user, self.class_floors))
        if self.objective == "max_tokens_per_s_per_gpu":
            self.controls.set_weights(tokens=1.0, gpu=self._theta_hint)
        elif self.objective == "max_throughput":
            self.controls.set_weights(tokens=1.0)
        else:
            self._resource_weights()
        import pyomo.environ  # noqa: F401 - registers the LP writer (the solve path needs only pyomo.core)
        from pyomo.opt import ProblemFormat

        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.model.write(
                str(path), format=ProblemFormat.cpxlp, io_options={"symbolic_solver_labels": True}
            )
        except OSError as err:
            raise SpecError(
                f"cannot write the model to {path} ({err.strerror}); give a writable file", field="--write-lp"
            ) from None

    # ----------------------------------------------------------------- internals

    def _solve(self, *, presolve: bool = True) -> SolveResult:
        result = self.backend.solve(presolve=presolve)
        self._results.append(result)
        if result.termination.limit:
            raise TimeLimitError(
                time_limit_message(self.backend.name, self.time_limit_s, f"{self.mode} model", result)
            )
        return result

    def _max_ratio(self) -> bool:
        if self._by_sets and self.controls.load() == 0:
            decided = self._max_ratio_by_sets()
            if decided is not None:
                return decided
        tolerance = self.ratio_tolerance
        theta = self._start_ratio()
        if self._theta_hint > 0:
            self._start_from_unjudged_pools()
        below = None  # the last step whose optimum was positive: (its theta, its plan)
        at_ceiling = False
        for _ in range(MAX_DINKELBACH_STEPS):
            self.controls.set_weights(tokens=1.0, gpu=theta)
            result = self._solve()
            if result.termination == Termination.INFEASIBLE:
                return False
            tokens, gpus = self.solution.tokens(), self.solution.gpus()
            gap = tokens - theta * gpus
            if gap <= tolerance * max(tokens, 1.0):
                if gap < -tolerance * max(tokens, 1.0):
                    theta = tokens / gpus  # the start overshot: go on from a feasible ratio
                    self.backend.warm_start()  # worth 0 at the new ratio: only a better plan is news
                    continue
                break
            below = (theta, snapshot(self.model))
            theta = tokens / gpus  # strictly larger than before: no cycling
            if theta >= self._ceiling * (1 - tolerance):
                at_ceiling = True  # as good as a lower target's optimum: optimal, no proof step needed
                break
            self.backend.warm_start()
        else:  # pragma: no cover - Dinkelbach converges finitely on a finite feasible set
            raise RuntimeError("Dinkelbach's method did not converge; this is a bug")
        if self._theta_hint > 0:
            self._drop = max(0.0, 1.0 - theta / self._theta_hint)
        self._theta_hint = theta
        # The last step's objective is ~0: state its gap relative to the plan's tokens/s.
        self._main = result if at_ceiling else dataclasses.replace(result, scale=self.solution.tokens())
        if below is not None and self._largest_from_below(theta, *below):
            return True
        self._tie_break(theta)
        return True

    def _max_ratio_by_sets(self) -> bool | None:
        """The best ratio by layout set: solve the sets in decreasing bound order until a plan meets the next.

        Every plan's judged pool (decode, or aggregated) uses some set of at most
        ``layouts_per_pool`` usable layouts, and no plan on a set beats its bound
        (:mod:`~planner.optimize.ratio_sets`), so once the best plan found is within the ratio
        tolerance of every set not yet solved it is optimal. The MIP restricted to a set (the other
        pool's layouts left free) is tiny. Then the largest plan at that ratio: sets in decreasing
        order of their most tokens/s at it, the same way. Returns None (the full MIP decides) past
        :data:`SET_SOLVES` solves or the enumeration's size limits.
        """
        allowed, usable = self._masks
        decomposed = self._set_bounds()
        if decomposed is None:
            return None
        judged, bounds = decomposed
        tolerance = self.ratio_tolerance
        ratio_bound = np.minimum(bounds.ratio, self._ceiling * (1 + tolerance))
        best: tuple[float, SolveResult] | None = None
        kept = KeptPlan(self.model)
        for spent, s in enumerate(np.argsort(-ratio_bound, kind="stable")):
            if ratio_bound[s] <= 0 or (best is not None and ratio_bound[s] <= best[0] * (1 + tolerance)):
                break
            if spent >= SET_SOLVES:
                self.controls.set_target(allowed, usable)
                return None
            kept.before_solve()
            optimum = self._set_optimum(self._set_mask(judged, s), ratio_bound[s])
            if optimum is not None and (best is None or optimum[0] > best[0]):
                best = optimum
                kept.keep_loaded()
        if best is None:
            self.controls.set_target(allowed, usable)
            return False
        theta, result = best
        kept.load()
        if self._theta_hint > 0:
            self._drop = max(0.0, 1.0 - theta / self._theta_hint)
        self._theta_hint = theta
        self._main = dataclasses.replace(result, scale=self.solution.tokens())
        self._largest_by_sets(judged, bounds, theta)
        self.controls.set_target(allowed, usable)
        return True

    def _set_bounds(self) -> tuple[SetPlans, SetBounds] | None:
        """The judged pool's sets and their bounds at the current target, or None past the size limits."""
        usable = self._masks[1]
        judged_layouts = int((usable & (self._layout_pools == self.pools[-1])).sum())
        sets = judged_layouts * (judged_layouts + 1) // 2  # at most this many: checked before enumerating
        if not grid_fits(sets, self.geometry.max_gpus, len(self.pools)):
            return None  # the full MIP answers
        judged = self._pool_set_plans(self.pools[-1])
        other = self._free_pool_envelope() if len(self.pools) > 1 else None
        if judged is None or (len(self.pools) > 1 and other is None):
            return None
        bounds = set_bounds(judged, other, self.geometry.max_gpus)
        return None if bounds is None else (judged, bounds)

    def _free_pool_envelope(self) -> np.ndarray | None:
        """The free (prefill) pool's :func:`envelope` at the current target, or None past the size limits.

        Its usable layouts and allowed rows rarely change between targets (prefill rows are
        allowed at every target), so the envelope is kept for the masks it was computed for.
        """
        pool = self.pools[0]
        allowed, usable = self._masks
        key = (
            usable[self._layout_pools == pool].tobytes(),
            allowed[self.candidates.pools == pool].tobytes(),
            self._shares().tobytes(),
        )
        if self._envelope_memo is None or self._envelope_memo[0] != key:
            plans = self._pool_set_plans(pool)
            self._envelope_memo = (key, None if plans is None else envelope(plans, self.geometry.max_gpus))
        return self._envelope_memo[1]

    def _pool_set_plans(self, pool: str) -> SetPlans | None:
        """Every plan of one pool's usable layouts at the current target (:func:`set_plans`)."""
        allowed, usable = self._masks
        c = self.candidates
        layouts = np.flatnonzero(usable & (self._layout_pools == pool))
        rows = np.flatnonzero(allowed & usable[c.layout_of] & (c.pools == pool))
        column = np.full(len(usable), -1)
        column[layouts] = np.arange(len(layouts))
        rates = np.zeros((len(layouts), len(c.classes)))
        rates[column[c.layout_of[rows]], c.class_of[rows]] = c.requests_per_s[rows]
        shares = self._shares()
        gpus, budget = self._layout_gpus[layouts], self.geometry.max_gpus
        plans = set_plans(rates, gpus, shares, c.osl_tokens, budget, self._layouts_per_pool)
        if plans is None:
            return None
        return dataclasses.replace(plans, sets=np.where(plans.sets >= 0, layouts[plans.sets], -1))

    def _shares(self) -> np.ndarray:
        """The classes' shares of the frontier's traffic (period 0)."""
        return np.array([pyo.value(self.model.share[k, 0]) for k in self.model.K])

    def _set_mask(self, judged: SetPlans, s: int) -> np.ndarray:
        """Usable layouts with the judged pool restricted to its set ``s``."""
        mask = self._masks[1] & (self._layout_pools != self.pools[-1])
        members = judged.sets[s]
        mask[members[members >= 0]] = True
        return mask

    def _set_optimum(self, usable: np.ndarray, bound: float) -> tuple | None:
        """Dinkelbach on one layout set from its bound: ``(ratio, result)`` with the plan loaded, or None."""
        self.controls.set_target(self._masks[0], usable)
        tolerance, theta = self.ratio_tolerance, bound
        for _ in range(MAX_DINKELBACH_STEPS):
            self.controls.set_weights(tokens=1.0, gpu=theta)
            result = self._solve()
            if result.termination == Termination.INFEASIBLE:
                return None
            tokens, gpus = self.solution.tokens(), self.solution.gpus()
            if gpus <= 0:
                return None
            if abs(tokens - theta * gpus) <= tolerance * max(tokens, 1.0):
                return theta, result
            theta = tokens / gpus  # below the bound: packing binds; or above it by solver tolerance
            self.backend.warm_start()
        raise RuntimeError("Dinkelbach did not converge on a layout set; this is a bug")  # pragma: no cover

    def _largest_by_sets(self, judged: SetPlans, bounds: SetBounds, theta: float) -> None:
        """Load the largest plan of ratio ``theta`` (the optimum, loaded): sets by their tokens bound."""
        if self.solution.gpus() >= self.geometry.max_gpus:
            return  # every optimal plan has tokens = theta x GPUs: one on the whole budget is the largest
        floor = theta * (1 - TIE_BREAK_SLACK)
        tokens_bound = bounds.tokens_at(floor * (1 - TIE_BREAK_SLACK))
        best_tokens, kept = self.solution.tokens(), KeptPlan(self.model, loaded=True)
        for s in np.argsort(-tokens_bound, kind="stable"):
            if tokens_bound[s] <= best_tokens * (1 + RATIO_TOLERANCE):
                break
            self.controls.set_target(self._masks[0], self._set_mask(judged, s))
            self.controls.set_weights(tokens=1.0)
            kept.before_solve()
            with self.controls.capped(ratio_floor=floor):
                # The set's bound says a larger plan may exist: short of it, packing binds, or presolve slips.
                result = self._solve_for_larger(best_tokens, larger_possible=True)
            if result.termination != Termination.OPTIMAL:
                continue
            tokens, gpus = self.solution.tokens(), self.solution.gpus()
            if tokens > best_tokens * (1 + RATIO_TOLERANCE) and tokens >= floor * gpus:
                best_tokens = tokens
                kept.keep_loaded()
                self._main = result
        kept.load()

    def _start_ratio(self) -> float:
        """Dinkelbach's first ratio: a little below the previous target's optimum.

        The optimum only falls as the target rises. Starting below it, every step's optimum is
        positive until the last, and the last positive step's plan is the largest at the optimal
        ratio (:meth:`_largest_from_below`); starting above it, the first plan found is the one
        losing least, often a small plan of a poor ratio, and costs more steps.
        """
        if self._theta_hint <= 0:
            return 0.0
        return self._theta_hint * (1.0 - min(max(2.0 * self._drop, START_DROP_MIN), START_DROP_MAX))

    def _start_from_unjudged_pools(self) -> None:
        """Hand the next solve the loaded plan's prefill instances, the rest left open (a partial start).

        A higher target forbids only decode-like layouts, so the previous optimum's prefill pool is
        usually part of a good plan at the new target; the solver completes it (HiGHS by a small
        sub-MIP), which makes the first Dinkelbach step of a point cheaper. Only a starting point.
        """
        m = self.model
        if self._kept_by_start is None:
            pool_of = self.candidates.layouts["pool"].to_numpy()
            unjudged = set(self.pools[:-1])
            self._kept_by_start = {
                id(var)
                for counts in (m.copies, m.spanning_copies, m.use)
                for index, var in counts.items()
                if pool_of[index[0]] in unjudged
            }
        if not self._kept_by_start:
            return
        for var in variables_of(m):
            if id(var) not in self._kept_by_start:
                var.set_value(None, skip_validation=True)
        self.backend.warm_start()

    def _largest_from_below(self, theta: float, theta_below: float, plan_below: tuple[list, list]) -> bool:
        """Load the largest plan at the optimal ratio ``theta`` if the last step below already found it.

        The step at ``theta_below < theta`` maximized ``tokens - theta_below x GPUs``: among plans
        of ratio ``theta`` that is ``(theta - theta_below) x GPUs``, so its plan is the largest of
        them, if its own ratio is ``theta`` and the margin is wide enough that a larger plan within
        the tie-break's slack would have beaten it by more than the solver's gaps. Else False (the
        explicit tie-break decides).
        """
        margin = TIE_BREAK_SLACK * (self.geometry.max_gpus + 1) * FOLD_SAFETY
        if theta_below > theta * (1 - margin):
            return False
        optimum = snapshot(self.model)
        restore(plan_below)
        tokens, gpus = self.solution.tokens(), self.solution.gpus()
        if gpus > 0 and tokens >= theta * (1 - TIE_BREAK_SLACK) * gpus:
            return True
        restore(optimum)
        return False

    def _tie_break(self, theta: float) -> None:
        """The largest plan at the optimal tokens/s per GPU ``theta`` (the optimum is loaded)."""
        # Every optimal plan has tokens = theta x GPUs: a plan on the whole budget is already the largest.
        optimum = snapshot(self.model)
        tokens, gpus = self.solution.tokens(), self.solution.gpus()
        if gpus >= self.geometry.max_gpus:
            return
        self.controls.set_weights(tokens=1.0)
        with self.controls.capped(ratio_floor=theta * (1 - TIE_BREAK_SLACK)):
            self.backend.warm_start()
            # A second copy of the plan fitting the GPU budget is when HiGHS 1.12's presolve has slipped.
            result = self._solve_for_larger(tokens, larger_possible=2 * gpus <= self.geometry.max_gpus)
        # The optimum is feasible for the tie-break, so a smaller or less efficient answer is a solver
        # slip (HiGHS 1.12's presolve has returned one as "optimal"): keep the optimum then.
        better = result.termination == Termination.OPTIMAL and self.solution.tokens() >= tokens * (
            1 - RATIO_TOLERANCE
        )
        if better and self.solution.tokens() >= theta * (1 - TIE_BREAK_SLACK) * self.solution.gpus():
            self._main = result  # its gap is relative to tokens/s, a meaningful scale
        else:
            restore(optimum)

    def _solve_for_larger(self, tokens: float, *, larger_possible: bool) -> SolveResult:
        """A tie-break solve (most tokens/s, the optimum kept as a floor) beyond a plan of ``tokens``.

        When it finds nothing larger although ``larger_possible``, it is solved again without
        presolve: HiGHS 1.12's presolve has returned a smaller plan as "optimal" on this solve
        (tests/test_optimize.py has the case).
        """
        result = self._solve()
        if (
            larger_possible
            and result.termination == Termination.OPTIMAL
            and self.solution.tokens() <= tokens * (1 + RATIO_TOLERANCE)
        ):
            result = self._solve(presolve=False)
        return result

    def _max_throughput(self) -> bool:
        """The most requests/s the budget serves, then the fewest GPUs serving that many."""
        self.controls.set_weights(tokens=1.0)
        result = self._solve()
        if result.termination == Termination.INFEASIBLE:
            return False
        self._main = result
        served = self.solution.served_requests_per_s()
        optimum = snapshot(self.model)
        self.controls.set_load(served * (1 - TIE_BREAK_SLACK))
        self.controls.set_weights(gpu=1.0)
        self.backend.warm_start()  # the plan serves that load: a starting incumbent
        try:
            result = self._solve()
        finally:
            self.controls.set_load(0.0)
        if result.termination != Termination.OPTIMAL or self.solution.served_requests_per_s() < served * (
            1 - TIE_BREAK_SLACK
        ):
            restore(optimum)
        return True

    def _resource_weights(self) -> None:
        if self.objective == "min_gpus":
            self.controls.set_weights(gpu=1.0)
        else:
            node_price = (self.price_usd_per_gpu_hour or 0.0) * self.geometry.gpus_per_node
            self.controls.set_weights(node=node_price)

    def _min_resources(self) -> bool:
        m = self.model
        self._resource_weights()
        result = self._solve()
        if result.termination == Termination.INFEASIBLE:
            return False
        self._main = result
        if self.objective == "min_gpus":
            cap = {"gpus": round(pyo.value(m.total_gpus[0]))}
        else:
            cap = {"nodes": round(pyo.value(m.nodes_used[0]))}
        self.controls.set_weights(tokens=1.0)
        with self.controls.capped(**cap):
            self.backend.warm_start()  # the minimal plan meets the cap
            result = self._solve()  # if it fails, the minimal plan is still loaded: keep it
            if self.objective == "min_cost" and result.termination == Termination.OPTIMAL:
                # Equal cost and tokens/s may still differ in GPUs: the fewest, so the plan is unique.
                tokens = pyo.value(m.output_tokens_per_s[0])
                self.controls.set_weights(gpu=1.0)
                with self.controls.capped(tokens_floor=tokens * (1 - TIE_BREAK_SLACK)):
                    self.backend.warm_start()
                    self._solve()
        return True
