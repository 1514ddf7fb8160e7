"""A wall-clock limit for a whole command (``--run-time-limit-s``), on top of the per-solve limit.

``--time-limit-s`` bounds each MIP solve, but a run makes many solves (a frontier,
an elastic horizon, a sweep of cells) and prices large candidate tables first, so it
alone never bounds the run. :func:`run_deadline` arms a real-time timer; when it
fires, :class:`RunTimeLimitError` is raised in the main thread at the next Python
step (a solve in progress finishes first, bounded by its own limit), the usual
cleanup runs (pool workers stopped, no half-written outputs) and the command exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from planner.errors import PlannerError

SWEEP_RESUME_TEXT = "the finished cells are kept; run the same command again to resume"
"""What a sweep stopped by its run limit keeps."""


class RunTimeLimitError(PlannerError):
    """The whole run took longer than ``--run-time-limit-s``."""

    exit_code = 1


@contextlib.contextmanager
def run_deadline(seconds: float | None, after: str = "nothing was written") -> Iterator[None]:
    """Raise :class:`RunTimeLimitError` in the main thread once ``seconds`` of wall time have passed."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return

    quiet = logging.getLogger("pyomo")
    level = quiet.level

    def expire(signum: int, frame: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # Pyomo logs an exception that passes through a model rule as an ERROR; this one is ours.
        quiet.setLevel(logging.CRITICAL + 1)
        raise RunTimeLimitError(
            f"the run took longer than --run-time-limit-s {seconds:g}; {after}. Raise the limit, or "
            "make the question smaller (fewer GPUs, periods or cells)"
        )

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        quiet.setLevel(level)
