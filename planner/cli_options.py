"""Command-line value types that refuse what the planner cannot use, before any work.

click's ``FloatRange`` lets ``nan`` through every bound (NaN compares false) and
``inf`` through any lower bound, and ``IntRange`` accepts integers far past what
numpy can hold; each then fails deep inside the model or the solver (a segfault in
HiGHS for ``--fixed-ratio nan``). These types say no at the option, naming it.
"""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float within bounds that is also finite (no ``nan``, ``inf``)."""

    name = "finite float"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        """The number, or a usage error naming the option when it is not finite or out of range."""
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a plain number such as 1.5", param, ctx)
        return super().convert(number, param, ctx)


def finite(*, min: float | None = None, max: float | None = None, min_open: bool = False) -> FiniteFloat:
    """A :class:`FiniteFloat` range (keyword arguments as click's ``FloatRange``)."""
    return FiniteFloat(min=min, max=max, min_open=min_open)


MAX_TIME_LIMIT_S = 7 * 24 * 3600.0
"""Longest time limit accepted, seconds (a week)."""
MAX_RATIO = 1e4
"""Largest prefill:decode GPU ratio accepted."""
MAX_LOAD_SCALE = 1e6
"""Largest multiplier of a trace's load accepted."""
MAX_TOKENS_PER_S_PER_USER = 1e6
"""Largest interactivity target accepted (the spec bound of ``tokens_per_s_per_user_min``)."""
MAX_LAYOUT_SIZE = 1_000_000
"""Largest TP, PP, EP or attention-DP size accepted by ``evaluate``."""
MAX_BATCH = 10_000_000
"""Largest batch accepted by ``evaluate``."""
MAX_TOKENS = 10_000_000
"""Largest ISL / OSL accepted (the spec bound of ``isl_tokens``)."""
