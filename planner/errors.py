"""The planner's user-facing errors: each names what is wrong, where, and how to fix it.

The CLI turns these into one paragraph and a non-zero exit status; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class PlannerError(Exception):
    """A user mistake or an unanswerable question, reported without a traceback."""

    exit_code = 2


class SpecError(PlannerError):
    """A spec file or a command-line value is malformed, unknown or inconsistent."""

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        self.message = message
        where = ""
        if self.path and field:
            where = f"{self.path}: field '{field}': "
        elif self.path:
            where = f"{self.path}: "
        elif field:
            where = f"'{field}': "
        super().__init__(f"{where}{message}")


class LayoutError(SpecError):
    """A parallel layout the model or the hardware cannot run (e.g. TP not dividing the heads)."""


class InfeasibleError(PlannerError):
    """The question has no answer: no layout fits, or an SLO or budget cannot be met."""

    exit_code = 1
