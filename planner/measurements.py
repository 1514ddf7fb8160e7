"""Measured throughput rows (the ``reference/measurements.csv`` format) and the model's prediction of each.

Format, one row per measurement (the columns of the shared reference file):

========================  =================================================================
column                    meaning
========================  =================================================================
id                        unique row name
source                    where it was published
model, hardware           catalog names (or paths to spec files)
precision                 weight precision: bf16, fp8, fp4
isl, osl                  input / output tokens per request
mode                      ``aggregated``, ``prefill`` or ``decode`` (one pool alone)
instances                 identical instances measured together
gpus_per_instance         must equal tp x pp x attention_dp
tp, pp, ep, attention_dp  the layout
batch                     requests in flight per instance, or ``max`` for the largest that fits
metric                    ``output_tokens_per_s_total`` (all instances together),
                          ``input_tokens_per_s_per_node`` or ``output_tokens_per_s_per_node``
                          (a node is 8 GPUs), ``input_tokens_per_s_per_gpu`` or
                          ``output_tokens_per_s_per_gpu``; or a latency: ``ttft_ms`` (mean
                          time to first token) or ``tpot_ms`` (mean time per output token)
value                     the measured number in the metric's unit
notes                     free text
two_batch_overlap, eplb   optional serving options of the measured system (two-batch overlap;
                          expert-parallel load balancing with redundant experts): ``true`` or
                          ``false`` (also yes/no, 1/0); an absent column or empty cell is off
========================  =================================================================

For ``batch = max`` the planner searches the batch that maximizes throughput within
memory for the stated layout (and, co-located, the better of chunked and unchunked
prefill). A row the model cannot express is returned with a ``skip_reason``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from planner.catalog import load_hardware, load_model
from planner.errors import PlannerError, SpecError
from planner.perf.calibration import Calibration, ideal_block, load_calibration
from planner.perf.context import PerfContext
from planner.perf.layout import Layouts, layout_problems
from planner.perf.phases import aggregated, decode, prefill
from planner.perf.serving import ServingOptions
from planner.safe_input import excerpt
from planner.thin_blocks import block_support

DEFAULT_MEASUREMENTS = Path(__file__).parent / "reference" / "measurements.csv"

REQUIRED_COLUMNS = (
    "id",
    "model",
    "hardware",
    "precision",
    "isl",
    "osl",
    "mode",
    "instances",
    "gpus_per_instance",
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "batch",
    "metric",
    "value",
)
OPTION_COLUMNS = ("two_batch_overlap", "eplb")
"""Optional boolean columns: serving options of the measured system (planner.perf.serving)."""
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0", "")
METRICS = (
    "output_tokens_per_s_total",
    "input_tokens_per_s_per_node",
    "output_tokens_per_s_per_node",
    "input_tokens_per_s_per_gpu",
    "output_tokens_per_s_per_gpu",
    "ttft_ms",
    "tpot_ms",
)
LATENCY_METRICS = ("ttft_ms", "tpot_ms")
"""Metrics read from the layout's metrics at the chosen batch rather than its throughput."""
GPUS_PER_NODE_IN_METRICS = 8
MAX_BATCH_PER_RANK = 2048
"""Largest decode batch per attention-DP rank searched for ``batch = max`` (TRT-LLM's default cap)."""
MAX_PREFILL_TOKENS_PER_GPU = 16384
"""Largest prefill pass searched for ``batch = max`` (tokens per GPU per forward, as SGLang runs)."""


def load_measurements(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check a measurements file; errors name the file, the column and the fix."""
    path = Path(path) if path else DEFAULT_MEASUREMENTS
    try:
        frame = pd.read_csv(path, dtype={"batch": str})
    except FileNotFoundError:
        raise SpecError("no such file; check the path", path=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SpecError(f"not a readable CSV ({err}); fix the file", path=path) from None
    return check_measurements(frame, path)


def check_measurements(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Check a measurements table (as read from ``path``); options parsed to bools."""
    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise SpecError(
            f"missing column(s) {', '.join(missing)}; the format is documented in "
            "planner/measurements.py and matches reference/measurements.csv",
            path=path,
            field=missing[0],
        )
    check_measurement_values(frame, path)
    for column in ("isl", "osl", "instances", "gpus_per_instance", "tp", "pp", "ep", "attention_dp", "value"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[values.isna() | (values <= 0)]
        if len(bad):
            row = frame.loc[bad[0], "id"]
            raise SpecError(
                f"row {excerpt(row)}: {excerpt(frame.loc[bad[0], column])} is not a positive number; fix it",
                path=path,
                field=column,
            )
    _check_layout_gpus(frame, path)
    for column, allowed in (("mode", ("aggregated", "prefill", "decode")), ("metric", METRICS)):
        bad = frame.index[~frame[column].isin(allowed)]
        if len(bad):
            raise SpecError(
                f"row {excerpt(frame.loc[bad[0], 'id'])}: {excerpt(frame.loc[bad[0], column])} is not one of "
                f"{', '.join(allowed)}",
                path=path,
                field=column,
            )
    for column in OPTION_COLUMNS:
        frame[column] = _parse_flags(frame, column, path)
    for _, row in frame.iterrows():
        for kind, loader in (("model", load_model), ("hardware", load_hardware)):
            try:
                loader(str(row[kind]))
            except SpecError as err:
                raise SpecError(f"row '{row['id']}': {err.message}", path=path, field=kind) from None
    return frame


def _check_layout_gpus(frame: pd.DataFrame, path: Path) -> None:
    """``gpus_per_instance`` must equal tp x pp x attention_dp: a mismatch is a typo, never a skip."""
    tp, pp, dp, gpus = (frame[c].astype(int) for c in ("tp", "pp", "attention_dp", "gpus_per_instance"))
    bad = frame.index[gpus != tp * pp * dp]
    if len(bad):
        i = bad[0]
        layout = int(tp[i] * pp[i] * dp[i])
        raise SpecError(
            f"row '{frame.loc[i, 'id']}': gpus_per_instance {gpus[i]} != tp x pp x attention_dp = "
            f"{tp[i]} x {pp[i]} x {dp[i]} = {layout}; set gpus_per_instance to {layout} or fix the layout",
            path=path,
            field="gpus_per_instance",
        )


INTEGER_COLUMNS = ("isl", "osl", "instances", "gpus_per_instance", "tp", "pp", "ep", "attention_dp")
"""Columns holding whole numbers (a layout size or a token count)."""
MAX_MEASURED_INTEGER = 10_000_000
"""Largest token count, instance count or layout size a row may state."""
PRECISIONS = ("bf16", "fp8", "fp4")


def check_measurement_values(frame: pd.DataFrame, path: Path) -> None:
    """Refuse rows the model would misread: no rows, unknown precision, non-finite or fractional counts.

    Kept apart from the format checks above so the hardening stays one small layer.
    """
    if frame.empty:
        raise SpecError("the file has a header but no rows; add at least one measurement", path=path)

    def fail(i: object, column: str, what: str) -> SpecError:
        return SpecError(
            f"row {excerpt(frame.loc[i, 'id'])}: {excerpt(frame.loc[i, column])} {what}; fix it",
            path=path,
            field=column,
        )

    bad = frame.index[~frame["precision"].isin(PRECISIONS)]
    if len(bad):
        raise fail(bad[0], "precision", f"is not one of {', '.join(PRECISIONS)}")
    for column in (*INTEGER_COLUMNS, "value"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        present = ~np.isnan(values)
        infinite = frame.index[present & ~np.isfinite(values)]
        if len(infinite):
            raise fail(infinite[0], column, "is not a finite number")
        if column == "value":
            continue
        limit = frame.index[present & (np.abs(values) > MAX_MEASURED_INTEGER)]
        if len(limit):
            raise fail(limit[0], column, f"is larger than {MAX_MEASURED_INTEGER:,}")
        fractional = frame.index[present & (values != np.round(values))]
        if len(fractional):
            raise fail(fractional[0], column, "is not a whole number")
    batch = frame["batch"].map(lambda v: "" if pd.isna(v) else str(v)).str.strip()
    whole = batch.str.fullmatch(r"[0-9]{1,8}")
    bad = frame.index[~(whole | (batch == "max"))]
    if len(bad):
        raise fail(bad[0], "batch", "is neither a whole number (up to 8 digits) nor 'max'")


def require_predictable_rows(table: pd.DataFrame, path: str | Path) -> None:
    """A fit needs at least one row the model can predict; else say why the first was skipped."""
    if len(table) and (table["skip_reason"] != "").all():
        first = table.iloc[0]
        raise SpecError(
            f"none of the {len(table)} rows can be predicted, so there is nothing to fit (row "
            f"{excerpt(first['id'])}: {first['skip_reason']}); fix the rows or add measurable ones",
            path=path,
        )


def _parse_flags(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """An optional true/false column as bools; absent or empty means off."""
    if column not in frame.columns:
        return pd.Series(False, index=frame.index, dtype=bool)
    text = frame[column].map(lambda v: "" if pd.isna(v) else str(v)).str.strip().str.lower()
    bad = frame.index[~text.isin(_TRUE + _FALSE)]
    if len(bad):
        raise SpecError(
            f"row {excerpt(frame.loc[bad[0], 'id'])}: {excerpt(frame.loc[bad[0], column])} is not true or "
            "false (or yes/no, 1/0; empty means false); fix it",
            path=path,
            field=column,
        )
    return text.isin(_TRUE)


@dataclass(frozen=True)
class Prediction:
    """The model's number for one measurement row, or why it has none."""

    predicted: float
    batch: int | None
    skip_reason: str | None = None


def predict_row(
    row: pd.Series, calibration: Calibration | None = None, *, check_ceiling: bool = True
) -> Prediction:
    """Predict one measurement row's metric with the stated layout.

    ``check_ceiling`` also skips rows that claim more than the layout's physical ceiling
    (it does not depend on the calibration, so fits check it once up front).
    """
    model, hardware = load_model(str(row["model"])), load_hardware(str(row["hardware"]))
    tp, pp, ep, dp = (int(row[c]) for c in ("tp", "pp", "ep", "attention_dp"))
    if tp * pp * dp != int(row["gpus_per_instance"]):
        return Prediction(
            np.nan, None, f"gpus_per_instance {row['gpus_per_instance']} != tp x pp x attention_dp"
        )
    precision = str(row["precision"])
    try:
        ctx = PerfContext.build(model, hardware, precision, calibration)  # type: ignore[arg-type]
    except PlannerError as err:
        return Prediction(np.nan, None, str(err))
    isl, osl, mode = int(row["isl"]), int(row["osl"]), str(row["mode"])
    batch_text = str(row["batch"]).strip()
    if batch_text == "max":
        batches = _batch_grid(dp, mode, isl, tp)
    elif batch_text.isdigit() and int(batch_text) > 0:
        batches = np.array([int(batch_text)])
    else:
        return Prediction(np.nan, None, f"batch '{batch_text}' is neither a positive integer nor 'max'")
    layouts = Layouts.of(tp, pp, ep, dp, batches)
    options = ServingOptions.of(len(layouts), *(_flag(row, c) for c in OPTION_COLUMNS))
    problem = layout_problems(model, hardware, layouts, eplb=options.eplb)[0]
    if problem:
        return Prediction(np.nan, None, problem)
    metric = str(row["metric"])
    latency = metric if metric in LATENCY_METRICS else None
    best, best_batch = _best_rate(ctx, layouts, mode, isl, osl, options, latency=latency)
    if best_batch is None:
        return Prediction(np.nan, None, "no batch of this layout fits in memory")
    if latency:
        return Prediction(best, best_batch)
    scale = _metric_scale(metric, int(row["instances"]), tp * pp * dp)
    if not check_ceiling:
        return Prediction(best * scale, best_batch)
    ceiling, _ = _best_rate(replace(ctx, efficiency=ideal_block()), layouts, mode, isl, osl, options)
    if float(row["value"]) > ceiling * scale:
        return Prediction(
            np.nan,
            None,
            f"measured {float(row['value']):.0f} exceeds the physical ceiling {ceiling * scale:.0f} of this "
            "layout at the stated ISL/OSL (peak FLOP/s and bandwidth, no overheads); check the row's ISL/OSL",
        )
    return Prediction(best * scale, best_batch)


def _metric_scale(metric: str, instances: int, gpus_per_instance: int) -> float:
    """Factor from one instance's rate to the metric's unit (total, per 8-GPU node, per GPU)."""
    if metric == "output_tokens_per_s_total":
        return instances
    if metric.endswith("_per_node"):
        return GPUS_PER_NODE_IN_METRICS / gpus_per_instance
    return 1 / gpus_per_instance


def _flag(row: pd.Series, column: str) -> bool:
    """A serving option of a row (rows built by hand may lack the column: off)."""
    value = row.get(column, False)
    return bool(value) if isinstance(value, bool | np.bool_) else str(value).strip().lower() in _TRUE


def _best_rate(
    ctx: PerfContext,
    layouts: Layouts,
    mode: str,
    isl: int,
    osl: int,
    options: ServingOptions,
    *,
    latency: str | None = None,
) -> tuple[float, int | None]:
    """Highest instance rate (input tokens/s for prefill, output tokens/s otherwise) that fits.

    With ``latency`` (``ttft_ms`` or ``tpot_ms``), that latency at the highest-rate batch instead.
    """
    if mode == "prefill":
        candidates = [(prefill(ctx, layouts, isl, osl, options=options), "input_tokens_per_s")]
    elif mode == "decode":
        candidates = [(decode(ctx, layouts, isl, osl, options=options), "output_tokens_per_s")]
    else:
        candidates = [
            (aggregated(ctx, layouts, isl, osl, chunked_prefill=c, options=options), "output_tokens_per_s")
            for c in (True, False)
        ]
    best, best_batch, answer = -np.inf, None, np.nan
    for metrics, rate in candidates:
        values = np.where(metrics.fits, getattr(metrics, rate), -np.inf)
        i = int(np.argmax(values))
        if values[i] > best:
            best, best_batch = float(values[i]), int(layouts.batch[i])
            answer = float(getattr(metrics, latency)[i]) if latency else best
    return answer, best_batch


def _batch_grid(dp: int, mode: str, isl: int, tp: int) -> np.ndarray:
    """Batches searched for ``batch = max``: a geometric grid (x1.25) from one request per DP rank."""
    if mode == "prefill":
        top = max(1, MAX_PREFILL_TOKENS_PER_GPU * tp // isl) * dp
    else:
        top = MAX_BATCH_PER_RANK * dp
    grid = np.unique(np.round(dp * 1.25 ** np.arange(0, 80)).astype(np.int64))
    grid = grid[grid <= top]
    return np.unique(np.append(grid, top))


def validate(frame: pd.DataFrame, calibration: Calibration | None = None) -> pd.DataFrame:
    """Measured, predicted and relative error for every row; unexpressible rows carry a reason.

    ``calibration_block`` and ``calibration_rows`` say which block priced the row and how many
    measured rows that block was fitted on (planner.thin_blocks).
    """
    calibration = calibration or load_calibration()
    rows = []
    for _, row in frame.iterrows():
        p = predict_row(row, calibration)
        support = block_support(calibration, load_hardware(str(row["hardware"])), str(row["precision"]))  # type: ignore[arg-type]
        measured = float(row["value"])
        rows.append(
            {
                "id": row["id"],
                "model": row["model"],
                "hardware": row["hardware"],
                "precision": row["precision"],
                "isl": int(row["isl"]),
                "osl": int(row["osl"]),
                "mode": row["mode"],
                "metric": row["metric"],
                "measured": measured,
                "predicted": p.predicted,
                "error_fraction": (p.predicted - measured) / measured if p.skip_reason is None else np.nan,
                "batch": p.batch,
                "calibration_block": support.block,
                "calibration_rows": support.rows,
                "skip_reason": p.skip_reason or "",
            }
        )
    return pd.DataFrame(rows)
