"""Comparing two frontiers: the one definition of *gain*, read by every output.

The stdout summary of ``disagg frontier``, ``comparison.csv``, the ratio panel of
``frontier.png``, the sweep's ``typical_gain`` / ``peak_gain`` / ``verdict`` and the
notebooks all read the gain through this module (docs/DESIGN.md §5).

How a frontier is read
    A frontier (``Frontier.frame()``, one mode's rows) is a list of Pareto points
    (interactivity ``u`` in tokens/s per user, throughput ``t`` in output tokens/s per
    GPU). It is exact, so it is a step function: at a target ``u`` a mode offers the
    best ``t`` among its rows with at least ``u`` tokens/s per user (:func:`read_step`);
    no plan lies between two rows. Beyond its most interactive row a mode has no plan.

Gain
    ``gain(u) = t_disaggregated(u) / t_aggregated(u)``, both read as steps: what the
    best plan of each mode delivers at target ``u``. :func:`step_comparison` tabulates
    it at every breakpoint of either frontier (``comparison.csv``).

What a user decides on: the decision range
    Both frontiers end in a tail where neither mode is worth deploying (tens of
    tokens/s per GPU against thousands at the throughput end), and a ratio of two small
    numbers there says nothing about the choice. The *decision range* runs from the
    lowest breakpoint to the most interactive one both modes reach at which the better
    mode still delivers at least :data:`DECISION_FLOOR_FRACTION` of the best tokens/s
    per GPU either mode reaches; ``comparison.csv`` marks it (``in_decision_range``).
    :func:`gain_summary` condenses the gain there into the *typical* gain (geometric
    mean over the range, every factor of interactivity weighing the same; exact, since
    the gain is constant between breakpoints) and its *peak* (largest, and where), and
    reads the gain at the instance's interactivity targets, when it has any.
    :func:`verdict_gain` is what a verdict reads: the gain at the targets, else the
    typical gain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DECISION_FLOOR_FRACTION = 0.25
"""The decision range ends where the better mode falls below this share of the best tokens/s per GPU.

A plan below a quarter of the best throughput per GPU costs over four times as much per token as
the best plan; the gain there is a ratio of small numbers, not a deployment choice.
"""


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


def read_step(rows: pd.DataFrame, u, column: str = "tokens_per_s_per_gpu") -> np.ndarray:
    """``column`` (tokens/s per GPU) of the best plan at least ``u`` interactive; NaN beyond the last row."""
    x = rows["tokens_per_s_per_user"].to_numpy(dtype=float)
    y = rows[column].to_numpy(dtype=float)
    u = np.atleast_1d(np.asarray(u, dtype=float))
    reach = x[None, :] >= u[:, None] * (1 - 1e-9)
    best = np.where(reach, y[None, :], -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isfinite(best), best, np.nan)


FIXED_RATIO_MODE = "disaggregated_fixed_ratio"
"""The ``--fixed-ratio`` mode's name in frontier.csv."""


def step_comparison(frame: pd.DataFrame, by: str = "tokens_per_s_per_gpu") -> pd.DataFrame:
    """comparison.csv: every mode's frontier as a step function at every breakpoint, and the gain.

    At interactivity ``u`` a mode offers the best ``tokens_per_s_per_gpu`` of its rows with
    ``tokens_per_s_per_user >= u`` (NaN where it has no such row);
    ``disaggregated_over_aggregated`` is the gain, and ``in_decision_range`` marks the rows
    the summaries read (module docstring). ``by="output_tokens_per_s"`` (an owned fleet,
    objective ``max_throughput``) reads the gain and the decision range on total output
    tokens/s instead. With a fixed-ratio curve in the frame, its share of the dynamic
    disaggregated optimum is added.
    """
    modes = ["disaggregated", "aggregated"]
    fixed = len(frame) > 0 and (frame["mode"] == FIXED_RATIO_MODE).any()
    if fixed:
        modes.append(FIXED_RATIO_MODE)
    columns = ["tokens_per_s_per_user", *(f"{m}_tokens_per_s_per_gpu" for m in modes)]
    columns += ["disaggregated_over_aggregated", "in_decision_range"]
    columns += ["fixed_ratio_over_dynamic"] if fixed else []
    if frame.empty:
        return pd.DataFrame(columns=columns)
    levels = np.unique(frame["tokens_per_s_per_user"].to_numpy(dtype=float))
    out = {"tokens_per_s_per_user": levels}
    for mode in modes:
        out[f"{mode}_tokens_per_s_per_gpu"] = read_step(frame[frame["mode"] == mode], levels)
    dis, agg = out["disaggregated_tokens_per_s_per_gpu"], out["aggregated_tokens_per_s_per_gpu"]
    if by != "tokens_per_s_per_gpu":
        dis, agg = (read_step(frame[frame["mode"] == m], levels, by) for m in ("disaggregated", "aggregated"))
    out["disaggregated_over_aggregated"] = _ratio(dis, agg)
    out["in_decision_range"] = _decision_range(dis, agg)
    if fixed:
        dynamic = out["disaggregated_tokens_per_s_per_gpu"]
        out["fixed_ratio_over_dynamic"] = _ratio(out[f"{FIXED_RATIO_MODE}_tokens_per_s_per_gpu"], dynamic)
    return pd.DataFrame(out, columns=columns)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / bottom, np.nan)


def _decision_range(dis: np.ndarray, agg: np.ndarray) -> np.ndarray:
    """Breakpoints both modes reach where the better one keeps the floor share of the best (ascending)."""
    both = np.isfinite(dis) & np.isfinite(agg)
    best = np.nanmax(np.concatenate([dis, agg])) if (both.any()) else np.nan
    better = np.fmax(dis, agg)
    return both & (better >= DECISION_FLOOR_FRACTION * best)


def gain_summary(comparison: pd.DataFrame, targets=()) -> dict[str, float]:
    """The gain over the decision range of a :func:`step_comparison`, and at interactivity targets.

    Keys: ``typical_gain`` (geometric mean over the range, weighted by log-interactivity),
    ``peak_gain`` and ``peak_gain_at_tokens_per_s_per_user``, ``min_gain``, the range's
    ends ``decision_range_low_tokens_per_s_per_user`` / ``..._high_...``, and
    ``gain_at_target`` (geometric mean of the gain at the ``targets`` both modes reach;
    NaN without). All NaN when the modes share no range.
    """
    nan = float("nan")
    out = dict.fromkeys(GAIN_KEYS, nan)
    if comparison.empty:
        return out
    u = comparison["tokens_per_s_per_user"].to_numpy(dtype=float)
    gain = comparison["disaggregated_over_aggregated"].to_numpy(dtype=float)
    inside = comparison["in_decision_range"].to_numpy(dtype=bool)
    if inside.any():
        ur, gr = u[inside], gain[inside]
        peak = int(np.argmax(gr))
        out.update(
            typical_gain=band_gain(comparison, ur[0], ur[-1]),
            peak_gain=float(gr[peak]),
            peak_gain_at_tokens_per_s_per_user=float(ur[peak]),
            min_gain=float(gr.min()),
            decision_range_low_tokens_per_s_per_user=float(ur[0]),
            decision_range_high_tokens_per_s_per_user=float(ur[-1]),
        )
    out["gain_at_target"] = _gain_at(comparison, targets)
    return out


def band_gain(comparison: pd.DataFrame, low: float, high: float) -> float:
    """Geometric mean of the gain over interactivity ``[low, high]``, each factor of it weighing the same.

    Exact: the gain at a breakpoint holds on the interval from the previous breakpoint up to it
    (and below the first one), so each value is weighted by the log-length of its interval inside
    the band. ``low == high`` gives the gain there. NaN where one mode has no plan in the band.
    """
    u = comparison["tokens_per_s_per_user"].to_numpy(dtype=float)
    gain = comparison["disaggregated_over_aggregated"].to_numpy(dtype=float)
    if high <= low:
        at = np.searchsorted(u, low * (1 - 1e-9))
        return float(gain[at]) if at < len(u) else float("nan")
    edges = np.log(np.concatenate([[min(low, u[0])], u]))
    starts = np.clip(edges[:-1], np.log(low), np.log(high))
    ends = np.clip(edges[1:], np.log(low), np.log(high))
    widths = ends - starts
    used = widths > 0
    if not used.any() or not np.isfinite(gain[used]).all():
        return float("nan")
    return float(np.exp(np.sum(np.log(gain[used]) * widths[used]) / widths[used].sum()))


GAIN_KEYS = (
    "typical_gain",
    "peak_gain",
    "peak_gain_at_tokens_per_s_per_user",
    "min_gain",
    "decision_range_low_tokens_per_s_per_user",
    "decision_range_high_tokens_per_s_per_user",
    "gain_at_target",
)
"""What :func:`gain_summary` returns (the sweep summary's gain columns)."""


def _gain_at(comparison: pd.DataFrame, targets) -> float:
    gains = [g for g in gains_at(comparison, targets).values() if np.isfinite(g)]
    return float(np.exp(np.mean(np.log(gains)))) if gains else float("nan")


def gains_at(comparison: pd.DataFrame, targets) -> dict[float, float]:
    """The gain at each interactivity target; NaN where a mode has no plan that interactive.

    Exact from the table alone: at a target the best plans are those of the first breakpoint
    at or above it (no row of either mode lies in between).
    """
    if comparison.empty or not len(targets):
        return {}
    u = comparison["tokens_per_s_per_user"].to_numpy(dtype=float)
    gain = comparison["disaggregated_over_aggregated"].to_numpy(dtype=float)
    out = {}
    for target in targets:
        at = int(np.searchsorted(u, float(target) * (1 - 1e-9)))
        out[float(target)] = float(gain[at]) if at < len(u) else float("nan")
    return out


def verdict_gain(summary: dict[str, float]) -> tuple[float, str]:
    """The gain a verdict reads, and which: at the instance's targets when it has them, else typical."""
    if np.isfinite(summary.get("gain_at_target", np.nan)):
        return summary["gain_at_target"], "target"
    return summary["typical_gain"], "typical"


def disaggregation_gain(frontier) -> pd.DataFrame:
    """The gain table of a Frontier or a frontier.csv frame: :func:`step_comparison`, plus ``gain``.

    ``gain`` repeats ``disaggregated_over_aggregated`` under a short name for plots and notebooks;
    plot it as steps (``drawstyle="steps-pre"``), which is what it is.
    """
    frame = frontier if isinstance(frontier, pd.DataFrame) else frontier.frame()
    table = step_comparison(frame)
    return table.assign(gain=table["disaggregated_over_aggregated"])
