"""A command-line option whose default lives in a heavy module, read only when the option needs it.

Why it exists
    ``disagg --help`` and the light commands must not import pandas or the performance
    model, yet some option defaults are constants of that model (its prompt chunk). An
    option of class :class:`LazyDefaultOption` names the constant instead of holding it,
    so the number still has one home and ``--help`` of that command still shows it.
"""

from __future__ import annotations

import importlib

import click


class LazyDefaultOption(click.Option):
    """``default_from=(module, name)``: the default is ``module.name``, imported on first use."""

    def __init__(self, *args, default_from: tuple[str, str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.default_from = default_from
        super().__init__(*args, **kwargs)

    def get_default(self, ctx: click.Context, call: bool = True):  # type: ignore[no-untyped-def]
        """The named constant (imported now, once per process)."""
        module, name = self.default_from
        return getattr(importlib.import_module(module), name)
