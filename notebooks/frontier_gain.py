"""Plot helpers shared by the trend notebooks (the comparisons themselves live in :mod:`planner.compare`).

Not a notebook (the notebooks are the numbered ``NN_*.py`` files).
"""

from __future__ import annotations

import pandas as pd

from planner.compare import (  # noqa: F401  (re-exported for the notebooks)
    disaggregation_gain,
    gain_curve,
    gain_summary,
    mode_rows,
    read_line,
    read_step,
)


def log_axis(ax, axis: str = "x") -> None:
    """A log scale with plain numbers as labels (1, 10, 100) and unlabeled minor ticks."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    scale = getattr(ax, f"set_{axis}scale")
    scale("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_formatter(NullFormatter())


def plot_frontier(ax, rows: pd.DataFrame, label: str, **style) -> None:
    """One frontier: its Pareto points joined by lines (the reading gains use)."""
    ax.plot(
        rows["tokens_per_s_per_user"], rows["tokens_per_s_per_gpu"], marker="o", ms=3, label=label, **style
    )
    ax.set_xlabel("interactivity (output tokens/s per user)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(True, alpha=0.3)
