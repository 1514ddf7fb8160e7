"""Cost, power and energy of a plan: what a deployment costs per hour and per token, and what it draws.

Why it exists
    Tokens/s per GPU compares layouts; a budget owner reads dollars and kilowatts.
    Every table the planner writes (frontier.csv, comparison.csv, plan JSON, sweep and
    elastic summaries) carries the same four columns, computed here in one place:

    - ``cost_usd_per_h``: counted GPUs x ``hardware.price_usd_per_gpu_hour``;
    - ``cost_usd_per_million_output_tokens``: ``cost_usd_per_h`` / (output tokens/s x 3600 / 1e6);
    - ``power_kw``: counted GPUs x ``hardware.power_w`` / 1000, the GPUs' board power
      (an upper bound: every counted GPU at its rated power; host CPUs, NICs and cooling excluded);
    - ``output_tokens_per_joule``: output tokens/s / (``power_kw`` x 1000).

Which GPUs are counted
    A scheduler allocates whole nodes, so a plan pays for every GPU of the nodes it
    occupies (``nodes x gpus_per_node``), idle ones included. When the question is about a
    fixed fleet the team already owns (objective ``max_throughput``), every GPU of the
    budget is counted: an idle node still costs and draws power. Missing price or power
    gives NaN (empty in CSV, ``null`` in JSON).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from planner.specs import HardwareSpec

COLUMNS = ("cost_usd_per_h", "cost_usd_per_million_output_tokens", "power_kw", "output_tokens_per_joule")
"""The columns every user-facing table carries, in this order."""

FLEET_OBJECTIVES = ("max_throughput",)
"""Objectives that ask about a fixed, owned fleet: its idle GPUs are counted."""


def fleet_gpus(problem) -> int | None:
    """GPUs a fixed-fleet question pays for whether used or not (the budget), else None."""
    return problem.max_gpus if problem.instance.objective in FLEET_OBJECTIVES else None


def counted_gpus(nodes, gpus_per_node: int, fleet: int | None = None) -> np.ndarray:
    """GPUs billed and powered: whole nodes occupied, or the whole fleet when it is fixed."""
    occupied = np.asarray(nodes, dtype=float) * gpus_per_node
    return np.maximum(occupied, fleet) if fleet is not None else occupied


def economics(counted, output_tokens_per_s, hardware: HardwareSpec) -> dict[str, np.ndarray]:
    """The four :data:`COLUMNS` for arrays of counted GPUs and output tokens/s (vectorized)."""
    gpus = np.asarray(counted, dtype=float)
    tokens = np.asarray(output_tokens_per_s, dtype=float)
    price = hardware.price_usd_per_gpu_hour if hardware.price_usd_per_gpu_hour is not None else np.nan
    watts = hardware.power_w if hardware.power_w is not None else np.nan
    cost = gpus * price
    power_kw = gpus * watts / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_million = np.where(tokens > 0, cost / (tokens * 3600.0 / 1e6), np.nan)
        per_joule = np.where(power_kw > 0, tokens / (power_kw * 1000.0), np.nan)
    return dict(zip(COLUMNS, (cost, per_million, power_kw, per_joule), strict=True))


def with_economics(frame: pd.DataFrame, hardware: HardwareSpec, fleet: int | None = None) -> pd.DataFrame:
    """A frontier frame (``nodes``, ``output_tokens_per_s`` columns) with :data:`COLUMNS` appended."""
    if frame.empty:
        return frame.reindex(columns=[*frame.columns, "billed_gpus", *COLUMNS])
    counted = counted_gpus(frame["nodes"], hardware.gpus_per_node, fleet)
    columns = economics(counted, frame["output_tokens_per_s"], hardware)
    return frame.assign(billed_gpus=counted.astype(int), **columns)


def step_economics(
    comparison: pd.DataFrame, frame: pd.DataFrame, modes: tuple[str, ...], by: str = "tokens_per_s_per_gpu"
) -> pd.DataFrame:
    """comparison.csv with each mode's output tokens/s and :data:`COLUMNS` of the plan its step reading picks.

    At interactivity ``u`` a mode's step reading is its best row by ``by`` (tokens/s per GPU, as
    :func:`planner.compare.step_comparison`; total output tokens/s for an owned fleet) with
    ``tokens_per_s_per_user >= u``; this adds that row's ``output_tokens_per_s``, cost, power and
    energy as ``<mode>_<column>`` (NaN where the mode has no row).
    """
    out = comparison.copy()
    levels = out["tokens_per_s_per_user"].to_numpy(dtype=float)
    for mode in modes:
        rows = frame[frame["mode"] == mode]
        user = rows["tokens_per_s_per_user"].to_numpy(dtype=float)
        gpu = rows[by].to_numpy(dtype=float)
        reach = user[None, :] >= levels[:, None] * (1 - 1e-9)
        picked = np.where(reach, gpu[None, :], -np.inf).argmax(axis=1) if len(rows) else None
        found = reach.any(axis=1)
        for column in ("output_tokens_per_s", *COLUMNS):
            values = np.full(len(levels), np.nan)
            if picked is not None:
                values[found] = rows[column].to_numpy(dtype=float)[picked[found]]
            out[f"{mode}_{column}"] = values
    return out


def best_point_economics(rows: pd.DataFrame, prefix: str) -> dict[str, float]:
    """:data:`COLUMNS` of the highest-tokens/s-per-GPU row, keyed ``<prefix>_<column>`` (sweep summary)."""
    if rows.empty or COLUMNS[0] not in rows:
        return {f"{prefix}_{c}": float("nan") for c in COLUMNS}
    best = rows.loc[rows["tokens_per_s_per_gpu"].astype(float).idxmax()]
    return {f"{prefix}_{c}": float(best[c]) for c in COLUMNS}


def over_horizon(
    gpu_hours: float, output_tokens: float, hours: float, hardware: HardwareSpec
) -> dict[str, float]:
    """:data:`COLUMNS` of an elastic strategy: GPU-hours billed and powered, averaged over the horizon."""
    values = economics(gpu_hours / hours, output_tokens / (hours * 3600.0), hardware)
    return {k: float(v) for k, v in values.items()}
