"""JSON that strict parsers read: ``null`` for a missing number, never ``NaN`` or ``Infinity``.

Python's ``json.dumps`` writes ``NaN`` by default, which JavaScript, ``jq`` and most
JSON libraries reject. Every JSON the CLI prints goes through :func:`json_text`, which
turns numpy scalars into Python values and non-finite floats into ``null``, then
serializes with ``allow_nan=False`` so a slip raises instead of writing invalid JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with numpy scalars made Python values and NaN/inf made None, recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (see the module docstring)."""
    import json

    return json.dumps(plain(value), indent=indent, allow_nan=False)
