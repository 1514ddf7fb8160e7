"""Plot helpers shared by the trend notebooks (the comparisons themselves live in :mod:`planner.compare`).

Not a notebook (the notebooks are the numbered ``NN_*.py`` files).
"""

from __future__ import annotations

import pandas as pd

from planner.compare import (  # noqa: F401  (re-exported for the notebooks)
    band_gain,
    disaggregation_gain,
    gain_summary,
    gains_at,
    mode_rows,
    read_step,
)

SUMMARY_COLUMNS = [
    "typical_gain",
    "min_gain",
    "peak_gain",
    "peak_gain_at_tokens_per_s_per_user",
    "decision_range_high_tokens_per_s_per_user",
]
"""The gain summary's columns the notebooks print (:func:`planner.compare.gain_summary`)."""


def log_axis(ax, axis: str = "x") -> None:
    """A log scale labelled with plain numbers at 1, 2 and 5 of every decade (0.5, 1, 2, 5, 10, 20 ...).

    Labels at the decades alone leave a short range (20-200 tokens/s per user) with one tick label.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def plot_frontier(ax, rows: pd.DataFrame, label: str, **style) -> None:
    """One frontier: its Pareto points joined by lines (the reading gains use)."""
    ax.plot(
        rows["tokens_per_s_per_user"], rows["tokens_per_s_per_gpu"], marker="o", ms=3, label=label, **style
    )
    ax.set_xlabel("interactivity (output tokens/s per user)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(True, alpha=0.3)
