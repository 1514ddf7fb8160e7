"""Comparing two frontiers: read each as a curve, and condense their ratio into a gain.

The one definition of "gain" the sweep verdicts, the notebooks and the README use.

How a frontier is read
    A frontier (``Frontier.frame()``, one mode's rows) is a list of Pareto points
    (interactivity ``u`` in tokens/s per user, throughput ``t`` in output tokens/s
    per GPU). Two readings:

    - :func:`read_step` is exact: the best plan that is *at least* ``u``
      interactive (what ``comparison.csv`` reports). Between two points the value
      stays at the next, more interactive point, so the ratio of two step functions
      spikes wherever one mode's breakpoint sits just above the other's; the spikes
      come from the batch-size grid, not from the deployments.
    - :func:`read_line` joins consecutive Pareto points by straight lines (as the
      plots do) and stays flat to the left of the first point (that plan still meets
      any lower target). It is what a finer batch grid would approach, and it treats
      both modes alike, so it is the reading used for gains.

Gain
    ``gain(u) = t_A(u) / t_B(u)`` with both curves read by :func:`read_line`, on a
    log-spaced grid of ``u`` from the lowest interactivity either frontier reaches to
    the highest both reach. :func:`gain_summary` condenses it into the *peak* gain
    (largest ratio, and where) and the *typical* gain (geometric mean over the grid,
    i.e. every factor of interactivity weighs the same).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID_POINTS = 400
"""Points of the log-spaced interactivity grid a gain curve is sampled on."""


def mode_rows(frontier, mode: str) -> pd.DataFrame:
    """One mode's Pareto points (``frontier.csv`` rows), interactivity ascending.

    ``frontier`` is a :class:`~planner.frontier.Frontier` or a frontier.csv frame.
    """
    frame = frontier if isinstance(frontier, pd.DataFrame) else frontier.frame()
    rows = frame[frame["mode"] == mode].sort_values("tokens_per_s_per_user") if len(frame) else frame
    if rows.empty:
        why = (
            "not traced"
            if isinstance(frontier, pd.DataFrame)
            else frontier.infeasible.get(mode, "not traced")
        )
        raise ValueError(f"the frontier has no {mode} plan ({why})")
    return rows.reset_index(drop=True)


def read_line(rows: pd.DataFrame, u) -> np.ndarray:
    """Tokens/s per GPU at interactivity ``u``: straight lines between points, NaN beyond the last."""
    x = rows["tokens_per_s_per_user"].to_numpy()
    y = rows["tokens_per_s_per_gpu"].to_numpy()
    u = np.asarray(u, dtype=float)
    return np.where(u <= x[-1] * (1 + 1e-9), np.interp(u, x, y), np.nan)


def read_step(rows: pd.DataFrame, u) -> np.ndarray:
    """Tokens/s per GPU of the best plan at least ``u`` interactive (exact); NaN beyond the last point."""
    x = rows["tokens_per_s_per_user"].to_numpy()
    y = rows["tokens_per_s_per_gpu"].to_numpy()
    u = np.atleast_1d(np.asarray(u, dtype=float))
    best = np.full(u.shape, np.nan)
    for i, value in enumerate(u):
        reach = y[x >= value * (1 - 1e-9)]
        if reach.size:
            best[i] = reach.max()
    return best


def gain_curve(numerator: pd.DataFrame, denominator: pd.DataFrame, points: int = GRID_POINTS) -> pd.DataFrame:
    """``numerator / denominator`` tokens/s per GPU over the interactivity range both reach (line reading)."""
    low = min(numerator["tokens_per_s_per_user"].min(), denominator["tokens_per_s_per_user"].min())
    high = min(numerator["tokens_per_s_per_user"].max(), denominator["tokens_per_s_per_user"].max())
    u = np.geomspace(low, high, points)
    top, bottom = read_line(numerator, u), read_line(denominator, u)
    return pd.DataFrame(
        {
            "tokens_per_s_per_user": u,
            "numerator_tokens_per_s_per_gpu": top,
            "denominator_tokens_per_s_per_gpu": bottom,
            "gain": top / bottom,
        }
    )


def disaggregation_gain(frontier, points: int = GRID_POINTS) -> pd.DataFrame:
    """Disaggregated over aggregated tokens/s per GPU along the interactivity both modes reach."""
    return gain_curve(mode_rows(frontier, "disaggregated"), mode_rows(frontier, "aggregated"), points)


def gain_summary(curve: pd.DataFrame) -> dict[str, float]:
    """Peak gain and where, typical (geometric-mean) gain, the gain at both ends, and the range."""
    u, gain = curve["tokens_per_s_per_user"].to_numpy(), curve["gain"].to_numpy()
    peak = int(np.argmax(gain))
    return {
        "peak_gain": float(gain[peak]),
        "peak_at_tokens_per_s_per_user": float(u[peak]),
        "typical_gain": float(np.exp(np.mean(np.log(gain)))),
        "gain_at_low_end": float(gain[0]),
        "gain_at_high_end": float(gain[-1]),
        "low_tokens_per_s_per_user": float(u[0]),
        "high_tokens_per_s_per_user": float(u[-1]),
    }


FIXED_RATIO_MODE = "disaggregated_fixed_ratio"
"""The ``--fixed-ratio`` mode's name in frontier.csv."""


def step_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv: every mode's frontier as a step function at every breakpoint, and the ratios.

    At interactivity ``u`` a mode offers the best ``tokens_per_s_per_gpu`` of its rows with
    ``tokens_per_s_per_user >= u`` (the exact reading: that plan meets any lower target);
    NaN where it has no such row. With a fixed-ratio curve in the frame, its share of the
    dynamic disaggregated optimum is added.
    """
    modes = ["disaggregated", "aggregated"]
    fixed = len(frame) > 0 and (frame["mode"] == FIXED_RATIO_MODE).any()
    if fixed:
        modes.append(FIXED_RATIO_MODE)
    columns = ["tokens_per_s_per_user", *(f"{m}_tokens_per_s_per_gpu" for m in modes)]
    columns += ["disaggregated_over_aggregated"] + (["fixed_ratio_over_dynamic"] if fixed else [])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    levels = np.unique(frame["tokens_per_s_per_user"].to_numpy(dtype=float))
    out = {"tokens_per_s_per_user": levels}
    for mode in modes:
        rows = frame[frame["mode"] == mode]
        user = rows["tokens_per_s_per_user"].to_numpy(dtype=float)
        gpu = rows["tokens_per_s_per_gpu"].to_numpy(dtype=float)
        reach = user[None, :] >= levels[:, None] * (1 - 1e-9)
        best = np.where(reach, gpu[None, :], -np.inf).max(axis=1, initial=-np.inf)
        out[f"{mode}_tokens_per_s_per_gpu"] = np.where(np.isfinite(best), best, np.nan)

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bottom > 0, top / bottom, np.nan)

    dis = out["disaggregated_tokens_per_s_per_gpu"]
    out["disaggregated_over_aggregated"] = ratio(dis, out["aggregated_tokens_per_s_per_gpu"])
    if fixed:
        out["fixed_ratio_over_dynamic"] = ratio(out[f"{FIXED_RATIO_MODE}_tokens_per_s_per_gpu"], dis)
    return pd.DataFrame(out, columns=columns)
