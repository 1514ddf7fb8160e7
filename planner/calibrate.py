"""Fit the efficiency blocks to measured throughput, and say honestly how well they generalize.

One block per hardware generation x precision (never one per row): the rows of a
block are fitted together by bounded least squares on the log of
predicted / measured (scipy's trust-region reflective solver), with a weak pull
towards the starting values so constants the rows cannot identify stay put.
Leave-one-out refits without each row in turn and predicts it, which is the
error a user should expect on a configuration that was not in the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from planner.catalog import load_hardware
from planner.measurements import predict_row
from planner.perf.calibration import Calibration, EfficiencyBlock

log = logging.getLogger(__name__)

FITTED_FIELDS = (
    "gemm_efficiency_fraction",
    "gemm_half_saturation_tokens",
    "attention_efficiency_fraction",
    "memory_efficiency_fraction",
    "collective_efficiency_fraction",
    "collective_latency_us",
    "step_overhead_ms",
    "moe_load_imbalance_ratio",
    "attention_dp_balance_fraction",
)
"""Constants the fit moves; memory capacity constants stay at their (documented) values."""

PRIOR_WEIGHT = 0.01
"""Strength of the pull towards the starting block, per log-unit, relative to one row's log error."""


def _bounds(name: str) -> tuple[float, float]:
    field = EfficiencyBlock.model_fields[name]
    lower = next(m.ge for m in field.metadata if getattr(m, "ge", None) is not None)
    upper = next(m.le for m in field.metadata if getattr(m, "le", None) is not None)
    return float(max(lower, 1e-3)), float(upper)


def block_key_of_row(row: pd.Series) -> str:
    """The ``generation/precision`` key a measurement row calibrates."""
    return f"{load_hardware(str(row['hardware'])).generation}/{row['precision']}"


@dataclass(frozen=True)
class BlockFit:
    """One fitted block and the rows it was fitted on."""

    key: str
    block: EfficiencyBlock
    row_ids: tuple[str, ...]
    log_rmse: float


def _with_block(calibration: Calibration, key: str, block: EfficiencyBlock) -> Calibration:
    return calibration.model_copy(update={"blocks": {**calibration.blocks, key: block}})


def _log_errors(rows: pd.DataFrame, calibration: Calibration) -> np.ndarray:
    errors = []
    for _, row in rows.iterrows():
        p = predict_row(row, calibration, check_ceiling=False)
        errors.append(np.log(max(p.predicted, 1e-9) / float(row["value"])) if p.skip_reason is None else 0.0)
    return np.asarray(errors)


def fit_block(
    rows: pd.DataFrame, calibration: Calibration, key: str, *, max_evaluations: int = 400
) -> BlockFit:
    """Fit one block's constants to its rows (bounded least squares on log error)."""
    start = calibration.blocks.get(key, calibration.default)
    lower, upper = zip(*(_bounds(f) for f in FITTED_FIELDS), strict=True)
    x0 = np.log([getattr(start, f) for f in FITTED_FIELDS])
    lo, hi = np.log(lower), np.log(upper)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    def block_at(x: np.ndarray) -> EfficiencyBlock:
        values = dict(zip(FITTED_FIELDS, np.clip(np.exp(x), lower, upper), strict=True))
        return start.model_copy(update={k: float(v) for k, v in values.items()})

    def residuals(x: np.ndarray) -> np.ndarray:
        errors = _log_errors(rows, _with_block(calibration, key, block_at(x)))
        return np.concatenate([errors, PRIOR_WEIGHT * (x - x0)])

    result = least_squares(
        residuals, x0, bounds=(lo, hi), method="trf", diff_step=0.02, max_nfev=max_evaluations, x_scale=1.0
    )
    block = EfficiencyBlock.model_validate(block_at(result.x).model_dump())
    errors = residuals(result.x)[: len(rows)]
    return BlockFit(key, block, tuple(rows["id"]), float(np.sqrt(np.mean(errors**2))) if len(rows) else 0.0)


def fit_calibration(measurements: pd.DataFrame, start: Calibration, *, source: str) -> Calibration:
    """Fit every block that has expressible rows; other blocks stay as they were.

    The ``default`` block (for GPU generations with no data) becomes the fitted block
    with the most rows: the best-supported estimate of what software achieves.
    """
    fitted = start
    keys = measurements.apply(block_key_of_row, axis=1)
    support: dict[str, int] = {}
    for key in sorted(keys.unique()):
        rows = _expressible(measurements[keys == key], start)
        if len(rows):
            log.info("fitting block %s on %d rows", key, len(rows))
            fitted = _with_block(fitted, key, fit_block(rows, fitted, key).block)
            support[key] = len(rows)
    if support:
        best = max(sorted(support), key=support.__getitem__)
        fitted = fitted.model_copy(update={"default": fitted.blocks[best]})
    rows_note = ", ".join(f"{k}: {n} rows" for k, n in sorted(support.items()))
    return fitted.model_copy(
        update={"source": f"{source} ({rows_note}); default = {best}" if support else source}
    )


def _expressible(rows: pd.DataFrame, calibration: Calibration) -> pd.DataFrame:
    keep = [predict_row(r, calibration).skip_reason is None for _, r in rows.iterrows()]
    return rows[np.asarray(keep, dtype=bool)] if len(rows) else rows


def leave_one_out(measurements: pd.DataFrame, fitted: Calibration, *, max_evaluations: int = 60) -> pd.Series:
    """Relative error on each row when its block is refitted without it (warm-started)."""
    keys = measurements.apply(block_key_of_row, axis=1)
    out = pd.Series(np.nan, index=measurements.index, dtype=float)
    for key in sorted(keys.unique()):
        rows = _expressible(measurements[keys == key], fitted)
        for number, index in enumerate(rows.index, 1):
            # One line per refit: leave-one-out on the shipped file takes minutes.
            row_id = rows.loc[index, "id"]
            log.info("leave-one-out %s: refit %d of %d (without %s)", key, number, len(rows), row_id)
            rest = rows.drop(index)
            if not len(rest):
                continue
            refit = fit_block(rest, fitted, key, max_evaluations=max_evaluations)
            p = predict_row(rows.loc[index], _with_block(fitted, key, refit.block))
            out[index] = (p.predicted - float(rows.loc[index, "value"])) / float(rows.loc[index, "value"])
    return out
