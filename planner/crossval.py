"""Leave one system out: the error to expect on a model x hardware pair the fit has never seen.

In-sample and leave-one-row-out errors hide a family the physics gets wrong: the other
rows of the same system (the same model on the same GPU) pull the refit back to it.
Here every system (all rows of one model x hardware pair) is held out in turn, the
blocks it touched are refitted on the other systems' rows, and its rows are predicted.

Every refit starts from the documented prior (the :class:`EfficiencyBlock` defaults),
not from a calibration fitted on the same data, so no held-out row leaks into its own
prediction. A held-out block left with no rows is dropped, so the prediction falls
back as it would for a new GPU generation (a related block, else the default block,
itself refitted without the system). Errors are summarised per family: dense or MoE
x GPU generation.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from planner.calibrate import Progress, block_key_of_row, expressible_rows, fit_block, fit_blocks
from planner.catalog import load_hardware, load_model
from planner.measurements import predict_row, validate
from planner.perf.calibration import Calibration

log = logging.getLogger(__name__)

PRIOR = Calibration(source="documented priors (EfficiencyBlock defaults), no data")
"""The data-free start of every cross-validation fit."""
MAX_EVALUATIONS = 200
"""Model evaluations per block refit (the full fit allows 400): enough to converge from the prior."""


def system_of(row: pd.Series) -> str:
    """The system a row measures: ``model@hardware``."""
    return f"{row['model']}@{row['hardware']}"


def family_of(row: pd.Series) -> str:
    """``dense/<generation>`` or ``moe/<generation>``."""
    kind = "moe" if load_model(str(row["model"])).is_moe else "dense"
    return f"{kind}/{load_hardware(str(row['hardware'])).generation}"


def cross_validate_systems(
    measurements: pd.DataFrame,
    *,
    start: Calibration = PRIOR,
    max_evaluations: int = MAX_EVALUATIONS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Per row: in-sample and leave-one-system-out prediction and error, system, family.

    The table is :func:`planner.measurements.validate` (of the fit on every row) plus
    ``system``, ``family``, ``cv_predicted`` and ``cv_error_fraction``; ``attrs`` hold the
    wall time and the system count.
    """
    began = time.monotonic()
    progress = progress or log.info
    if progress:
        progress(f"fitting every block on all {len(measurements)} rows (the in-sample reference)")
    full, _ = fit_blocks(
        measurements,
        start,
        source="cross-validation reference",
        allow_underdetermined=True,
        progress=progress,
    )
    table = validate(measurements, full)
    table["system"] = measurements.apply(system_of, axis=1).to_numpy()
    table["family"] = measurements.apply(family_of, axis=1).to_numpy()
    keys = measurements.apply(block_key_of_row, axis=1)
    predicted = pd.Series(np.nan, index=measurements.index, dtype=float)
    systems = sorted(table["system"].unique())
    for i, system in enumerate(systems, 1):
        held = measurements.index[table["system"].to_numpy() == system]
        if progress:
            progress(f"system {i}/{len(systems)}: {system} ({len(held)} rows) held out")
        refit = _refit_without(
            measurements.drop(held), keys.drop(held), set(keys[held]), full, start, max_evaluations
        )
        for index in held:
            p = predict_row(measurements.loc[index], refit)
            predicted[index] = p.predicted if p.skip_reason is None else np.nan
    measured = measurements["value"].astype(float)
    table["cv_predicted"] = predicted.to_numpy()
    table["cv_error_fraction"] = ((predicted - measured) / measured).to_numpy()
    table.attrs.update({"wall_time_s": time.monotonic() - began, "systems": len(systems)})
    return table


def _refit_without(
    rest: pd.DataFrame,
    rest_keys: pd.Series,
    touched: set[str],
    full: Calibration,
    start: Calibration,
    max_evaluations: int,
) -> Calibration:
    """``full`` with every touched block refitted on ``rest`` from ``start`` (dropped if no row is left)."""
    blocks = dict(full.blocks)
    rows_per_block = dict(full.rows_per_block)
    for key in sorted(touched):
        rows = expressible_rows(rest[rest_keys == key], start)
        if len(rows):
            blocks[key] = fit_block(rows, start, key, max_evaluations=max_evaluations).block
            rows_per_block[key] = len(rows)
        else:
            blocks.pop(key, None)
            rows_per_block.pop(key, None)
    best = max(sorted(rows_per_block), key=rows_per_block.__getitem__) if rows_per_block else None
    return full.model_copy(
        update={
            "blocks": blocks,
            "rows_per_block": rows_per_block,
            "default": blocks[best] if best else start.default,
        }
    )


def family_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per family and overall: rows, systems, median signed and absolute error, in-sample and held out."""

    def summarize(group: pd.DataFrame) -> pd.Series:
        cv = group["cv_error_fraction"].dropna()
        fit = group["error_fraction"].dropna()
        return pd.Series(
            {
                "rows": len(cv),
                "systems": group.loc[group["cv_error_fraction"].notna(), "system"].nunique(),
                "in_sample_median_abs_error_fraction": fit.abs().median() if len(fit) else np.nan,
                "cv_median_error_fraction": cv.median() if len(cv) else np.nan,
                "cv_median_abs_error_fraction": cv.abs().median() if len(cv) else np.nan,
                "cv_worst_abs_error_fraction": cv.abs().max() if len(cv) else np.nan,
            }
        )

    per_family = table.groupby("family", sort=True)[list(table.columns)].apply(summarize)
    overall = summarize(table).rename("all")
    return pd.concat([per_family, overall.to_frame().T]).rename_axis("family")
