"""Persistent MIP solvers behind one small interface: HiGHS (default) and OR-Tools (SCIP).

Why two
    The frontier claims optimality, so a second, independent solver on the very
    same model is the cheapest audit: ``--solver ortools`` must reproduce every
    optimum HiGHS finds (``tests/test_optimize.py``).

Why persistent
    A frontier is dozens of solves of one model whose only changes are mutable
    parameters and variable bounds. :class:`HighsBackend` reads the Pyomo model once
    into arrays (:mod:`~planner.optimize.linear_image`), keeps its own ``highspy``
    model, and before each solve pushes only the bounds, coefficients and costs that
    changed, as numpy arrays: on a frontier's small models Pyomo's persistent interface,
    which re-evaluates every parameter expression per solve, cost more CPU than HiGHS.
    OR-Tools has no Pyomo interface, so :class:`OrToolsBackend` translates the Pyomo
    model into an OR-Tools ``model_builder`` model once, remembers which coefficients
    and bounds depend on parameters, and re-evaluates only those before each solve.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import version

import numpy as np
import pyomo.core as pyo
from pyomo.core.expr.visitor import identify_mutable_parameters
from pyomo.repn import generate_standard_repn

from planner.errors import PlannerError
from planner.optimize.controls import BOUNDS_VERSION, MOVED_VARIABLES
from planner.optimize.linear_image import COEFFICIENT, COST, OFFSET, ROW_LOWER, ROW_UPPER, read_model
from planner.progress import solver_log

log = logging.getLogger(__name__)

SOLVERS = ("highs", "ortools")

ABS_GAP = 1e-7
"""Absolute optimality gap: far below any difference a plan's tokens/s could show."""
REL_GAP = 1e-9
"""Relative optimality gap: the frontier is exact, not 0.01%-good (HiGHS's default)."""

SINGLE_PERIOD_HIGHS_OPTIONS = {
    "mip_allow_restart": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
}
"""HiGHS search settings for one-period models (names as in the HiGHS options reference,
https://ergo-code.github.io/HiGHS/stable/options/definitions/). After presolve a frontier
model is small (about 100 rows for a 5-class mix) and each Dinkelbach step starts from a known
plan (``warm_start``), so restarts and the sub-MIP and feasibility-jump heuristics cost far
more than they find: without them the 5-class mix frontier takes about 7x less HiGHS time, a
one-shape frontier about 2x less (``benchmarks/scale.py``).
Many-period (elastic) models keep HiGHS's defaults: without restarts the DeepSeek-R1 elastic
day's fixed-ratio solve hit its node limit. Settings change how fast an optimum is proven,
never which optimum (the gaps above still hold)."""


class Termination(StrEnum):
    """How a solve ended (its value is what the CSV files print)."""

    OPTIMAL = "optimal"
    """Proven optimal within the gaps."""
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    """Stopped by the wall-clock safety net before a proof (depends on machine load)."""
    NODE_LIMIT = "node_limit"
    """Stopped by the branch-and-bound node limit before a proof (deterministic); an incumbent
    carries its gap."""

    @property
    def proven(self) -> bool:
        """True when the answer is proven (optimal, or proven infeasible)."""
        return self in (Termination.OPTIMAL, Termination.INFEASIBLE)

    @property
    def limit(self) -> bool:
        """True when a solver limit stopped the solve."""
        return self in (Termination.TIME_LIMIT, Termination.NODE_LIMIT)


@dataclass(frozen=True)
class SolveResult:
    """What one solve returned; on ``optimal`` the Pyomo variables hold the solution."""

    termination: Termination
    objective: float
    bound: float
    solve_time_s: float
    has_solution: bool = False
    """True when a solution is loaded (always on ``optimal``; on a limit if one was found)."""
    scale: float | None = None
    """What the gap is relative to (default: the objective). Dinkelbach's last step has an
    objective near 0, so its gap is stated relative to the plan's tokens/s instead."""

    @property
    def mip_gap(self) -> float:
        """Relative gap between the incumbent and the bound (0 when proven optimal)."""
        if self.termination == Termination.OPTIMAL and self.bound != self.bound:
            return 0.0
        scale = max(abs(self.objective if self.scale is None else self.scale), 1e-9)
        return abs(self.bound - self.objective) / scale


class TimeLimitError(PlannerError):
    """A solve hit its time limit before proving optimality."""


class HighsBackend:
    """HiGHS through highspy on the model's :mod:`~planner.optimize.linear_image`: only changes are pushed."""

    name = "highs"

    def __init__(
        self,
        model: pyo.ConcreteModel,
        time_limit_s: float,
        abs_gap: float = ABS_GAP,
        node_limit: int | None = None,
        mip_options: dict | None = None,
    ):
        import highspy

        self._highspy = highspy
        self.model = model
        self.version = version("highspy")
        self.node_limit = node_limit
        self.mip_options = dict(mip_options or {})
        """HiGHS options set before every solve (names as in the HiGHS options reference)."""
        self._image = image = read_model(model)
        self._highs = h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        for option, value in (("mip_rel_gap", REL_GAP), ("mip_abs_gap", abs_gap), ("threads", 1)):
            h.setOptionValue(option, value)
        self.set_time_limit(time_limit_s)
        n = image.columns
        self._lower, self._upper = image.bounds()
        self._bounds_version: int | None = None
        """The model's :data:`BOUNDS_VERSION` when the bounds were last read (None: re-read)."""
        self._moved_seen = 0
        """How many of the model's :data:`MOVED_VARIABLES` the bounds last read include."""
        h.addVars(n, self._lower, self._upper)
        kinds = np.where(image.integral, highspy.HighsVarType.kInteger, highspy.HighsVarType.kContinuous)
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), kinds)
        nonzero = image.row_coefs != 0  # a parameter-dependent 0 enters when its parameter moves
        starts = np.concatenate(([0], np.cumsum(nonzero)))[image.row_starts]
        self._row_lower, self._row_upper = image.row_lower.copy(), image.row_upper.copy()
        h.addRows(
            len(self._row_lower),
            self._row_lower,
            self._row_upper,
            int(nonzero.sum()),
            starts.astype(np.int32),
            image.row_cols[nonzero].astype(np.int32),
            image.row_coefs[nonzero],
        )
        sense = highspy.ObjSense.kMaximize if image.maximize else highspy.ObjSense.kMinimize
        h.changeObjectiveSense(sense)
        self._cost = image.cost.copy()
        h.changeColsCost(n, np.arange(n, dtype=np.int32), self._cost)
        h.changeObjectiveOffset(image.offset)
        self._params = image.param_values()
        self._entries = image.entries.values.copy()
        self._start: np.ndarray | None = None
        self._tee = None

    def set_time_limit(self, seconds: float) -> None:
        """Time limit of the next solves (the wall-clock safety net)."""
        self._highs.setOptionValue("time_limit", float(seconds))

    def set_node_limit(self, nodes: int | None) -> None:
        """Branch-and-bound nodes of the next solves (None: no limit): the deterministic limit."""
        self.node_limit = nodes

    def warm_start(self) -> None:
        """Use the values the model's variables hold now as the next solve's starting incumbent."""
        self._start = self._image.values()

    def solve(self, *, presolve: bool = True) -> SolveResult:
        """Push parameter and bound changes, re-solve, load the solution into the Pyomo variables.

        ``presolve=False`` works around HiGHS 1.12 presolve slips on the tie-break solve
        (it has returned a smaller plan as "optimal"; tests/test_optimize.py has the case).
        Each solve starts afresh (no solution carried over) unless :meth:`warm_start` asked otherwise.
        """
        h, status = self._highs, self._highspy.HighsModelStatus
        self._push()
        h.setOptionValue("presolve", "on" if presolve else "off")
        nodes = self._highspy.kHighsIInf if self.node_limit is None else int(self.node_limit)
        h.setOptionValue("mip_max_nodes", nodes)
        for option, value in self.mip_options.items():
            h.setOptionValue(option, value)
        self._log_to(solver_log())
        h.clearSolver()
        if self._start is not None:
            known = np.flatnonzero(~np.isnan(self._start))
            h.setSolution(len(known), known.astype(np.int32), self._start[known])
            self._start = None
        start = time.perf_counter()
        with _native_stdout_silenced():
            h.run()
        elapsed = time.perf_counter() - start
        model_status, info = h.getModelStatus(), h.getInfo()
        found = info.primal_solution_status == 2
        incumbent = info.objective_function_value if found else float("nan")
        bound = info.mip_dual_bound if info.mip_node_count != -1 else incumbent
        log.debug(
            "highs: %s in %.3f s, objective %s", h.modelStatusToString(model_status), elapsed, incumbent
        )
        if model_status == status.kOptimal:
            termination = Termination.OPTIMAL
        elif model_status in (status.kInfeasible, status.kUnboundedOrInfeasible):
            return SolveResult(Termination.INFEASIBLE, float("nan"), float("nan"), elapsed)
        elif model_status == status.kTimeLimit:
            termination = Termination.TIME_LIMIT
        elif model_status in (status.kIterationLimit, status.kSolutionLimit):
            termination = Termination.NODE_LIMIT
        else:
            raise RuntimeError(f"HiGHS ended with {h.modelStatusToString(model_status)}; this is a bug")
        if not found:
            return SolveResult(termination, float("nan"), float("nan"), elapsed)
        self._image.load(np.asarray(h.getSolution().col_value))
        return SolveResult(termination, incumbent, bound, elapsed, True)

    def _push(self) -> None:
        """Hand HiGHS the bounds, coefficients and costs that changed since the last solve, as arrays."""
        h, image = self._highs, self._image
        version = getattr(self.model, BOUNDS_VERSION, None)
        if version is None or version != self._bounds_version:
            log = getattr(self.model, MOVED_VARIABLES, None)
            if self._bounds_version is None or log is None:
                lower, upper = image.bounds()
                moved = np.flatnonzero((lower != self._lower) | (upper != self._upper))
            else:  # only the variables Controls moved since the last read
                moved = np.unique(image.columns_of(log[self._moved_seen :]))
                lower, upper = self._lower.copy(), self._upper.copy()
                lower[moved], upper[moved] = image.bounds(moved)
            self._bounds_version, self._moved_seen = version, len(log or ())
            if len(moved):
                h.changeColsBounds(len(moved), moved.astype(np.int32), lower[moved], upper[moved])
                self._lower, self._upper = lower, upper
        params = image.param_values()
        changed = params != self._params
        if not changed.any():
            return
        self._params = params
        entries = image.entries
        values = entries.evaluate(params, changed)
        moved = np.flatnonzero(values != self._entries)
        self._entries = values
        kind, row, col = entries.kind[moved], entries.row[moved], entries.col[moved]
        for i in np.flatnonzero(kind == COEFFICIENT):
            h.changeCoeff(int(row[i]), int(col[i]), float(values[moved[i]]))
        self._row_lower[row[kind == ROW_LOWER]] = values[moved[kind == ROW_LOWER]]
        self._row_upper[row[kind == ROW_UPPER]] = values[moved[kind == ROW_UPPER]]
        for r in np.unique(row[(kind == ROW_LOWER) | (kind == ROW_UPPER)]).tolist():
            h.changeRowBounds(r, self._row_lower[r], self._row_upper[r])
        costs = col[kind == COST]
        if len(costs):
            self._cost[costs] = values[moved[kind == COST]]
            h.changeColsCost(len(costs), costs.astype(np.int32), self._cost[costs])
        if (kind == OFFSET).any():
            h.changeObjectiveOffset(float(values[moved[kind == OFFSET]][0]))

    def _log_to(self, stream) -> None:
        """Send HiGHS's log to ``stream`` (None or False: silence)."""
        if stream and self._tee is None:
            self._highs.cbLogging.subscribe(lambda event: self._tee and self._tee.write(event.message))
        self._tee = stream or None
        self._highs.setOptionValue("output_flag", bool(stream))


class _QuietNativeStdout:
    """HiGHS 1.12 prints some debug lines with C ``printf`` whatever its log options: keep them off stdout.

    File descriptor 1 is process-wide, so concurrent solves (threads of one Dask worker) share one
    redirection: the first to enter points it at the null device, the last to leave restores it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = self._redirect()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._saved is not None:
                    os.dup2(self._saved, 1)
                    os.close(self._saved)
                    self._saved = None

    @staticmethod
    def _redirect() -> int | None:
        """Point fd 1 at the null device; the saved descriptor (None if there is no stdout to save)."""
        with suppress(ValueError, OSError):
            sys.stdout.flush()  # Python's buffered output goes out first, not into the null device
        try:
            saved = os.dup(1)
        except OSError:
            return None
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        return saved


_native_stdout_silenced = _QuietNativeStdout()


class OrToolsBackend:
    """SCIP through OR-Tools' ``model_builder``, kept in sync with the Pyomo model's parameters."""

    name = "ortools"

    def __init__(
        self,
        model: pyo.ConcreteModel,
        time_limit_s: float,
        abs_gap: float = ABS_GAP,
        node_limit: int | None = None,
    ):
        from ortools.linear_solver.python import model_builder as mb

        self._mb = mb
        self.model = model
        self.version = version("ortools")
        self._solver = mb.Solver("scip")
        self._solver.set_time_limit_in_seconds(time_limit_s)
        self.set_time_limit = self._solver.set_time_limit_in_seconds
        self._abs_gap = abs_gap
        self.set_node_limit(node_limit)
        self._target = mb.Model()
        self._vars: dict[int, tuple[pyo.Var, object]] = {}
        for var in model.component_data_objects(pyo.Var, descend_into=True):
            integral = var.is_integer() or var.is_binary()
            self._vars[id(var)] = (var, self._target.new_var(0, 0, integral, var.name))
        self._rows = []  # (pyomo constraint, ortools constraint, repn, mutable?)
        for con in model.component_data_objects(pyo.Constraint, active=True, descend_into=True):
            repn = generate_standard_repn(con.body, compute_values=False)
            if not repn.is_linear():
                raise RuntimeError(f"constraint {con.name} is not linear")
            row = self._target.add_linear_constraint(0.0, -math.inf, math.inf, con.name)
            mutable = bool(identify_mutable_parameters(con.expr)) or not _numeric(repn)
            self._rows.append((con, row, repn, mutable))
            self._sync_row(con, row, repn, coefficients=True)
        objective = next(model.component_data_objects(pyo.Objective, active=True))
        self._objective = (objective, generate_standard_repn(objective.expr, compute_values=False))
        self._sense_max = objective.sense == pyo.maximize
        # Coefficients are set before every solve; only the sense is fixed here.
        (self._target.maximize if self._sense_max else self._target.minimize)(0.0)

    def set_node_limit(self, nodes: int | None) -> None:
        """Branch-and-bound nodes of the next solves (None: no limit): the deterministic limit."""
        self.node_limit = nodes
        settings = {
            "limits/gap": REL_GAP,
            "limits/absgap": self._abs_gap,
            "randomization/randomseedshift": 0,
            "limits/nodes": -1 if nodes is None else int(nodes),
        }
        self._solver.set_solver_specific_parameters("\n".join(f"{k} = {v}" for k, v in settings.items()))

    def warm_start(self) -> None:
        """Use the values the model's variables hold now as the next solve's hint (SCIP's start)."""
        self._target.clear_hints()
        for var, target in self._vars.values():
            if var.value is not None:
                self._target.add_hint(target, float(var.value))

    def _sync_row(self, con, row, repn, *, coefficients: bool) -> None:
        if coefficients:
            for var, coef in zip(repn.linear_vars, repn.linear_coefs, strict=True):
                row.set_coefficient(self._vars[id(var)][1], float(pyo.value(coef)))
        constant = float(pyo.value(repn.constant))
        row.lower_bound = -math.inf if con.lower is None else float(pyo.value(con.lower)) - constant
        row.upper_bound = math.inf if con.upper is None else float(pyo.value(con.upper)) - constant

    def solve(self, *, presolve: bool = True) -> SolveResult:
        """Re-evaluate parameter-dependent coefficients and bounds, solve, write values back to Pyomo.

        ``presolve`` is accepted for interface parity with HiGHS; SCIP's presolve stays on.
        """
        mb = self._mb
        for var, target in self._vars.values():
            if var.fixed:
                target.lower_bound = target.upper_bound = float(var.value)
            else:
                target.lower_bound = -math.inf if var.lb is None else float(var.lb)
                target.upper_bound = math.inf if var.ub is None else float(var.ub)
        for con, row, repn, mutable in self._rows:
            if mutable:
                self._sync_row(con, row, repn, coefficients=True)
        objective, repn = self._objective
        coefs = {id(v): float(pyo.value(c)) for v, c in zip(repn.linear_vars, repn.linear_coefs, strict=True)}
        for key, (_, target) in self._vars.items():
            target.objective_coefficient = coefs.get(key, 0.0)
        offset = float(pyo.value(repn.constant))

        start = time.perf_counter()
        status = self._solver.solve(self._target)
        elapsed = time.perf_counter() - start
        log.debug("ortools: %s in %.3f s", status.name, elapsed)
        if status in (mb.SolveStatus.OPTIMAL, mb.SolveStatus.FEASIBLE):
            for var, target in self._vars.values():
                value = self._solver.value(target)
                integral = var.is_integer() or var.is_binary()
                var.set_value(round(value) if integral else value, skip_validation=True)
            return SolveResult(
                Termination.OPTIMAL if status == mb.SolveStatus.OPTIMAL else self._limit(),
                self._solver.objective_value + offset,
                self._solver.best_objective_bound + offset,
                elapsed,
                True,
            )
        if status == mb.SolveStatus.INFEASIBLE:
            return SolveResult(Termination.INFEASIBLE, float("nan"), float("nan"), elapsed)
        if status in (mb.SolveStatus.NOT_SOLVED, mb.SolveStatus.CANCELLED_BY_USER):
            return SolveResult(self._limit(), float("nan"), float("nan"), elapsed)
        raise RuntimeError(f"OR-Tools ended with {status}: {self._solver.status_string}; this is a bug")

    def _limit(self) -> Termination:
        """SCIP reports any limit alike: the node limit when one is set, else the time limit."""
        return Termination.NODE_LIMIT if self.node_limit is not None else Termination.TIME_LIMIT


def _numeric(repn) -> bool:
    return all(isinstance(c, (int, float)) for c in repn.linear_coefs)


def make_backend(
    name: str,
    model: pyo.ConcreteModel,
    time_limit_s: float,
    abs_gap: float = ABS_GAP,
    node_limit: int | None = None,
    highs_options: dict | None = None,
):
    """A persistent backend for ``model`` by solver name (``highs`` or ``ortools``).

    ``abs_gap``: stop once the incumbent is provably within this of the optimum; a
    study whose objective only takes values on a lattice (whole GPU-hours) proves
    optimality with half the lattice step, far sooner than with a 1e-7 gap.
    ``node_limit``: branch-and-bound nodes per solve, the deterministic limit (the same answer
    on a busy machine); ``time_limit_s`` is only a safety net. ``highs_options``: HiGHS search
    settings (e.g. :data:`SINGLE_PERIOD_HIGHS_OPTIONS`; OR-Tools ignores them).
    """
    if name == "highs":
        return HighsBackend(model, time_limit_s, abs_gap, node_limit, highs_options)
    if name == "ortools":
        return OrToolsBackend(model, time_limit_s, abs_gap, node_limit)
    raise PlannerError(f"unknown solver '{name}'; use one of {', '.join(SOLVERS)}")
