"""A Pyomo MIP as numpy arrays, with every parameter-dependent entry kept as ``base + slopes @ params``.

Why it exists
    A frontier re-solves one small model over a hundred times, changing only mutable
    parameters and variable bounds. Re-evaluating each parameter-dependent Pyomo
    expression before every solve (what Pyomo's persistent interfaces do) costs more
    CPU than HiGHS itself on these models. Almost every such entry is affine in the
    parameters (``theta x gpus``, ``budget x (1 - enforced)``), so it is read once into
    (entry, parameter, slope) triplets and all entries are re-evaluated with one numpy
    sum; the few that are not (a weight times a class share) are re-evaluated with
    Pyomo, and only when one of their parameters changed.

The model is read once (``generate_standard_repn`` per row), so the Pyomo model stays the
one readable definition (``--write-lp`` writes it); what is solved is its image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyomo.core as pyo
from pyomo.core.expr.numvalue import is_constant
from pyomo.core.expr.visitor import identify_mutable_parameters
from pyomo.repn import generate_standard_repn

COEFFICIENT, ROW_LOWER, ROW_UPPER, COST, OFFSET = range(5)
"""What a parameter-dependent entry sets: a matrix coefficient, a row bound, a cost, the offset."""

AFFINE_TOLERANCE = 1e-12
"""Relative agreement an entry must show at a test point to be taken as affine in its parameters."""


@dataclass
class ParameterEntries:
    """Parameter-dependent entries: ``kind[i]`` at ``(row[i], col[i])`` is ``base[i]`` plus slopes x p.

    Entries listed in ``other`` are not affine; they are evaluated with Pyomo when a parameter of
    theirs changed (:attr:`depends`).
    """

    kind: np.ndarray
    row: np.ndarray
    col: np.ndarray
    expressions: list
    base: np.ndarray
    slopes: tuple[np.ndarray, np.ndarray, np.ndarray]
    """``(entry, parameter, slope)`` triplets of the affine entries."""
    depends: tuple[np.ndarray, np.ndarray]
    """``(entry, parameter)`` pairs: which parameters each entry reads."""
    other: np.ndarray
    values: np.ndarray
    """Every entry's value when last evaluated (the non-affine ones are kept here between changes)."""

    def evaluate(self, params: np.ndarray, changed: np.ndarray) -> np.ndarray:
        """Every entry's value at ``params`` (``changed``: which parameters moved since the last call)."""
        entry, param, slope = self.slopes
        values = self.base + np.bincount(entry, weights=slope * params[param], minlength=len(self.base))
        if len(self.other):
            reader, read = self.depends
            touched = np.zeros(len(self.base), dtype=bool)
            touched[reader[changed[read]]] = True
            for i in self.other[touched[self.other]]:
                self.values[i] = _value(self.expressions[i])
            values[self.other] = self.values[self.other]
        return values


@dataclass
class LinearImage:
    """One Pyomo model as arrays: columns, rows (CSR), objective, and the parameters they depend on."""

    variables: list
    integral: np.ndarray
    cost: np.ndarray
    offset: float
    maximize: bool
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_starts: np.ndarray
    """Where each row's entries start in :attr:`row_cols` / :attr:`row_coefs` (CSR, current values)."""
    row_cols: np.ndarray
    row_coefs: np.ndarray
    params: list
    entries: ParameterEntries
    _column_of: dict[int, int] | None = None
    """Variable id -> column, built on first use (:meth:`columns_of`)."""

    @property
    def columns(self) -> int:
        """Number of variables."""
        return len(self.variables)

    def param_values(self) -> np.ndarray:
        """Current values of the mutable parameters, in :attr:`params` order."""
        return np.fromiter((p.value for p in self.params), dtype=float, count=len(self.params))

    def columns_of(self, variables: list) -> np.ndarray:
        """The column of each variable the image has (one no row or cost reads is not a column)."""
        if self._column_of is None:
            self._column_of = {id(var): i for i, var in enumerate(self.variables)}
        found = (self._column_of.get(id(v), -1) for v in variables)
        columns = np.fromiter(found, dtype=np.int64, count=len(variables))
        return columns[columns >= 0]

    def bounds(self, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Current bounds of the columns (default: all), read from the Pyomo variables.

        A fixed variable sits at its value.
        """
        columns = np.arange(self.columns) if columns is None else columns
        n = len(columns)
        lower, upper = np.empty(n), np.empty(n)
        for i, column in enumerate(columns.tolist()):
            var = self.variables[column]
            if var.fixed:
                lower[i] = upper[i] = var.value
            else:
                lb, ub = var.bounds
                lower[i] = -math.inf if lb is None else lb
                upper[i] = math.inf if ub is None else ub
        return lower, upper

    def load(self, values: np.ndarray) -> None:
        """Put a solution into the Pyomo variables, as the solver returned it."""
        for var, value in zip(self.variables, values.tolist(), strict=True):
            var.set_value(value, skip_validation=True)

    def values(self) -> np.ndarray:
        """The values the Pyomo variables hold now (NaN where none)."""
        return np.array([np.nan if v.value is None else v.value for v in self.variables], dtype=float)


def read_model(model: pyo.ConcreteModel) -> LinearImage:
    """The image of ``model``'s active constraints and objective (linear; raises otherwise)."""
    columns: dict[int, int] = {}
    variables: list = []

    def column(var) -> int:
        key = id(var)
        if key not in columns:
            columns[key] = len(variables)
            variables.append(var)
        return columns[key]

    rows, cols, coefs = [], [], []
    row_lower, row_upper = [], []
    entries: list[tuple[int, int, int, object, float]] = []
    for i, con in enumerate(model.component_data_objects(pyo.Constraint, active=True, descend_into=True)):
        repn = generate_standard_repn(con.body, compute_values=False, quadratic=False)
        if not repn.is_linear():
            raise ValueError(f"constraint {con.name} is not linear")
        for var, coef in zip(repn.linear_vars, repn.linear_coefs, strict=True):
            j = column(var)
            rows.append(i)
            cols.append(j)
            coefs.append(_value(coef))
            if not is_constant(coef):
                entries.append((COEFFICIENT, i, j, coef, coefs[-1]))
        for kind, bound, values in ((ROW_LOWER, con.lower, row_lower), (ROW_UPPER, con.upper, row_upper)):
            if bound is None:
                values.append(-math.inf if kind == ROW_LOWER else math.inf)
                continue
            expr = bound - repn.constant
            values.append(_value(expr))
            if not is_constant(expr):
                entries.append((kind, i, -1, expr, values[-1]))
    objective = next(model.component_data_objects(pyo.Objective, active=True, descend_into=True))
    repn = generate_standard_repn(objective.expr, compute_values=False, quadratic=False)
    if not repn.is_linear():
        raise ValueError(f"objective {objective.name} is not linear")
    for var in model.component_data_objects(pyo.Var, descend_into=True):
        column(var)  # variables in no row or objective keep a column (their bounds still apply)
    cost = np.zeros(len(variables))
    for var, coef in zip(repn.linear_vars, repn.linear_coefs, strict=True):
        cost[column(var)] = _value(coef)
        if not is_constant(coef):
            entries.append((COST, -1, column(var), coef, cost[column(var)]))
    if not is_constant(repn.constant):
        entries.append((OFFSET, -1, -1, repn.constant, _value(repn.constant)))
    params = [
        p
        for component in model.component_objects(pyo.Param, descend_into=True)
        if component.mutable
        for p in component.values()
    ]
    n_rows = len(row_lower)
    starts = np.searchsorted(np.asarray(rows, dtype=np.int64), np.arange(n_rows))  # rows come in order
    return LinearImage(
        variables=variables,
        integral=np.array([v.is_integer() or v.is_binary() for v in variables], dtype=bool),
        cost=cost,
        offset=_value(repn.constant),
        maximize=objective.sense == pyo.maximize,
        row_lower=np.array(row_lower, dtype=float),
        row_upper=np.array(row_upper, dtype=float),
        row_starts=starts,
        row_cols=np.asarray(cols, dtype=np.int64),
        row_coefs=np.asarray(coefs, dtype=float),
        params=params,
        entries=_fit(entries, params),
    )


def _fit(entries: list[tuple[int, int, int, object, float]], params: list) -> ParameterEntries:
    """Each entry as ``base + slopes @ p``: its values at p = 0 and at unit vectors, checked elsewhere."""
    index = {id(p): j for j, p in enumerate(params)}
    expressions = [e for _, _, _, e, _ in entries]
    deps = [[index[id(p)] for p in identify_mutable_parameters(e)] for e in expressions]
    reader = np.array([i for i, d in enumerate(deps) for _ in d], dtype=np.int64)
    read = np.array([j for d in deps for j in d], dtype=np.int64)
    saved = [p.value for p in params]
    readers: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            readers.setdefault(j, []).append(i)
    try:
        _assign(params, np.zeros(len(params)))
        base = np.array([_value(e, math.nan) for e in expressions], dtype=float)
        slope_rows, slope_cols, slope_values = [], [], []
        for j, members in readers.items():
            params[j].value = 1.0
            for i in members:
                slope_rows.append(i)
                slope_cols.append(j)
                slope_values.append(_value(expressions[i], math.nan) - base[i])
            params[j].value = 0.0
        entry, param = np.array(slope_rows, dtype=np.int64), np.array(slope_cols, dtype=np.int64)
        slope = np.array(slope_values, dtype=float)
        probe = 0.5 + np.random.default_rng(0).random(len(params))
        _assign(params, probe)
        seen = np.array([_value(e, math.nan) for e in expressions], dtype=float)
    finally:
        _assign(params, saved)
    predicted = base + np.bincount(entry, weights=slope * probe[param], minlength=len(base))
    scale = np.maximum(1.0, np.maximum(np.abs(seen), np.abs(predicted)))
    affine = np.abs(seen - predicted) <= AFFINE_TOLERANCE * scale
    affine &= np.isfinite(base) & np.isfinite(predicted)
    other = np.flatnonzero(~affine)
    base[other] = 0.0
    keep = affine[entry]
    return ParameterEntries(
        kind=np.array([k for k, *_ in entries], dtype=np.int8),
        row=np.array([r for _, r, *_ in entries], dtype=np.int64),
        col=np.array([c for _, _, c, *_ in entries], dtype=np.int64),
        values=np.array([v for *_, v in entries], dtype=float),
        expressions=expressions,
        base=base,
        slopes=(entry[keep], param[keep], slope[keep]),
        depends=(reader, read),
        other=other,
    )


def _assign(params: list, values: np.ndarray) -> None:
    for p, v in zip(params, values, strict=True):
        p.value = v


def _value(expr, failed: float | None = None) -> float:
    """``pyo.value`` as a float; ``failed`` instead of raising when given (a probe may divide by 0)."""
    try:
        return float(pyo.value(expr))
    except (ZeroDivisionError, ValueError, OverflowError):
        if failed is None:
            raise
        return failed
