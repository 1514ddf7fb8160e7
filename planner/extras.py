"""Optional dependencies: a missing extra is a one-line error naming the ``pip install`` that adds it.

The core install (``pip install .``) plans, sweeps on the local process pool and
writes every output. Heavier tools live in extras declared in ``pyproject.toml``:
``[dask]`` (``sweep --scheduler``), ``[notebooks]`` (Jupyter, jupytext, nbconvert)
and ``[dev]`` (the test suite and style checks, which need both).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from planner.errors import SpecError

DISTRIBUTION = "disagg-planner"
"""The name ``pip`` knows the planner by (``pyproject.toml``)."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, from the package index or from a checkout."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install '.[{extra}]')"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise a SpecError saying which extra ``purpose`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(
            f"{purpose} needs the optional dependency '{module}', which is not installed; "
            f"install it with {install_hint(extra)}"
        ) from None
