"""The one place that changes a built model: targets, weights, loads, caps and strategy.

Why it exists
    A persistent solver re-solves a model after its mutable parameters and variable
    bounds change. When every study writes those through these typed setters, what a
    study can change is listed in one class, a change cannot miss a period, and a
    faster path to the solver (pushing bounds and costs straight to it) has one place
    to go. Nothing else assigns ``.value`` or calls ``setub`` on the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pyomo.core as pyo

PerPeriod = float | Sequence[float] | np.ndarray
"""One value for every period, or one per period."""


BOUNDS_VERSION = "_planner_bounds_version"
"""Model attribute counting the bound changes :class:`Controls` made: a backend re-reads the
variables' bounds only when it moved (a model without it, e.g. the fleet MIP, is always re-read)."""
MOVED_VARIABLES = "_planner_moved_variables"
"""Model attribute listing, in order, every variable whose bounds :class:`Controls` changed: a backend
that read the bounds once re-reads only the variables listed since (a frontier point moves a few
dozen of 2,000)."""


def _per_period(value: PerPeriod, periods: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=float), (periods,))


class Controls:
    """Typed setters of one model's parameters and bounds (see :mod:`planner.optimize.formulation`)."""

    def __init__(self, model: pyo.ConcreteModel):
        self.model = model
        self.periods = len(model.T)
        self._target: tuple[np.ndarray, np.ndarray] | None = None
        """The masks :meth:`set_target` last applied."""
        self._use_periods = sorted({period for _layout, period in model.use})
        """Periods with their own layout choice (all with relayout, else period 0)."""
        setattr(model, BOUNDS_VERSION, 0)
        setattr(model, MOVED_VARIABLES, [])

    def _bounds_moved(self, variables: list) -> None:
        getattr(self.model, MOVED_VARIABLES).extend(variables)
        setattr(self.model, BOUNDS_VERSION, getattr(self.model, BOUNDS_VERSION) + 1)

    # ----------------------------------------------------------------- objective

    def set_weights(
        self, *, tokens: float = 0.0, gpu: PerPeriod = 0.0, node: PerPeriod = 0.0, unserved: PerPeriod = 0.0
    ) -> None:
        """Objective ``tokens x OSL lam - gpu x GPUs - node x nodes - unserved x e`` (per period)."""
        m = self.model
        m.tokens_weight.value = float(tokens)
        gpu_t, node_t = _per_period(gpu, self.periods), _per_period(node, self.periods)
        unserved_t = _per_period(unserved, self.periods)
        for t in m.T:
            m.gpu_weight[t].value = float(gpu_t[t])
            m.node_weight[t].value = float(node_t[t])
            m.unserved_weight[t].value = float(unserved_t[t])

    # ----------------------------------------------------------------- what may be used

    def set_target(self, allowed_rows: np.ndarray, usable_layouts: np.ndarray) -> None:
        """Rows that may carry flow and layouts that may be used (boolean masks): bounds, not a rebuild.

        Only bounds that differ from the previous target's are set (neighbouring targets differ in a
        few rows); the solver backend reads the changed bounds before its next solve.
        """
        m = self.model
        rows, layouts = np.asarray(allowed_rows, dtype=bool), np.asarray(usable_layouts, dtype=bool)
        if self._target is None:
            moved_rows, moved_layouts = np.ones(len(rows), bool), np.ones(len(layouts), bool)
        else:
            moved_rows, moved_layouts = rows != self._target[0], layouts != self._target[1]
        self._target = (rows.copy(), layouts.copy())
        moved = []
        for r in np.flatnonzero(moved_rows).tolist():
            for t in m.T:
                m.flow[r, t].setub(None if rows[r] else 0.0)
                moved.append(m.flow[r, t])
        for layout in np.flatnonzero(moved_layouts).tolist():
            for period in self._use_periods:
                m.use[layout, period].setub(1 if layouts[layout] else 0)
                moved.append(m.use[layout, period])
        self._bounds_moved(moved)

    # ----------------------------------------------------------------- traffic

    def set_load(self, requests_per_s: PerPeriod, shares: np.ndarray | None = None) -> None:
        """Load to serve per period and, optionally, class shares ``shares[t, k]``."""
        m = self.model
        load = _per_period(requests_per_s, self.periods)
        for t in m.T:
            m.load_requests_per_s[t].value = float(load[t])
            if shares is not None:
                for k in m.K:
                    m.share[k, t].value = float(shares[t, k])

    def load(self, t: int = 0) -> float:
        """Load to serve in period ``t``."""
        return float(self.model.load_requests_per_s[t].value)

    def set_unserved_caps(self, caps: np.ndarray | None) -> None:
        """Most unserved requests/s per period (None: unlimited)."""
        for t in self.model.T:
            self.model.unserved_requests_per_s[t].setub(None if caps is None else float(caps[t]))
        self._bounds_moved([self.model.unserved_requests_per_s[t] for t in self.model.T])

    # ----------------------------------------------------------------- caps

    @contextmanager
    def capped(
        self,
        *,
        gpus: float | None = None,
        nodes: float | None = None,
        ratio_floor: float | None = None,
        tokens_floor: float | None = None,
    ) -> Iterator[None]:
        """In the block: at most ``gpus`` GPUs and ``nodes`` nodes, at least ``ratio_floor`` tokens/s per GPU.

        ``tokens_floor``: at least that many output tokens/s (an optimum a later tie-break keeps).
        """
        m = self.model
        params = (m.gpu_cap, m.node_cap, m.ratio_floor, m.tokens_floor)
        saved = [p.value for p in params]
        for param, value in zip(params, (gpus, nodes, ratio_floor, tokens_floor), strict=True):
            if value is not None:
                param.value = float(value)
        try:
            yield
        finally:
            for param, value in zip(params, saved, strict=True):
                param.value = value

    # ----------------------------------------------------------------- study

    def set_strategy(self, *, static: bool, fixed_ratio: float | None) -> None:
        """Freeze the deployment over time (``static``) and/or hold prefill:decode GPUs at ``fixed_ratio``."""
        m = self.model
        m.static.value = 1.0 if static else 0.0
        m.ratio_enforced.value = 1.0 if fixed_ratio is not None else 0.0
        m.fixed_ratio.value = float(fixed_ratio or 1.0)

    def set_elastic_limits(self, *, ramp_gpus: float | None, min_pool_gpus: float) -> None:
        """Most GPUs added or removed between periods (None: the budget) and the least GPUs per pool."""
        m = self.model
        if ramp_gpus is not None:
            m.ramp_gpus.value = float(ramp_gpus)
        m.min_pool_gpus.value = float(min_pool_gpus)

    def set_gpu_floors(self, gpus: np.ndarray | None) -> None:
        """Valid lower bounds on GPUs per period (multi-period models; None: none)."""
        m = self.model
        for t in m.T:
            m.gpus_floor[t].value = 0.0 if gpus is None else float(gpus[t])
