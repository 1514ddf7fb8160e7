"""Progress of long runs: the package logs through :mod:`logging`, the CLI decides what a user sees.

Every module logs to a child of the ``planner`` logger (``logging.getLogger(__name__)``):
one INFO line per frontier point, per elastic strategy and candidate ratio, per
calibration block and leave-one-out refit, and DEBUG lines per MIP solve; with
``planner.solver`` at DEBUG the HiGHS log is written to stderr as well. A library
user sees nothing unless they configure logging (INFO is below :mod:`logging`'s
last-resort WARNING level).

The CLI wraps a command in :func:`reporting`: by default INFO lines go to stderr with
the seconds since the command started, so results on stdout stay clean for pipes;
``--quiet`` keeps only warnings; ``-v`` adds the per-solve lines and the solver logs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

ROOT = "planner"
"""The package's logger; modules log to its children."""
SOLVER_LOGGER = "planner.solver"
"""Where solver output (the HiGHS log) goes, at DEBUG."""

QUIET, NORMAL, VERBOSE = -1, 0, 1
"""Verbosity levels: warnings only, progress lines, progress plus per-solve lines and solver logs."""
_LEVELS = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}


class _Elapsed(logging.Formatter):
    """``[  12.3 s] message``: seconds since the command started."""

    def __init__(self, start: float):
        super().__init__("%(message)s")
        self.start = start

    def format(self, record: logging.LogRecord) -> str:
        return f"[{time.perf_counter() - self.start:7.1f} s] {super().format(record)}"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextlib.contextmanager
def reporting(verbosity: int = NORMAL) -> Iterator[None]:
    """Show the package's progress on stderr at ``verbosity`` while the block runs, then stop."""
    root = logging.getLogger(ROOT)
    handler = _CurrentStderr()
    handler.setFormatter(_Elapsed(time.perf_counter()))
    previous_level, previous_propagate = root.level, root.propagate
    root.addHandler(handler)
    root.setLevel(_LEVELS[max(QUIET, min(VERBOSE, verbosity))])
    root.propagate = False
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        root.propagate = previous_propagate


def solver_log():
    """What a solver's ``tee`` option should get: stderr when the solver logger is at DEBUG, else False.

    A stream, not the logger: Pyomo's logger adapter breaks the HiGHS log into fragments.
    """
    return sys.stderr if logging.getLogger(SOLVER_LOGGER).isEnabledFor(logging.DEBUG) else False
