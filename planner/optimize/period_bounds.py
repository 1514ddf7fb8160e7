"""Per-period lower bounds on GPUs for multi-period studies, and the layouts that reach them.

Why it exists
    The multi-period MIP's LP bound is weak (about 35% below the optimum on the
    DeepSeek-R1 day): it relaxes whole instances and the horizon-wide layout choice.
    Each period alone, with its layouts chosen freely, needs at least ``LB_t`` GPUs;
    every strategy (dynamic, fixed ratio, static) is a restriction of that, so
    ``GPUs_t >= LB_t`` is a valid inequality and ``sum_t hours_t LB_t`` bounds the
    optimum from below. A plan that meets the bound is proven optimal without any
    branch and bound, and the layouts the periods' optima use are a good guess for the
    horizon's layouts. Periods with the same load and mix are solved once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.optimize.backends import Termination, make_backend
from planner.optimize.controls import Controls
from planner.optimize.formulation import build_model
from planner.optimize.model import Candidates
from planner.optimize.packing import Geometry
from planner.optimize.solution import Solution

PERIOD_NODE_LIMIT = 500
"""Branch-and-bound nodes per period: past it the solver's bound (still valid) is the period's bound."""


@dataclass(frozen=True)
class PeriodBounds:
    """The fewest GPUs each period needs on its own, and which layouts its optimum used."""

    gpus: np.ndarray
    """``LB_t``: the fewest GPUs serving period ``t`` at its SLO (0 where it cannot be served)."""
    servable: np.ndarray
    """Per period: True when some plan serves it alone (False: no strategy serves it either)."""
    layout_hours: np.ndarray
    """Per layout: hours of the periods whose optimum uses it (how popular it is over the horizon)."""
    solves: int
    complete: bool = True
    """False when the periods were not all solved (the bound counts the solved ones, a valid bound)."""

    def hours_lower_bound(self, hours: np.ndarray) -> float:
        """GPU-hours no plan serving every period can go below (infinite if some period cannot be served)."""
        if not self.servable.all():
            return float("inf")
        return float((self.gpus * hours).sum())

    def static_lower_bound(self, hours: np.ndarray) -> float:
        """GPU-hours no static deployment can go below (the busiest period's GPUs, all the time)."""
        if not self.servable.all():
            return float("inf")
        return float(self.gpus.max() * hours.sum())

    def popular_layouts(self, pools_of_layouts: np.ndarray, per_pool: int) -> np.ndarray:
        """The ``per_pool`` most used layouts of each pool (boolean mask over layouts)."""
        keep = np.zeros(len(self.layout_hours), dtype=bool)
        for pool in np.unique(pools_of_layouts):
            ids = np.flatnonzero((pools_of_layouts == pool) & (self.layout_hours > 0))
            ranked = ids[np.argsort(-self.layout_hours[ids], kind="stable")]
            keep[ranked[:per_pool]] = True
        return keep


class PeriodBounder:
    """A one-period model of the same candidates, re-solved per distinct period (and ratio)."""

    def __init__(
        self,
        candidates: Candidates,
        geometry: Geometry,
        *,
        pools: tuple[str, ...],
        layouts_per_pool: int,
        exclusive_nodes: bool,
        loads: np.ndarray,
        shares: np.ndarray,
        hours: np.ndarray,
        allowed_rows: np.ndarray,
        usable_layouts: np.ndarray,
        min_pool_gpus: float,
        solver: str = "highs",
    ):
        self.loads, self.shares, self.hours = loads, shares, hours
        self.layouts = len(candidates.layouts)
        self.model = build_model(
            candidates,
            geometry,
            pools=pools,
            layouts_per_pool=layouts_per_pool,
            exclusive_nodes=exclusive_nodes,
            fixed_ratio=None,
        )
        self.controls = Controls(self.model)
        self.controls.set_target(allowed_rows, usable_layouts)
        self.controls.set_elastic_limits(ramp_gpus=None, min_pool_gpus=min_pool_gpus)
        self.controls.set_weights(gpu=1.0)
        self.backend = make_backend(solver, self.model, 600.0, abs_gap=0.5, node_limit=PERIOD_NODE_LIMIT)
        self.solution = Solution(self.model, candidates, geometry, pools, exclusive_nodes)
        self._cache: dict[float | None, PeriodBounds] = {}

    def bounds(self, fixed_ratio: float | None = None, *, stop_at_gpu_hours: float = np.inf) -> PeriodBounds:
        """Every period alone, min GPUs, layouts free (prefill:decode GPUs at ``fixed_ratio`` if given).

        Stops early (``complete`` False) once the GPU-hours bound reaches ``stop_at_gpu_hours`` or a
        period cannot be served: the bound is then already enough to rule the question out.
        """
        if fixed_ratio in self._cache:
            return self._cache[fixed_ratio]
        self.controls.set_strategy(static=False, fixed_ratio=fixed_ratio)
        gpus = np.zeros(len(self.loads))
        servable = np.zeros(len(self.loads), dtype=bool)
        layout_hours = np.zeros(self.layouts)
        seen: dict[tuple, tuple[float, np.ndarray]] = {}
        for t in range(len(self.loads)):
            key = (round(float(self.loads[t]), 12), *np.round(self.shares[t], 12).tolist())
            if key not in seen:
                self.controls.set_load(float(self.loads[t]), self.shares[t : t + 1])
                result = self.backend.solve()
                if result.termination == Termination.OPTIMAL:
                    seen[key] = (self.solution.gpus(), self.solution.counts() > 0, True)
                elif result.termination.limit and result.bound == result.bound:
                    # Unproven: the solver's bound still bounds the GPUs (a whole number) from below.
                    used = self.solution.counts() > 0 if result.has_solution else np.zeros(self.layouts, bool)
                    seen[key] = (float(np.ceil(-result.bound - 1e-6)), used, True)
                elif result.termination.limit:
                    seen[key] = (0.0, np.zeros(self.layouts, dtype=bool), True)  # nothing known
                else:
                    seen[key] = (0.0, np.zeros(self.layouts, dtype=bool), False)
            gpus[t], used, servable[t] = seen[key]
            layout_hours[used] += self.hours[t]
            if not servable[t] or (gpus[: t + 1] * self.hours[: t + 1]).sum() >= stop_at_gpu_hours:
                servable[t + 1 :] = servable[t]  # unknown beyond: only the partial bound counts
                return PeriodBounds(gpus, servable, layout_hours, len(seen), complete=False)
        self._cache[fixed_ratio] = PeriodBounds(gpus, servable, layout_hours, len(seen))
        return self._cache[fixed_ratio]
