"""Traffic traces: the load and the request mix, period by period, for elastic plans.

A trace is a CSV with one row per period::

    period_start,duration_h,requests_per_s[,share_<class>...]
    2026-01-05T00:00:00Z,1,12.5,0.2,0.1,0.7

``period_start`` is an ISO-8601 time, periods are contiguous (each starts where
the previous one ends), ``requests_per_s`` is the mean load of the period, and
``share_<class>`` columns (one per request class of the instance, summing to 1
per row) set the mix; without them every period uses the instance's shares.

Every problem is reported with the file, the row (as numbered in a spreadsheet,
header = row 1) and the fix: a gap or overlap, a negative or missing rate, an
unknown class, shares that do not sum to 1.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from planner.errors import SpecError
from planner.safe_input import excerpt, read_text
from planner.specs import RequestClass

REQUIRED = ("period_start", "duration_h", "requests_per_s")
SHARE_PREFIX = "share_"
SHARE_TOLERANCE = 1e-6
MAX_PERIOD_H = 8784.0
"""Longest period, hours (a leap year)."""
MAX_HORIZON_H = 10 * 8784.0
"""Longest horizon a trace may span, hours (ten years)."""
MAX_REQUESTS_PER_S = 1e9
"""Largest load of a period, requests/s (the bound of ``traffic.requests_per_s``)."""


@dataclass(frozen=True)
class Trace:
    """A validated trace: per-period start, hours, load, and class shares (periods x classes)."""

    path: str
    start: pd.DatetimeIndex
    duration_h: np.ndarray
    requests_per_s: np.ndarray
    shares: np.ndarray
    classes: tuple[str, ...]

    @property
    def periods(self) -> int:
        """Number of periods."""
        return len(self.duration_h)

    @property
    def hours(self) -> float:
        """Length of the horizon, hours."""
        return float(self.duration_h.sum())


def _row(i: int) -> int:
    """Spreadsheet row number of data row ``i`` (header is row 1)."""
    return i + 2


def load_trace(path: str | Path, classes: list[RequestClass]) -> Trace:
    """Read and validate a trace against an instance's request classes."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("no such trace file; check the path", path=path)
    text = read_text(path, fix="save the trace as UTF-8 comma-separated text")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SpecError(
            f"not a readable CSV ({err}); save the trace as comma-separated text", path=path
        ) from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise SpecError(
            f"missing column(s) {', '.join(missing)}; a trace needs {', '.join(REQUIRED)}", path=path
        )
    if frame.empty:
        raise SpecError("the trace has no periods; add at least one row", path=path)
    names = [c.name for c in classes]
    share_columns = [c for c in frame.columns if c.startswith(SHARE_PREFIX)]
    unknown = [c for c in share_columns if c[len(SHARE_PREFIX) :] not in names]
    if unknown:
        raise SpecError(
            f"unknown request class column(s) {', '.join(unknown)}; the instance's classes are "
            f"{', '.join(names)} (columns share_{names[0]}, ...)",
            path=path,
            field=unknown[0],
        )
    others = [c for c in frame.columns if c not in REQUIRED and c not in share_columns]
    if others:
        raise SpecError(f"unknown column(s) {', '.join(others)}; remove them", path=path, field=others[0])

    text_start = frame["period_start"].astype(str)  # a number is not a time (and not an epoch)
    start = pd.to_datetime(text_start, utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(start.isna().to_numpy())
    if len(bad):
        raise SpecError(
            f"row {_row(bad[0])}: period_start {excerpt(frame['period_start'].iloc[bad[0]])} is not an "
            "ISO-8601 time; write e.g. 2026-01-05T13:00:00Z",
            path=path,
            field="period_start",
        )
    duration = _numbers(frame, "duration_h", path)
    rate = _numbers(frame, "requests_per_s", path)
    for column, values, rule, wrong in (
        ("duration_h", duration, "positive", ~(values_in(duration, 0, MAX_PERIOD_H) & (duration > 0))),
        ("requests_per_s", rate, "non-negative", ~values_in(rate, 0, MAX_REQUESTS_PER_S)),
    ):
        rows = np.flatnonzero(wrong)
        if len(rows):
            limit = MAX_PERIOD_H if column == "duration_h" else MAX_REQUESTS_PER_S
            raise SpecError(
                f"row {_row(rows[0])}: {column} = {values[rows[0]]:g} must be {rule}, finite and at most "
                f"{limit:g}",
                path=path,
                field=column,
            )
    if duration.sum() > MAX_HORIZON_H:
        raise SpecError(
            f"the periods span {duration.sum():,.0f} h, more than {MAX_HORIZON_H:,.0f} h (ten years); "
            "plan a shorter horizon",
            path=path,
            field="duration_h",
        )
    start = pd.DatetimeIndex(start)
    try:
        ends = start[:-1] + pd.to_timedelta(duration[:-1], unit="h")
        start[-1] + pd.to_timedelta(duration[-1], unit="h")
    except (OverflowError, pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta):
        raise SpecError(
            "the periods end after the year 2262, past what the planner can date; use earlier "
            "period_start times",
            path=path,
            field="period_start",
        ) from None
    mismatch = np.flatnonzero(np.asarray(ends != start[1:]))
    if len(mismatch):
        i = mismatch[0] + 1
        kind = "gap" if start[i] > ends[i - 1] else "overlap"
        raise SpecError(
            f"row {_row(i)}: a {kind} before this period: the previous one ends at "
            f"{ends[i - 1].isoformat()} but this one starts at {start[i].isoformat()}; make periods "
            "contiguous",
            path=path,
            field="period_start",
        )

    default = np.array([c.share_fraction for c in classes])
    shares = np.tile(default, (len(frame), 1))
    if share_columns:
        missing_classes = [n for n in names if f"{SHARE_PREFIX}{n}" not in share_columns]
        if missing_classes:
            raise SpecError(
                "share columns must cover every class; add "
                + ", ".join(SHARE_PREFIX + n for n in missing_classes),
                path=path,
            )
        shares = np.column_stack([_numbers(frame, f"{SHARE_PREFIX}{n}", path) for n in names])
        negative = np.argwhere(shares < 0)
        if len(negative):
            i, k = negative[0]
            raise SpecError(
                f"row {_row(i)}: share_{names[k]} is negative", path=path, field=f"share_{names[k]}"
            )
        off = np.flatnonzero(np.abs(shares.sum(axis=1) - 1) > SHARE_TOLERANCE)
        if len(off):
            raise SpecError(
                f"row {_row(off[0])}: shares sum to {shares[off[0]].sum():g}; make each row's shares "
                "sum to 1",
                path=path,
            )
    return Trace(str(path), start, duration, rate, shares, tuple(names))


def values_in(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Which values are finite and within ``[low, high]``."""
    return np.isfinite(values) & (values >= low) & (values <= high)


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        raise SpecError(
            f"row {_row(bad[0])}: {column} {excerpt(frame[column].iloc[bad[0]])} is not a number",
            path=path,
            field=column,
        )
    return values.to_numpy(dtype=float)
