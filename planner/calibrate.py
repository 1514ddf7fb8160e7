"""Fit the efficiency blocks to measured throughput, and say honestly how well they generalize.

One block per hardware generation x precision (never one per row): the rows of a
block are fitted together by bounded least squares on the log of
predicted / measured (scipy's trust-region reflective solver), with a weak pull
towards the starting values so constants the rows cannot identify stay put.
Leave-one-out refits without each row in turn and predicts it, which is the
error a user should expect on a configuration that was not in the data.

The fit protects itself: a block with fewer distinct measured configurations
than free constants is refused unless the caller allows it (the surplus
constants would be set by noise), and every fitted block reports which
constants its rows do not identify (a zero column of the Jacobian of the log
errors) and which ended on a bound. A fit with no predictable row is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from planner.catalog import load_hardware
from planner.errors import SpecError
from planner.measurements import LATENCY_METRICS, OPTION_COLUMNS, REQUIRED_COLUMNS, predict_row
from planner.perf.calibration import Calibration, EfficiencyBlock

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
"""Receives one line of progress text; by default the module's logger at INFO (planner.progress)."""

FITTED_FIELDS = (
    "gemm_efficiency_fraction",
    "gemm_half_saturation_tokens",
    "grouped_gemm_efficiency_fraction",
    "grouped_gemm_half_saturation_tokens",
    "attention_efficiency_fraction",
    "memory_efficiency_fraction",
    "layer_overhead_us",
    "moe_load_imbalance_ratio",
    "attention_dp_balance_fraction",
)
"""Constants the fit can move (:func:`fitted_fields`: the ones a block's rows can). Memory capacity
constants stay at their documented values, and the per-fabric collective latencies at their fit to
collective microbenchmarks (planner.perf). The fixed cost of a step is fitted per layer
(``layer_overhead_us``: kernel launches scale with depth), while ``step_overhead_ms`` stays at its
starting value: the rows are mostly maximum-throughput rows, where a per-step and a per-layer constant
are collinear, and fitting both let one DeepSeek-R1 batch-1 row set a per-step cost that slowed every
small dense model at batch 1 by the same 7.6 ms."""

PRIOR_WEIGHT = 0.01
"""Strength of the pull towards the starting block, per log-unit, relative to one row's log error."""

CONFIGURATION_COLUMNS = tuple(
    c
    for c in (*REQUIRED_COLUMNS, *OPTION_COLUMNS)
    if c not in ("id", "instances", "gpus_per_instance", "metric", "value")
)
"""What makes two rows distinct measurements (the metric and instance count only rescale one)."""

IDENTIFIED_RATIO = 1e-3
"""A constant is identified when its Jacobian column is at least this fraction of the largest one;
the rank of the Jacobian counts the combinations of constants the rows pin down."""
AT_BOUND_LOG_TOLERANCE = 1e-3
"""A fitted constant within this log-distance (0.1%) of a bound sits on that bound."""
COST_TOLERANCE = 1e-4
"""Stop when a step changes the squared log error (or the log-constants) by less than 0.01%:
far below the data's scatter, and it ends the long flat tail of the solver's default 1e-8."""
PROGRESS_EVERY_S = 5.0
"""Seconds between progress lines during one block's fit."""


LATENCY_FITTED_FIELDS = ("layer_overhead_us",)
"""Constants fitted only in a block that has a latency row (``ttft_ms``/``tpot_ms``): throughput rows
at the maximum-throughput end cannot tell a fixed per-layer time from a slower GEMM or memory, and
fitting it from them alone gave Hopper 150 us per layer, which cut Llama-3.1-70B's capacity at 60
tokens/s per user sevenfold. Without such a row the constant keeps its starting value."""


def fitted_fields(rows: pd.DataFrame) -> tuple[str, ...]:
    """The constants a block's rows can move.

    :data:`FITTED_FIELDS`, less the latency-only ones when no row measures a latency.
    """
    has_latency = rows["metric"].isin(LATENCY_METRICS).any() if len(rows) else False
    return tuple(f for f in FITTED_FIELDS if has_latency or f not in LATENCY_FITTED_FIELDS)


FIT_START_FLOOR = {"layer_overhead_us": 30.0}
"""Where the fit starts a constant whose documented default is 0 (the fit works on its log, which
cannot move from 0): 30 us per layer, a few kernel launches of about 5 us each."""


def _bounds(name: str) -> tuple[float, float]:
    field = EfficiencyBlock.model_fields[name]
    lower = next(m.ge for m in field.metadata if getattr(m, "ge", None) is not None)
    upper = next(m.le for m in field.metadata if getattr(m, "le", None) is not None)
    return float(max(lower, 1e-3)), float(upper)


def block_key_of_row(row: pd.Series) -> str:
    """The ``generation/precision`` key a measurement row calibrates."""
    return f"{load_hardware(str(row['hardware'])).generation}/{row['precision']}"


def distinct_configurations(rows: pd.DataFrame) -> int:
    """Distinct measurements: configuration x quantity (throughput, TTFT or TPOT).

    A throughput restated per node or per GPU, or a repeated row, counts once.
    """
    if not len(rows):
        return 0
    columns = [c for c in CONFIGURATION_COLUMNS if c in rows.columns]
    quantity = rows["metric"].where(rows["metric"].isin(LATENCY_METRICS), "throughput")
    return len(rows[columns].astype(str).assign(quantity=quantity).drop_duplicates())


@dataclass(frozen=True)
class BlockFit:
    """One fitted block, the rows it was fitted on, and how well they determine it."""

    key: str
    block: EfficiencyBlock
    row_ids: tuple[str, ...]
    log_rmse: float
    distinct_rows: int = 0
    """Distinct measured configurations among the rows."""
    identified_constants: int = 0
    """Rank of the Jacobian of the rows' log errors: independent combinations the rows pin down."""
    unidentified: tuple[str, ...] = ()
    """Constants no row is sensitive to; they stay near their starting values."""
    at_bounds: tuple[str, ...] = ()
    """Constants that ended on a bound, as ``name=value (lower|upper bound)``."""
    fields: tuple[str, ...] = FITTED_FIELDS
    """The constants this fit moved (:func:`fitted_fields` of its rows)."""

    @property
    def underdetermined(self) -> bool:
        """Fewer distinct rows than free constants."""
        return self.distinct_rows < len(self.fields)

    def warnings(self) -> list[str]:
        """One sentence per problem a user should know about this block's fit."""
        out = []
        if self.underdetermined:
            out.append(
                f"block {self.key}: {self.distinct_rows} distinct rows for {len(self.fields)} free "
                "constants; the fit is under-determined"
            )
        if self.unidentified:
            out.append(
                f"block {self.key}: no row constrains {', '.join(self.unidentified)}; kept near the starting "
                "values"
            )
        if self.at_bounds:
            out.append(
                f"block {self.key}: {', '.join(self.at_bounds)}: the rows push past the physical range, so "
                "another term of the model is probably missing or a row is wrong"
            )
        return out


def _with_block(calibration: Calibration, key: str, block: EfficiencyBlock) -> Calibration:
    return calibration.model_copy(update={"blocks": {**calibration.blocks, key: block}})


def _log_errors(rows: pd.DataFrame, calibration: Calibration) -> np.ndarray:
    errors = []
    for _, row in rows.iterrows():
        p = predict_row(row, calibration, check_ceiling=False)
        errors.append(np.log(max(p.predicted, 1e-9) / float(row["value"])) if p.skip_reason is None else 0.0)
    return np.asarray(errors)


def fit_block(
    rows: pd.DataFrame,
    calibration: Calibration,
    key: str,
    *,
    max_evaluations: int = 400,
    progress: Progress | None = None,
) -> BlockFit:
    """Fit one block's constants to its rows (bounded least squares on log error)."""
    start = calibration.blocks.get(key, calibration.default)
    fields = fitted_fields(rows)
    lower, upper = zip(*(_bounds(f) for f in fields), strict=True)
    x0 = np.log([max(getattr(start, f), FIT_START_FLOOR.get(f, 0.0)) for f in fields])
    lo, hi = np.log(lower), np.log(upper)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    def block_at(x: np.ndarray) -> EfficiencyBlock:
        values = dict(zip(fields, np.clip(np.exp(x), lower, upper), strict=True))
        return start.model_copy(update={k: float(v) for k, v in values.items()})

    progress = progress or log.info
    clock = {"evaluations": 0, "last": time.monotonic()}

    def residuals(x: np.ndarray) -> np.ndarray:
        errors = _log_errors(rows, _with_block(calibration, key, block_at(x)))
        clock["evaluations"] += 1
        if progress and time.monotonic() - clock["last"] >= PROGRESS_EVERY_S:
            clock["last"] = time.monotonic()
            rms = float(np.sqrt(np.mean(errors**2))) if len(errors) else 0.0
            progress(f"  {key}: {clock['evaluations']} model evaluations, rms log error {rms:.3f}")
        return np.concatenate([errors, PRIOR_WEIGHT * (x - x0)])

    result = least_squares(
        residuals,
        x0,
        bounds=(lo, hi),
        method="trf",
        diff_step=0.02,
        max_nfev=max_evaluations,
        x_scale=1.0,
        ftol=COST_TOLERANCE,
        xtol=COST_TOLERANCE,
    )
    block = EfficiencyBlock.model_validate(block_at(result.x).model_dump())
    errors = residuals(result.x)[: len(rows)]
    jacobian = np.atleast_2d(result.jac)[: len(rows)]
    column_norms = np.linalg.norm(jacobian, axis=0)
    scale = column_norms.max() if len(rows) and column_norms.max() > 0 else 1.0
    identified = column_norms >= IDENTIFIED_RATIO * scale
    singular = np.linalg.svd(jacobian, compute_uv=False) if len(rows) else np.zeros(0)
    return BlockFit(
        key,
        block,
        tuple(rows["id"]),
        float(np.sqrt(np.mean(errors**2))) if len(rows) else 0.0,
        distinct_rows=distinct_configurations(rows),
        identified_constants=int((singular > IDENTIFIED_RATIO * scale).sum()),
        unidentified=tuple(f for f, ok in zip(fields, identified, strict=True) if not ok),
        at_bounds=_at_bounds(block, result.x, (lo, hi), identified, fields),
        fields=fields,
    )


def _at_bounds(
    block: EfficiencyBlock,
    x: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    identified: np.ndarray,
    fields: tuple[str, ...],
) -> tuple[str, ...]:
    """Identified constants whose fitted log-value sits on a bound."""
    lo, hi = bounds
    out = []
    for name, value, low, high, ok in zip(fields, x, lo, hi, identified, strict=True):
        side = (
            "lower"
            if value <= low + AT_BOUND_LOG_TOLERANCE
            else "upper"
            if value >= high - AT_BOUND_LOG_TOLERANCE
            else ""
        )
        if side and ok:
            out.append(f"{name}={getattr(block, name):.4g} ({side} bound)")
    return tuple(out)


def fit_calibration(
    measurements: pd.DataFrame,
    start: Calibration,
    *,
    source: str,
    allow_underdetermined: bool = False,
    progress: Progress | None = None,
) -> Calibration:
    """Fit every block that has expressible rows; other blocks stay as they were (see :func:`fit_blocks`)."""
    return fit_blocks(
        measurements, start, source=source, allow_underdetermined=allow_underdetermined, progress=progress
    )[0]


def fit_blocks(
    measurements: pd.DataFrame,
    start: Calibration,
    *,
    source: str,
    allow_underdetermined: bool = False,
    progress: Progress | None = None,
    path: str | None = None,
) -> tuple[Calibration, list[BlockFit]]:
    """Fit every block that has expressible rows and say how well each is determined.

    The ``default`` block (for GPU generations with no data) becomes the fitted block
    with the most rows: the best-supported estimate of what software achieves.
    ``rows_per_block`` records the rows behind each block. Raises
    :class:`~planner.errors.SpecError` when no row can be predicted, or when a block has
    fewer distinct rows than free constants and ``allow_underdetermined`` is off.
    """
    progress = progress or log.info
    keys = measurements.apply(block_key_of_row, axis=1)
    groups = {key: expressible_rows(measurements[keys == key], start) for key in sorted(keys.unique())}
    groups = {key: rows for key, rows in groups.items() if len(rows)}
    if not groups:
        raise SpecError(
            f"none of the {len(measurements)} rows can be predicted (run `disagg validate --measurements` on "
            "the file to see each row's reason); nothing to fit",
            path=path,
        )
    free = {k: len(fitted_fields(r)) for k, r in groups.items()}
    thin = {k: distinct_configurations(r) for k, r in groups.items()}
    thin = {k: n for k, n in thin.items() if n < free[k]}
    if thin and not allow_underdetermined:
        listed = ", ".join(
            f"{k} has {n} distinct measured configuration(s) for {free[k]}" for k, n in thin.items()
        )
        raise SpecError(
            f"under-determined fit: {listed} free constants; add rows of that GPU generation and precision "
            "(other ISL/OSL, layouts or batches) or pass --allow-underdetermined to fit anyway with the "
            "unidentified constants held near their starting values",
            path=path,
        )
    fitted, fits = start, []
    for i, (key, rows) in enumerate(groups.items(), 1):
        if progress:
            progress(f"fitting block {i}/{len(groups)} {key}: {len(rows)} rows, {free[key]} constants")
        began = time.monotonic()
        fit = fit_block(rows, fitted, key, progress=progress)
        fitted = _with_block(fitted, key, fit.block)
        fits.append(fit)
        if progress:
            progress(f"  {key}: rms log error {fit.log_rmse:.3f} in {time.monotonic() - began:.1f} s")
    support = {fit.key: len(fit.row_ids) for fit in fits}
    best = max(sorted(support), key=support.__getitem__)
    rows_note = ", ".join(f"{k}: {n} rows" for k, n in sorted(support.items()))
    calibration = fitted.model_copy(
        update={
            "default": fitted.blocks[best],
            "rows_per_block": {**start.rows_per_block, **support},
            "source": f"{source} ({rows_note}); default = {best}",
        }
    )
    return calibration, fits


def expressible_rows(rows: pd.DataFrame, calibration: Calibration) -> pd.DataFrame:
    """The rows the model can predict (skipped rows carry their reason in ``validate``)."""
    keep = [predict_row(r, calibration).skip_reason is None for _, r in rows.iterrows()]
    return rows[np.asarray(keep, dtype=bool)] if len(rows) else rows


def leave_one_out(
    measurements: pd.DataFrame,
    fitted: Calibration,
    *,
    max_evaluations: int = 60,
    progress: Progress | None = None,
) -> pd.Series:
    """Relative error on each row when its block is refitted without it (warm-started)."""
    keys = measurements.apply(block_key_of_row, axis=1)
    progress = progress or log.info
    out = pd.Series(np.nan, index=measurements.index, dtype=float)
    done = 0
    for key in sorted(keys.unique()):
        rows = expressible_rows(measurements[keys == key], fitted)
        for index in rows.index:
            done += 1
            if progress:
                progress(f"leave-one-out {done}/{len(measurements)}: {rows.loc[index, 'id']}")
            rest = rows.drop(index)
            if not len(rest):
                continue
            refit = fit_block(rest, fitted, key, max_evaluations=max_evaluations)
            p = predict_row(rows.loc[index], _with_block(fitted, key, refit.block))
            out[index] = (p.predicted - float(rows.loc[index, "value"])) / float(rows.loc[index, "value"])
    return out
