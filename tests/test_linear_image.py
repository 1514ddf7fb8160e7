"""The array image follows every parameter and bound change; HiGHS solves on it agree with fresh ones."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from planner.optimize.backends import HighsBackend, OrToolsBackend, Termination
from planner.optimize.linear_image import COEFFICIENT, COST, ROW_UPPER, read_model


def _model() -> pyo.ConcreteModel:
    """max w x + w s y  s.t.  x + theta y <= cap (1 - off),  x <= 7,  y integer <= 5."""
    m = pyo.ConcreteModel()
    m.theta = pyo.Param(initialize=2.0, mutable=True)
    m.cap = pyo.Param(initialize=10.0, mutable=True)
    m.off = pyo.Param(initialize=0.0, mutable=True)
    m.w = pyo.Param(initialize=1.0, mutable=True)
    m.s = pyo.Param(initialize=3.0, mutable=True)
    m.x = pyo.Var(bounds=(0, 7))
    m.y = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, 5))
    m.row = pyo.Constraint(expr=m.x + m.theta * m.y <= m.cap * (1 - m.off))
    m.objective = pyo.Objective(expr=m.w * m.x + m.w * m.s * m.y, sense=pyo.maximize)
    return m


def test_affine_entries_are_vectorized_and_the_bilinear_one_is_not() -> None:
    m = _model()
    image = read_model(m)
    entries = image.entries
    kinds = sorted(entries.kind.tolist())
    assert kinds == sorted([COEFFICIENT, ROW_UPPER, COST, COST])
    # theta y and w x are affine; cap (1 - off) and w s y are products of two parameters.
    assert sorted(entries.kind[entries.other].tolist()) == sorted([ROW_UPPER, COST])
    for theta, cap, off, w, s in ((2.0, 10.0, 0.0, 1.0, 3.0), (0.5, 4.0, 1.0, -2.0, 0.25), (0, 0, 0, 0, 0)):
        for param, value in zip((m.theta, m.cap, m.off, m.w, m.s), (theta, cap, off, w, s), strict=True):
            param.value = value
        values = entries.evaluate(image.param_values(), np.ones(len(image.params), dtype=bool))
        expected = [pyo.value(e) for e in entries.expressions]
        np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12)


def test_pushed_changes_solve_like_a_fresh_model() -> None:
    m = _model()
    backend = HighsBackend(m, time_limit_s=60.0, mip_options={"mip_allow_restart": False})
    assert backend.solve().objective == pytest.approx(
        15.0
    )  # y = 5, x = 0: y earns 3 per 2 of the row, x 1 per 1
    changes = [
        lambda: setattr(m.theta, "value", 0.5),  # a coefficient
        lambda: setattr(m.s, "value", 10.0),  # the bilinear cost
        lambda: m.x.setub(2.0),  # a bound
        lambda: setattr(m.off, "value", 0.5),  # the right-hand side
        lambda: m.y.fix(1),
        lambda: m.y.unfix(),
        lambda: setattr(m.theta, "value", 0.0),  # a coefficient back to 0
    ]
    for change in changes:
        change()
        pushed = backend.solve()
        fresh = HighsBackend(m, time_limit_s=60.0).solve()
        assert pushed.termination == fresh.termination == Termination.OPTIMAL
        assert pushed.objective == pytest.approx(fresh.objective, abs=1e-9)
    m.cap.value = -1.0
    assert backend.solve().termination == Termination.INFEASIBLE


@pytest.mark.parametrize("backend_class", [HighsBackend, OrToolsBackend])
def test_warm_start_keeps_the_optimum_and_loads_it(backend_class) -> None:
    m = _model()
    backend = backend_class(m, time_limit_s=60.0)
    first = backend.solve()
    backend.warm_start()
    again = backend.solve()
    assert again.termination == Termination.OPTIMAL
    assert again.objective == pytest.approx(first.objective)
    assert (pyo.value(m.x), pyo.value(m.y)) == pytest.approx((0.0, 5.0))


def test_a_target_sets_only_the_bounds_that_move_and_ends_like_a_fresh_one() -> None:
    from test_formulation import _optimizer

    moving, fresh = _optimizer("one_bin"), _optimizer("one_bin")
    rows, layouts = len(moving.model.R), len(moving.model.L)
    masks = [
        (np.ones(rows, bool), np.ones(layouts, bool)),
        (np.arange(rows) % 2 == 0, np.arange(layouts) % 2 == 1),
        (np.arange(rows) < 2, np.ones(layouts, bool)),
    ]
    for allowed, usable in masks:
        moving.controls.set_target(allowed, usable)
    fresh.controls.set_target(*masks[-1])
    for name in ("flow", "use"):
        assert [v.bounds for v in getattr(moving.model, name).values()] == [
            v.bounds for v in getattr(fresh.model, name).values()
        ]
    moving.controls.set_weights(tokens=1.0)
    fresh.controls.set_weights(tokens=1.0)
    assert moving.backend.solve().objective == pytest.approx(fresh.backend.solve().objective, abs=1e-9)


def test_native_output_during_solves_stays_off_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from planner.optimize.backends import _native_stdout_silenced

    with _native_stdout_silenced():
        with _native_stdout_silenced():  # a second, concurrent solve
            os.write(1, b"inner\n")
        os.write(1, b"outer\n")
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"
