"""Sweeps: the exact frontier of every grid cell, on a process pool or a Dask cluster (docs/DESIGN.md §5).

Why it exists
    A study such as "does disaggregation pay off, per model x prompt shape x NVLink
    domain" is dozens of independent frontier solves. :func:`run_sweep` resolves
    every cell of a :class:`~planner.grid.Grid` up front (a bad value fails before
    anything runs), solves the cells on a ``concurrent.futures`` executor, and
    merges the results into one tidy frame with the axis values as columns.

Streaming and resume
    Each cell is keyed by :func:`cell_key`, a SHA-256 of its resolved question
    (instance with model and hardware specs inline, scenario, calibration), the
    solver and the planner version. As a cell finishes, the main process writes
    ``DIR/cells/<key>.json`` atomically (temporary file, then rename), so an
    interrupted sweep keeps every finished cell and never leaves a half file.
    Re-running the same command finds those files and solves only the rest; the
    merged outputs are rebuilt from the cell files at the end. Workers never
    touch ``DIR``, so a remote Dask cluster needs no shared file system.

Failure isolation
    A cell whose question has no answer (:class:`~planner.errors.InfeasibleError`)
    or is malformed (any :class:`~planner.errors.PlannerError`) returns its message
    as data: its summary row carries it in ``error`` and the sweep goes on. Those
    outcomes are deterministic, so they are stored and resumed like answers. A
    time-limit hit (machine-dependent) and an unexpected exception (a bug, a
    crashed worker) are reported in the row too but not stored, so a re-run tries
    the cell again.

Summary verdict (one row per cell, see :func:`summarize_frontier`)
    The verdict reads the gain of :mod:`planner.compare` (disaggregated over
    aggregated tokens/s per GPU, the best plan of each at the same interactivity
    target, exact): at the instance's ``slo.tokens_per_s_per_user_targets`` when it has
    any that both modes reach (geometric mean over them), else the *typical* gain over
    the decision range (where the better mode keeps at least a quarter of the best
    tokens/s per GPU). ``verdict_reads`` says which. With margin
    :data:`VERDICT_MARGIN` = 5%:

    - ``disaggregate``: gain at least 1.05, or only the disaggregated mode has a plan;
    - ``co-locate``: gain at most 1 / 1.05, or only the aggregated mode has a plan;
    - ``either``: in between;
    - empty when the cell failed.

    The step ratios' extremes over the whole comparison, tail included, are still
    reported (``max_``/``min_disaggregated_over_aggregated``); ``peak_gain`` is the
    largest gain within the decision range.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner import __version__
from planner.compare import gain_summary, step_comparison, verdict_gain
from planner.economics import COLUMNS as ECONOMICS_COLUMNS
from planner.economics import best_point_economics
from planner.errors import InfeasibleError, PlannerError, SpecError
from planner.grid import Grid, GridCell
from planner.output_folder import write_files_with_manifest
from planner.perf.calibration import Calibration
from planner.problem import Problem, resolve
from planner.report import write_bytes_atomic

VERDICT_MARGIN = 0.05
"""Relative gain in tokens/s per GPU below which the two modes count as equal (5%)."""
CELLS_DIR = "cells"
"""Subfolder of the output folder holding one finished cell per file, ``<key>.json``."""
MERGED_FILES = ("frontiers.parquet", "frontiers.csv", "summary.csv", "sweep.xlsx", "provenance.json")
"""The merged outputs a sweep may write (a stale one from an earlier run is removed)."""
RETRIED_ERRORS = ("time_limit", "internal")
"""Error kinds that are reported but not stored, so a re-run solves the cell again."""
SCHEDULER_TIMEOUT_S = 10
"""Seconds to wait for a Dask scheduler (and for its first worker) before giving up."""
HEALTH_CHECK_S = 2.0
"""Seconds between checks that the executor still has workers while cells run."""
WORKERLESS_GRACE_S = 30.0
"""How long a Dask cluster may have no workers mid-sweep before the sweep stops (a worker may restart)."""
MAX_HANDSHAKE_BYTES = 1 << 20
"""Largest first message a Dask scheduler sends (its handshake is a few hundred bytes)."""
POOLS = {"disaggregated": ("prefill", "decode"), "aggregated": ("aggregated",)}
"""The candidate tables a frontier builds per mode (as in :data:`planner.optimize.model.MODE_POOLS`)."""
SUMMARY_COLUMNS = (
    "best_disaggregated_tokens_per_s_per_gpu",
    "best_aggregated_tokens_per_s_per_gpu",
    "max_disaggregated_over_aggregated",
    "max_ratio_at_tokens_per_s_per_user",
    "min_disaggregated_over_aggregated",
    "typical_gain",
    "peak_gain",
    "peak_gain_at_tokens_per_s_per_user",
    "decision_range_high_tokens_per_s_per_user",
    "target_tokens_per_s_per_user",
    "gain_at_target",
    "verdict",
    "verdict_reads",
    "prefill_decode_gpu_ratio_min",
    "prefill_decode_gpu_ratio_max",
    "disaggregated_max_tokens_per_s_per_user",
    "aggregated_max_tokens_per_s_per_user",
    "disaggregated_points",
    "aggregated_points",
    *(f"best_{mode}_{column}" for mode in ("disaggregated", "aggregated") for column in ECONOMICS_COLUMNS),
)
"""Per-cell columns computed from the cell's frontier by :func:`summarize_frontier`."""


class SweepIncompleteError(PlannerError):
    """Some cells failed unexpectedly; the outputs are written and a re-run retries them."""

    exit_code = 1


@dataclass(frozen=True)
class SweepCell:
    """A grid cell resolved into the question it asks, with the key its result is stored under."""

    cell: GridCell
    problem: Problem
    key: str


@dataclass
class SweepResult:
    """What a sweep produced: the merged frames, and how this run got them."""

    frontiers: pd.DataFrame
    summary: pd.DataFrame
    cells: int
    solved: int
    resumed: int
    failed: int
    """Cells whose row carries an error (stored planner errors included)."""
    internal_errors: list[str] = field(default_factory=list)
    """Messages of cells that failed unexpectedly (not stored; a re-run retries them)."""
    retried_errors: list[str] = field(default_factory=list)
    """Messages of every cell a re-run retries: unexpected failures and solver time limits."""
    design_points: int = 0
    """Design points (candidate-table rows priced) evaluated by the cells solved in this run."""
    wall_time_s: float = 0.0
    paths: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- planning the cells


def cell_key(problem: Problem, calibration: Calibration | None, solver: str) -> str:
    """SHA-256 of what decides a cell's answer: the resolved question, calibration, solver, planner."""
    payload = {"input": problem.input_hash(calibration), "solver": solver, "planner": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


PROGRESS_CELLS = 500
"""Grids with more cells than this show a progress bar while their cells are checked."""


def resolve_cells(
    grid: Grid, calibration: Calibration | None, solver: str, *, progress: bool = False
) -> list[SweepCell]:
    """Resolve every cell (checking each value); the first bad one is a SpecError naming its axis."""
    cells = []
    every = grid.cells()
    if progress and len(every) > PROGRESS_CELLS:
        from tqdm import tqdm

        every = tqdm(every, desc="checking cells", unit="cell", file=sys.stderr, leave=False)
    for cell in every:
        try:
            problem = resolve(grid.base, cell.scenario, cell.overrides)
        except SpecError as err:
            raise SpecError(
                f"cell {cell.index + 1} of {grid.size} ({cell.describe()}) is invalid: {err}; "
                "fix or remove that value",
                path=grid.path,
                field=_axis_of(err, grid),
            ) from None
        cells.append(SweepCell(cell, problem, cell_key(problem, calibration, solver)))
    return cells


def _axis_of(err: SpecError, grid: Grid) -> str:
    """The grid field a resolve error points at (the axis or set key it starts with), else 'axes'."""
    target = err.field or ""
    fields = [*((a, f"axes.{a}") for a in grid.axes), *((k, f"set.{k}") for k in grid.fixed)]
    for name, where in fields:
        if target == name or target.startswith(f"{name}.") or name.startswith(f"{target}."):
            return where
    for name, where in fields:  # a spec field changed through model.<field> or hardware.<field>
        if target and name.partition(".")[0] in ("model", "hardware") and name.endswith(f".{target}"):
            return where
    return "axes"


def design_points(problem: Problem) -> dict[str, int]:
    """Rows the candidate tables of both modes will price, per pool (all request classes), without pricing."""
    from planner.class_features import ClassFeatures
    from planner.space import priced_rows

    counts = {}
    for pools in POOLS.values():
        for pool in pools:
            counts[pool] = sum(
                priced_rows(
                    problem.model,
                    problem.hardware,
                    pool,  # type: ignore[arg-type]
                    max_gpus=problem.max_gpus,
                    isl_tokens=cls.isl_tokens,
                    quantization=problem.instance.quantization_spec,
                    features=ClassFeatures.of(problem.instance, cls),
                )
                for cls in problem.request_classes
            )
    return counts


def dry_run_text(grid: Grid, cells: list[SweepCell], out_dir: Path | None = None) -> str:
    """What a sweep would do: cells, design points per pool, the largest cell, cells already stored."""
    shape = " x ".join(f"{axis} {len(values)}" for axis, values in grid.axes.items())
    per_cell = [design_points(sc.problem) for sc in cells]
    pools = Counter()
    for counts in per_cell:
        pools.update(counts)
    totals = [sum(c.values()) for c in per_cell]
    largest = int(np.argmax(totals))
    lines = [
        f"{grid.path}: {len(cells)} cells ({shape}) on base instance {grid.base}",
        f"design points to evaluate: {sum(totals):,} "
        f"({', '.join(f'{pool} {n:,}' for pool, n in pools.items())}); the largest cell has "
        f"{totals[largest]:,} ({cells[largest].cell.describe()})",
    ]
    if out_dir is not None:
        stored = sum(1 for sc in cells if load_record(Path(out_dir), sc.key) is not None)
        lines.append(f"already finished in {out_dir}: {stored} of {len(cells)} cells")
    lines.append("nothing was run (--dry-run)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- one cell (runs in a worker)


def solve_cell(
    problem: Problem, calibration: Calibration | None, solver: str, time_limit_s: float
) -> dict[str, Any]:
    """Solve one cell's frontier; a planner error becomes the record's ``error``. JSON-ready."""
    from planner.frontier import solve_frontier
    from planner.optimize.backends import TimeLimitError

    start = time.perf_counter()
    record: dict[str, Any] = {
        "label": problem.label,
        "error": "",
        "error_kind": "",
        "frontier": None,
        "funnels": {},
        "modes_without_plan": {},
        "solver": solver,
        "solver_version": "",
    }
    try:
        frontier = solve_frontier(problem, calibration, solver=solver, time_limit_s=time_limit_s)
    except PlannerError as err:
        kind = (
            "time_limit"
            if isinstance(err, TimeLimitError)
            else "infeasible"
            if isinstance(err, InfeasibleError)
            else "input"
        )
        record.update(error=str(err), error_kind=kind)
    else:
        frame = frontier.frame()
        record["frontier"] = {
            "columns": [str(c) for c in frame.columns],
            "rows": [[_plain(v) for v in row] for row in frame.itertuples(index=False)],
        }
        record["funnels"] = frontier.funnels
        record["modes_without_plan"] = frontier.infeasible
        record["solver_version"] = frontier.solver_version
    record["design_points"] = int(sum(f["evaluated"] for f in record["funnels"].values()))
    record["elapsed_s"] = time.perf_counter() - start
    return record


def _plain(value: Any) -> Any:
    """Numpy scalars to JSON values; NaN to null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _internal_record(problem: Problem, err: BaseException) -> dict[str, Any]:
    return {
        "label": problem.label,
        "error": f"internal error ({type(err).__name__}: {err}); re-run to retry, --debug for a traceback",
        "error_kind": "internal",
        "frontier": None,
        "funnels": {},
        "modes_without_plan": {},
        "design_points": 0,
        "elapsed_s": float("nan"),
    }


def record_frame(record: dict[str, Any]) -> pd.DataFrame:
    """A stored cell's frontier rows as a frame (empty when the cell failed)."""
    frontier = record.get("frontier")
    if not frontier:
        return pd.DataFrame()
    frame = pd.DataFrame(frontier["rows"], columns=frontier["columns"])
    for column in frame.columns:
        if frame[column].isna().all():
            frame[column] = np.nan
    return frame


# --------------------------------------------------------------------------- executors


MANAGER_JOIN_TIMEOUT_S = 10.0
"""How long a stopped pool's manager thread may take to notice its workers are gone."""


@contextlib.contextmanager
def open_executor(workers: int, scheduler: str | None) -> Iterator[tuple[cf.Executor, str, Any]]:
    """A local process pool of ``workers``, or a Dask cluster's executor.

    Yields the executor, a description, and a health check to call while waiting: it
    raises :class:`SweepIncompleteError` when the executor has lost all its workers.
    On any exception (Ctrl-C, SIGTERM, a run limit) the local pool's workers are
    terminated rather than awaited; workers also stop by themselves if this process
    dies (:func:`_watch_parent`).
    """
    if scheduler:
        with _dask_executor(scheduler) as opened:
            yield opened
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # Workers fork from a server that has already imported the planner (once per process).
        context.set_forkserver_preload(["planner.sweep"])
    pool = cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_watch_parent, initargs=(os.getpid(),)
    )
    try:
        yield pool, f"local process pool ({workers} workers)", lambda: None
    except BaseException:
        _terminate_pool(pool)
        raise
    pool.shutdown(wait=True, cancel_futures=True)


def _terminate_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a process pool now: pending cells cancelled, running workers terminated (then killed).

    Then wait (briefly) for the pool's manager thread to see its workers gone and finish: a
    manager thread still closing its wake-up pipe at interpreter exit races CPython 3.11's
    exit hook, which writes to that pipe unlocked, and a killed sweep printed
    "Exception ignored in: <module 'threading'>" with a traceback (later CPython releases take a
    lock there: python/cpython#125492).
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() drops the reference
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    if manager is not None:
        manager.join(timeout=MANAGER_JOIN_TIMEOUT_S)


def _watch_parent(parent_pid: int) -> None:
    """Pool worker initializer: exit as soon as the sweep's main process is gone, whatever killed it.

    A worker's parent is the forkserver, not the sweep, so ``PR_SET_PDEATHSIG`` alone
    would not fire; a daemon thread waits on a pidfd of the sweep process (Linux),
    or polls it elsewhere, and ends the worker when it exits.
    """
    import threading

    def wait_and_exit() -> None:
        try:
            fd = os.pidfd_open(parent_pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            import select

            select.select([fd], [], [])
        else:  # pragma: no cover - not Linux
            while _alive(parent_pid):
                time.sleep(1.0)
        os._exit(1)

    if not _alive(parent_pid):
        os._exit(1)
    threading.Thread(target=wait_and_exit, name="watch-sweep-process", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process with that pid
        return True
    return True


@contextlib.contextmanager
def _dask_executor(scheduler: str) -> Iterator[tuple[cf.Executor, str, Any]]:
    """A Dask cluster's executor: the peer checked to speak Dask, at least one worker present."""
    from planner.extras import require

    Client = require("distributed", "dask", "--scheduler (a Dask cluster)").Client  # noqa: N806
    probe_dask_scheduler(scheduler)
    fix = (
        "start one (`dask scheduler`, then `dask worker ADDRESS` on each machine with the planner "
        "installed) or fix the address"
    )
    try:
        client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except Exception as err:  # noqa: BLE001 - any failure to connect is the same user-facing problem
        raise SpecError(
            f"cannot reach a Dask scheduler at {scheduler} ({type(err).__name__}: {str(err)[:120]}); {fix}",
            field="--scheduler",
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=SCHEDULER_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - distributed raises TimeoutError or its own
            raise SpecError(
                f"the Dask scheduler at {scheduler} has no workers (none joined within "
                f"{SCHEDULER_TIMEOUT_S} s); start `dask worker {scheduler}` on machines with the planner "
                "installed",
                field="--scheduler",
            ) from None
        n = len(client.nthreads())
        yield (
            client.get_executor(pure=False),
            f"dask cluster {scheduler} ({n} workers)",
            _workers_watch(lambda: len(client.nthreads()), scheduler),
        )
    finally:
        client.close()


def _workers_watch(count: Any, scheduler: str) -> Any:
    """A health check failing once a cluster has had no workers for :data:`WORKERLESS_GRACE_S`."""
    since: list[float] = []

    def check() -> None:
        if count() > 0:
            since.clear()
            return
        since.append(time.monotonic()) if not since else None
        if time.monotonic() - since[0] >= WORKERLESS_GRACE_S:
            raise SweepIncompleteError(
                f"every worker of the Dask cluster at {scheduler} left and none came back within "
                f"{WORKERLESS_GRACE_S:g} s; the finished cells are kept, start workers and run the same "
                "command again to resume"
            )

    return check


def probe_dask_scheduler(address: str, timeout_s: float | None = None) -> None:
    """Fail fast unless ``address`` (``tcp://host:port``) answers with a Dask handshake.

    A Dask server sends its handshake as soon as a connection opens: an 8-byte length,
    then that many bytes. A web server sends nothing (Dask's client would wait for
    minutes) and other services send text whose first 8 bytes read as an absurd length
    (Dask's client would try to allocate exabytes). Other schemes (tls://, inproc://)
    are left to Dask.
    """
    import socket
    import struct
    from urllib.parse import urlsplit

    timeout_s = SCHEDULER_TIMEOUT_S if timeout_s is None else timeout_s

    if "://" in address and not address.startswith("tcp://"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise SpecError(f"'{address}' is not an address like tcp://host:8786; fix it", field="--scheduler")
    not_dask = (
        f"{address} does not answer like a Dask scheduler ({{why}}); check the address and port "
        "(`dask scheduler` prints it, usually tcp://host:8786)"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            header = _recv_exactly(sock, 8)
            (length,) = struct.unpack("Q", header)
            if not 0 < length <= MAX_HANDSHAKE_BYTES:
                raise SpecError(
                    not_dask.format(why=f"its first message claims {length:,} bytes"), field="--scheduler"
                )
            _recv_exactly(sock, length)
    except TimeoutError:
        raise SpecError(
            not_dask.format(why=f"no handshake within {timeout_s:g} s"), field="--scheduler"
        ) from None
    except ConnectionError as err:
        raise SpecError(
            not_dask.format(why=f"connection closed: {err.strerror or err}"), field="--scheduler"
        ) from None
    except OSError as err:
        raise SpecError(
            f"cannot reach a Dask scheduler at {address} ({err.strerror or err}); start one "
            "(`dask scheduler`) or fix the address",
            field="--scheduler",
        ) from None


def _recv_exactly(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed before a full message")
        data += chunk
    return data


def default_workers() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- the sweep


def check_sweep_folder(out_dir: Path) -> None:
    """Before any work: the output folder and its ``cells/`` subfolder can be written."""
    from planner.output_folder import check_writable

    check_writable(Path(out_dir), folder=True)
    cells = Path(out_dir) / CELLS_DIR
    if cells.exists() and not cells.is_dir():
        raise SpecError(
            f"{cells} is a file, but the sweep keeps its finished cells in that folder; move the file "
            "or choose another --out",
            field="--out",
        )
    if cells.is_dir():
        check_writable(cells, folder=True)


def cell_path(out_dir: Path, key: str) -> Path:
    """Where a finished cell is stored."""
    return Path(out_dir) / CELLS_DIR / f"{key}.json"


def load_record(out_dir: Path, key: str) -> dict[str, Any] | None:
    """A stored cell, or None when missing or unreadable (then it is solved again)."""
    path = cell_path(out_dir, key)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def run_sweep(
    grid: Grid,
    out_dir: Path,
    calibration: Calibration | None = None,
    *,
    solver: str = "highs",
    time_limit_s: float = 60.0,
    workers: int | None = None,
    scheduler: str | None = None,
    xlsx: bool = False,
    progress: bool = True,
    command: list[str] | None = None,
    cells: list[SweepCell] | None = None,
) -> SweepResult:
    """Solve every cell not yet stored in ``out_dir``, store each as it finishes, write the merged outputs.

    ``cells`` (from :func:`resolve_cells`) skips resolving the grid again.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    cells = cells if cells is not None else resolve_cells(grid, calibration, solver)
    records: dict[str, dict[str, Any]] = {}
    for sc in cells:
        stored = load_record(out_dir, sc.key)
        if stored is not None:
            records[sc.key] = stored
    todo: dict[str, SweepCell] = {}
    for sc in cells:
        if sc.key not in records:
            todo.setdefault(sc.key, sc)
    resumed = sum(1 for sc in cells if sc.key in records)
    shared = Counter(sc.key for sc in cells)

    workers = max(1, min(workers or default_workers(), len(todo) or 1))
    executor_text = "none (every cell already finished)"
    points = 0
    if todo:
        with open_executor(workers, scheduler) as (executor, executor_text, healthy):
            bar = _progress_bar(len(cells), resumed, progress)
            futures: dict[cf.Future, SweepCell] = {}
            try:
                for sc in todo.values():
                    futures[executor.submit(solve_cell, sc.problem, calibration, solver, time_limit_s)] = sc
                for future in _as_completed(futures, healthy):
                    sc = futures[future]
                    record = _outcome(future, sc)
                    record["key"] = sc.key
                    if record["error_kind"] not in RETRIED_ERRORS:
                        record["cell"] = sc.cell.values
                        data = json.dumps(record, indent=1, default=_plain).encode()
                        write_bytes_atomic(cell_path(out_dir, sc.key), data)
                    records[sc.key] = record
                    points += record["design_points"]
                    bar.set_postfix_str(_rate_text(points, time.perf_counter() - start), refresh=False)
                    bar.update(shared[sc.key])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                bar.close()

    frontiers, summary = merge(grid, cells, records)
    wall = time.perf_counter() - start
    failed = int((summary["error"] != "").sum())
    internal = [r["error"] for r in records.values() if r.get("error_kind") == "internal"]
    retried = [r["error"] for r in records.values() if r.get("error_kind") in RETRIED_ERRORS]
    result = SweepResult(
        frontiers,
        summary,
        cells=len(cells),
        solved=len(cells) - resumed,
        resumed=resumed,
        failed=failed,
        internal_errors=internal,
        retried_errors=retried,
        design_points=points,
        wall_time_s=wall,
    )
    files = render_sweep(grid, result, calibration, solver, records, executor_text, command, xlsx=xlsx)
    result.paths += write_files_with_manifest(out_dir, files, command or [], "sweep", MERGED_FILES)
    return result


def _as_completed(futures: dict[cf.Future, SweepCell], healthy: Any) -> Iterator[cf.Future]:
    """Futures as they finish, calling ``healthy()`` every :data:`HEALTH_CHECK_S` while none does."""
    pending = set(futures)
    while pending:
        done, pending = cf.wait(pending, timeout=HEALTH_CHECK_S, return_when=cf.FIRST_COMPLETED)
        yield from done
        if not done:
            healthy()


def _outcome(future: cf.Future, sc: SweepCell) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - a crashed cell must not stop the others
        return _internal_record(sc.problem, err)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="cell",
        desc="sweep",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def _rate_text(points: int, elapsed_s: float) -> str:
    return f"{points:,} design points ({points / max(elapsed_s, 1e-9):,.0f}/s)"


# --------------------------------------------------------------------------- merging and the summary


def merge(
    grid: Grid, cells: list[SweepCell], records: dict[str, dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The merged frontier rows (axis values first) and the summary (one row per cell), in grid order."""
    axis_columns = grid.axis_columns()
    frames, rows = [], []
    for sc in cells:
        record = records[sc.key]
        values = sc.cell.columns()
        axes = {column: values.get(column) for column in axis_columns}
        frame = record_frame(record)
        if len(frame):
            head = pd.DataFrame({"cell": sc.cell.index, **axes}, index=frame.index)
            frames.append(pd.concat([head, frame], axis=1))
        without = record.get("modes_without_plan") or {}
        rows.append(
            {
                "cell": sc.cell.index,
                **axes,
                "instance": record.get("label", sc.problem.label),
                **summarize_frontier(
                    frame,
                    sc.problem.instance.slo.tokens_per_s_per_user_targets,
                    "output_tokens_per_s"
                    if sc.problem.instance.objective == "max_throughput"
                    else "tokens_per_s_per_gpu",
                ),
                "design_points_evaluated": record.get("design_points", 0),
                "cell_wall_time_s": record.get("elapsed_s", float("nan")),
                "modes_without_plan": "; ".join(f"{m}: {why}" for m, why in without.items()),
                "error": record.get("error", ""),
                "cell_key": sc.key,
            }
        )
    frames = [f for f in frames if len(f)]
    frontiers = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["cell", *axis_columns, "mode"])
    )
    return frontiers, pd.DataFrame(rows)


def verdict(gain: float, has_disaggregated: bool, has_aggregated: bool) -> str:
    """``disaggregate``, ``co-locate`` or ``either`` (module docstring); empty with no plan at all."""
    if not (has_disaggregated or has_aggregated):
        return ""
    if not has_aggregated:
        return "disaggregate"
    if not has_disaggregated:
        return "co-locate"
    if gain >= 1 + VERDICT_MARGIN:
        return "disaggregate"
    if gain <= 1 / (1 + VERDICT_MARGIN):
        return "co-locate"
    return "either"


def summarize_frontier(frame: pd.DataFrame, targets=None, by: str = "tokens_per_s_per_gpu") -> dict[str, Any]:
    """One cell's summary columns (:data:`SUMMARY_COLUMNS`) from its frontier rows.

    ``targets``: the instance's ``slo.tokens_per_s_per_user_targets``; the verdict reads the
    gain there when both modes reach one of them (``verdict_reads`` = ``target``). ``by``: what
    the gain divides (``output_tokens_per_s`` for an owned fleet), as ``comparison.csv``.
    """
    nan = float("nan")
    targets = list(targets or [])
    out: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, nan)
    out["verdict"] = out["verdict_reads"] = ""
    out["target_tokens_per_s_per_user"] = ", ".join(f"{t:g}" for t in targets)
    out["disaggregated_points"] = out["aggregated_points"] = 0
    if frame.empty:
        return out
    modes = {m: frame[frame["mode"] == m] for m in ("disaggregated", "aggregated")}
    for mode, rows in modes.items():
        out[f"{mode}_points"] = len(rows)
        out.update(best_point_economics(rows, f"best_{mode}"))
        if len(rows):
            out[f"best_{mode}_tokens_per_s_per_gpu"] = float(rows["tokens_per_s_per_gpu"].max())
            out[f"{mode}_max_tokens_per_s_per_user"] = float(rows["tokens_per_s_per_user"].max())
    disagg = modes["disaggregated"]
    if len(disagg):
        ratio = disagg["prefill_decode_gpu_ratio"].astype(float)
        out["prefill_decode_gpu_ratio_min"] = float(ratio.min())
        out["prefill_decode_gpu_ratio_max"] = float(ratio.max())
    comparison = step_comparison(frame, by)
    ratio = comparison["disaggregated_over_aggregated"].dropna()
    if len(ratio):
        at = ratio.idxmax()
        out["max_disaggregated_over_aggregated"] = float(ratio.max())
        out["max_ratio_at_tokens_per_s_per_user"] = float(comparison.loc[at, "tokens_per_s_per_user"])
        out["min_disaggregated_over_aggregated"] = float(ratio.min())
    gain = nan
    if len(disagg) and len(modes["aggregated"]):
        gains = gain_summary(comparison, targets)
        for key in ("typical_gain", "peak_gain", "peak_gain_at_tokens_per_s_per_user", "gain_at_target"):
            out[key] = gains[key]
        out["decision_range_high_tokens_per_s_per_user"] = gains["decision_range_high_tokens_per_s_per_user"]
        gain, out["verdict_reads"] = verdict_gain(gains)
    has = {m: bool(len(rows)) for m, rows in modes.items()}
    out["verdict"] = verdict(gain, has["disaggregated"], has["aggregated"])
    if out["verdict"] and not out["verdict_reads"]:
        out["verdict_reads"] = "one mode"
    return out


# --------------------------------------------------------------------------- output files


def render_sweep(
    grid: Grid,
    result: SweepResult,
    calibration: Calibration | None,
    solver: str,
    records: dict[str, dict[str, Any]],
    executor: str,
    command: list[str] | None,
    *,
    xlsx: bool = False,
) -> dict[str, bytes]:
    """Every merged output file, rendered in memory: name -> bytes."""
    frontiers, summary = _uniform(result.frontiers), _uniform(result.summary)
    parquet = io.BytesIO()
    frontiers.to_parquet(parquet, index=False)
    files = {
        "frontiers.parquet": parquet.getvalue(),
        "frontiers.csv": frontiers.to_csv(index=False).encode(),
        "summary.csv": summary.to_csv(index=False).encode(),
    }
    if xlsx:
        book = io.BytesIO()
        with pd.ExcelWriter(book, engine="openpyxl") as writer:
            summary.to_excel(writer, sheet_name="summary", index=False)
            frontiers.to_excel(writer, sheet_name="frontiers", index=False)
        files["sweep.xlsx"] = book.getvalue()
    info = sweep_provenance(grid, result, calibration, solver, records, executor, command)
    files["provenance.json"] = (json.dumps(info, indent=2, default=_plain) + "\n").encode()
    return files


def _uniform(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding several value types (e.g. 8 and '72') become text, for Parquet."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column] if v is not None and v == v}
            if len(kinds) > 1:
                frame[column] = [None if v is None or v != v else str(v) for v in frame[column]]
    return frame


def sweep_provenance(
    grid: Grid,
    result: SweepResult,
    calibration: Calibration | None,
    solver: str,
    records: dict[str, dict[str, Any]],
    executor: str,
    command: list[str] | None,
) -> dict[str, Any]:
    """What produced these files: versions, the grid and its hash, the cell keys, how the run went."""
    keys = sorted({k for k in result.summary["cell_key"]}) if len(result.summary) else []
    try:
        grid_sha = hashlib.sha256(Path(grid.path).read_bytes()).hexdigest()
    except OSError:
        grid_sha = ""
    return {
        "planner_version": __version__,
        "solver": solver,
        "solver_versions": sorted({r.get("solver_version", "") for r in records.values()} - {""}),
        "pyomo_version": version("pyomo"),
        "python_version": platform.python_version(),
        "grid": grid.path,
        "grid_sha256": grid_sha,
        "grid_spec": grid.as_data(),
        "sweep_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "calibration": calibration.source if calibration is not None else "shipped defaults",
        "cells": result.cells,
        "cells_solved_this_run": result.solved,
        "cells_resumed": result.resumed,
        "cells_with_errors": result.failed,
        "design_points_evaluated_this_run": result.design_points,
        "design_points_evaluated_all_cells": int(result.summary["design_points_evaluated"].sum())
        if len(result.summary)
        else 0,
        "wall_time_s": round(result.wall_time_s, 3),
        "executor": executor,
        "command": command or [],
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def sweep_summary_text(result: SweepResult) -> str:
    """A few lines for the terminal: cells, time, design points, verdicts, errors."""
    lines = [
        f"{result.cells} cells: {result.solved} solved, {result.resumed} resumed from earlier runs, "
        f"{result.failed} with errors; {result.wall_time_s:,.1f} s, "
        f"{_rate_text(result.design_points, result.wall_time_s)} this run"
    ]
    if len(result.summary):
        counts = result.summary["verdict"].replace("", "error").value_counts()
        lines.append("verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()))
    for _, row in result.summary[result.summary["error"] != ""].head(5).iterrows():
        lines.append(f"  cell {row['cell']} ({row['instance']}): {row['error']}")
    return "\n".join(lines)
