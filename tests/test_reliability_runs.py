"""Issue 15, runs rather than inputs: output sets as transactions, run limits, sweep processes and Dask peers.

Each test is one of the issue's cases: an interrupted or failed write left a mix of old
and new files, a killed sweep left its workers running, a sweep with a timed-out cell
exited 0, a non-Dask peer or a worker-less cluster hung the sweep, and nothing bounded
a whole run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from planner import output_folder, sweep
from planner.cli import main
from planner.errors import SpecError
from planner.output_folder import MANIFEST, write_output_set

ROOT = Path(__file__).resolve().parent.parent
SMALL = "llama-3.1-70b-h100-8k-1k"
TRACE = ROOT / "instances" / "traces" / "diurnal-24h.csv"


def _messages(stderr: str) -> list[str]:
    """stderr without the progress lines (``[  1.2 s] ...``): what the command says to the user."""
    return [line for line in stderr.strip().splitlines() if not re.match(r"\[\s*[\d.]+ s\] ", line)]


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def grid_file(folder: Path, data: dict) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- output folders as transactions

OLD = {"frontier.csv": b"old,1\n", "frontier.png": b"old png", "provenance.json": b"{}\n"}
NEW = {"frontier.csv": b"new,2\n", "frontier.png": b"new png", "provenance.json": b'{"new": 1}\n'}


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MANIFEST}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_a_set_replaces_the_previous_set_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_output_set(out, OLD, ["disagg", "frontier"], "frontier")
    paths, note = write_output_set(out, {"periods.csv": b"p\n"}, ["disagg", "elastic"], "elastic")
    assert _contents(out) == {"periods.csv": b"p\n"}  # no stale frontier files beside the new set
    assert paths == [out.absolute() / "periods.csv"]
    assert "replaced the earlier outputs" in note
    assert "disagg frontier" in note
    assert json.loads((out / MANIFEST).read_text())["files"] == ["periods.csv"]
    assert _siblings(out) == []


@pytest.mark.parametrize(
    "failure",
    [KeyboardInterrupt(), SystemExit(143), OSError(errno.ENOSPC, "No space left on device")],
    ids=["sigint", "sigterm", "disk-full"],
)
def test_an_interrupted_write_keeps_the_previous_complete_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    out = tmp_path / "out"
    write_output_set(out, OLD, ["disagg", "frontier"])
    real = Path.write_bytes
    calls = []

    def fail_second(self: Path, data: bytes) -> int:
        calls.append(self.name)
        if len(calls) == 2:
            raise failure
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fail_second)
    expected = SpecError if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected):
        write_output_set(out, NEW, ["disagg", "frontier"])
    monkeypatch.undo()
    assert _contents(out) == OLD
    assert _siblings(out) == []  # no staging folder or .tmp file left behind


def test_an_interrupted_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"

    def interrupted(staging: Path, target: Path) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(output_folder, "_swap_in", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_output_set(out, NEW, ["disagg", "frontier"])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_staging_left_by_a_killed_run_is_cleaned_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = tmp_path / ".out.abc123.partial"
    stale.mkdir()
    (stale / "frontier.csv").write_text("half")
    write_output_set(out, NEW, ["disagg", "frontier"])
    assert _siblings(out) == []


def test_frontier_then_elastic_in_one_folder_leaves_only_the_elastic_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run("frontier", SMALL, "--set", "cluster.max_nodes=1", "--out", out)
    assert first.exit_code == 0, first.output
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,1\n2026-01-05T01:00:00Z,1,2\n"
    )
    second = run("elastic", SMALL, "--set", "cluster.max_nodes=1", "--trace", trace, "--out", out)
    assert second.exit_code in (0, 1), second.output
    names = {p.name for p in out.iterdir()}
    assert names == {
        "periods.csv",
        "summary.csv",
        "elastic.png",
        "instance.yaml",
        "provenance.json",
        MANIFEST,
    }
    assert "replaced the earlier outputs" in second.stdout
    assert "(from `disagg frontier`)" in second.stdout


# --------------------------------------------------------------------------- run-level time limit


@pytest.mark.slow
def test_run_time_limit_bounds_a_slow_valid_run(tmp_path: Path) -> None:
    """``max_gpus: 100000`` on a 1B model took 320 s; the run limit stops it and writes nothing."""
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "planner",
        "frontier",
        SMALL,
        "--set",
        "model=llama-3.2-1b",
        "--set",
        "cluster.max_nodes=null",
        "--set",
        "cluster.max_gpus=100000",
        "--run-time-limit-s",
        "2",
        "--out",
        str(out),
    ]
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - start < 200
    assert _messages(done.stderr) == [_messages(done.stderr)[0]]
    assert _messages(done.stderr)[0].startswith("error: ")
    assert "--run-time-limit-s 2" in done.stderr
    assert done.stdout == ""
    assert not out.exists()


@pytest.mark.slow
def test_run_time_limit_bounds_an_8760_period_elastic_plan(tmp_path: Path) -> None:
    """A year of hourly periods took 387 s and 1 GB; the run limit stops it, with one error line."""
    import pandas as pd

    start = pd.date_range("2026-01-01T00:00:00Z", periods=8760, freq="h")
    trace = tmp_path / "year.csv"
    pd.DataFrame(
        {"period_start": [t.isoformat() for t in start], "duration_h": 1, "requests_per_s": 2.0}
    ).to_csv(trace, index=False)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "planner", "elastic", SMALL, "--trace", str(trace), "--out", str(out)]
    done = subprocess.run(
        [*args, "--run-time-limit-s", "3"], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: the run took longer than --run-time-limit-s 3")
    assert len(done.stderr.strip().splitlines()) == 1  # no solver or Pyomo log lines
    assert not out.exists()


@pytest.mark.slow
def test_run_time_limit_stops_a_sweep_and_keeps_finished_cells(tmp_path: Path) -> None:
    grid = grid_file(
        tmp_path,
        {
            "base": SMALL,
            "axes": {"traffic.isl_tokens": [1024, 2048, 4096, 8192], "cluster.max_nodes": [2, 4]},
        },
    )
    out = tmp_path / "out"
    args = [sys.executable, "-m", "planner", "sweep", str(grid), "--out", str(out), "--workers", "1"]
    done = subprocess.run(
        [*args, "--no-progress", "--run-time-limit-s", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "--run-time-limit-s 1" in done.stderr
    assert "the finished cells are kept" in done.stderr
    assert not (out / "summary.csv").exists()


# --------------------------------------------------------------------------- sweeps: grid size, exit codes


def test_a_huge_grid_is_refused_before_enumeration(tmp_path: Path) -> None:
    big = {
        "base": SMALL,
        "axes": {
            "slo.ttft_ms_max": list(range(1000, 1010)),
            "traffic.isl_tokens": list(range(1000, 1010)),
            "traffic.osl_tokens": list(range(100, 110)),
            "traffic.requests_per_s": list(range(1, 11)),
            "cluster.max_gpus": list(range(1, 11)),
            "cluster.max_nodes": list(range(1, 11)),
            "layouts_per_pool": [1, 2, 3, 4, 5, 6, 7, 8],
            "hardware.gpus_per_node": [1, 2, 4, 8],
            "model.num_layers": list(range(10, 20)),
            "precision": ["fp8", "bf16"],
        },
    }
    start = time.perf_counter()
    result = run("sweep", grid_file(tmp_path, big), "--dry-run")
    assert time.perf_counter() - start < 10
    assert result.exit_code == 2, result.output
    assert "640,000,000 cells" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def threaded_cluster():
    """An in-process Dask cluster (one worker thread), so monkeypatches reach the cells."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        yield local


def test_a_sweep_with_a_timed_out_cell_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threaded_cluster
) -> None:
    from planner import frontier
    from planner.optimize.backends import TimeLimitError

    def timed_out(*args, **kwargs):
        raise TimeLimitError("the MIP solve hit --time-limit-s 0.1 before proving optimality")

    monkeypatch.setattr(frontier, "solve_frontier", timed_out)
    grid = grid_file(tmp_path, {"base": SMALL, "axes": {"cluster.max_nodes": [1]}})
    result = run("sweep", grid, "--out", tmp_path / "out", "--scheduler", threaded_cluster.scheduler_address)
    assert result.exit_code == 1, result.output
    assert "did not finish" in result.stderr
    assert "time-limit" in result.stderr
    assert not list((tmp_path / "out" / "cells").glob("*.json"))  # retried next time, not stored


# --------------------------------------------------------------------------- Dask peers


class _FakeService:
    """A TCP service on localhost that is not Dask: sends ``greeting`` (or nothing) and holds the line."""

    def __init__(self, greeting: bytes):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.greeting = greeting
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        held = []
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            if self.greeting:
                conn.sendall(self.greeting)
            held.append(conn)
        for conn in held:
            conn.close()
        self.server.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("greeting", "why"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "claims"),  # read as a length of exabytes by Dask's client
        (b"", "no handshake within 1 s"),  # an HTTP server waits for a request: Dask waited forever
    ],
    ids=["banner", "silent-http"],
)
def test_a_non_dask_scheduler_is_refused_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, greeting: bytes, why: str
) -> None:
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT_S", 1)
    service = _FakeService(greeting)
    try:
        grid = grid_file(tmp_path, {"base": SMALL, "axes": {"cluster.max_nodes": [1]}})
        start = time.monotonic()
        result = run(
            "sweep", grid, "--out", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{service.port}"
        )
        assert time.monotonic() - start < 30
    finally:
        service.close()
    assert result.exit_code == 2, result.output
    assert "does not answer like a Dask scheduler" in result.stderr
    assert why in result.stderr
    assert "Traceback" not in result.output


def test_a_dask_scheduler_without_workers_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(sweep, "SCHEDULER_TIMEOUT_S", 2)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        grid = grid_file(tmp_path, {"base": SMALL, "axes": {"cluster.max_nodes": [1]}})
        start = time.monotonic()
        result = run("sweep", grid, "--out", tmp_path / "out", "--scheduler", empty.scheduler_address)
        assert time.monotonic() - start < 60
    assert result.exit_code == 2, result.output
    assert "has no workers" in result.stderr


def test_workers_vanishing_mid_sweep_stop_it_with_a_resume_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep, "WORKERLESS_GRACE_S", 0.2)
    counts = iter([2, 0, 0, 0])
    check = sweep._workers_watch(lambda: next(counts), "tcp://h:8786")
    check()
    check()  # no workers: the grace period starts
    time.sleep(0.3)
    with pytest.raises(sweep.SweepIncompleteError, match="every worker .* left"):
        check()


def test_the_health_check_runs_while_cells_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures as cf

    monkeypatch.setattr(sweep, "HEALTH_CHECK_S", 0.05)
    pending: cf.Future = cf.Future()
    calls = []

    def healthy() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise sweep.SweepIncompleteError("gone")

    with pytest.raises(sweep.SweepIncompleteError):
        list(sweep._as_completed({pending: None}, healthy))  # type: ignore[dict-item]
    assert len(calls) == 3


# --------------------------------------------------------------------------- orphans


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_sweep_leaves_no_processes(tmp_path: Path, sig: signal.Signals) -> None:
    grid = grid_file(
        tmp_path,
        {
            "base": SMALL,
            # Enough points that the sweep is still running when the signal comes (a point takes ~0.1 s).
            "axes": {
                "traffic.isl_tokens": [1024, 2048, 4096, 8192],
                "traffic.osl_tokens": [128, 256, 512, 1024, 2048, 4096],
                "cluster.max_nodes": [2, 4],
            },
        },
    )
    args = [sys.executable, "-m", "planner", "sweep", str(grid), "--out", str(tmp_path / "out")]
    process = subprocess.Popen(
        [*args, "--workers", "2", "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(tree) < 3 and process.poll() is None:
            time.sleep(0.2)
            tree = _descendants(process.pid)
        assert len(tree) >= 3, "the pool never started"
        time.sleep(1.0)
        tree |= _descendants(process.pid)
        os.kill(process.pid, sig)
        process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(tree) == set(), "processes outlived the sweep"
        if sig == signal.SIGTERM:
            assert process.returncode == 143
            assert b"Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _alive(tree | _descendants(process.pid)):  # never leave the test's own orphans
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("command", ["frontier", "elastic"])
def test_a_full_disk_mid_set_keeps_the_previous_outputs_of_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    out = tmp_path / "out"
    trace = tmp_path / "trace.csv"
    trace.write_text("period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,1\n")
    args = [command, SMALL, "--set", "cluster.max_nodes=1", "--out", out]
    args += ["--trace", trace] if command == "elastic" else []
    assert run(*args).exit_code == 0
    before = _contents(out)
    real = Path.write_bytes
    calls = []

    def disk_full_on_second(self: Path, data: bytes) -> int:
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full_on_second)
    result = run(*args)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert len(_messages(result.stderr)) == 1
    assert _messages(result.stderr)[0].startswith("error: ")
    assert "No space left on device" in result.stderr
    assert "previous outputs are unchanged" in result.stderr
    assert _contents(out).keys() == before.keys()
    assert _siblings(out) == ["trace.csv"]  # no staging folder left beside the outputs


def test_an_unwritable_out_is_refused_before_the_solve_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-only folder case; root may write anywhere, so the refusal is simulated."""

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(output_folder.tempfile, "mkstemp", denied)
    start = time.monotonic()
    result = run("frontier", SMALL, "--out", tmp_path / "ro" / "out")
    assert time.monotonic() - start < 10
    assert result.exit_code == 2
    assert "cannot write in" in result.stderr
    assert "Permission denied" in result.stderr
    assert not (tmp_path / "ro").exists()


def test_sweep_outputs_carry_a_manifest_and_drop_stale_files(tmp_path: Path) -> None:
    from planner.output_folder import verify_output_set

    grid = grid_file(tmp_path, {"base": SMALL, "axes": {"cluster.max_nodes": [1]}})
    out = tmp_path / "out"
    first = run("sweep", grid, "--out", out, "--workers", "1", "--xlsx", "--no-progress")
    assert first.exit_code == 0, first.output
    assert (out / "sweep.xlsx").exists()
    assert verify_output_set(out) == []
    second = run("sweep", grid, "--out", out, "--workers", "1", "--no-progress")  # resumed, no --xlsx
    assert second.exit_code == 0, second.output
    assert not (out / "sweep.xlsx").exists()  # not left beside outputs it does not match
    assert verify_output_set(out) == []
    (out / "summary.csv").write_text("cell\n")  # a reader now sees the set is not what the run wrote
    assert verify_output_set(out) == ["summary.csv is not the file this run wrote"]
    (out / MANIFEST).unlink()  # as while a run is rewriting the merged outputs
    assert "did not finish" in verify_output_set(out)[0]


def test_a_sweep_stops_when_every_dask_worker_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The only worker is closed while a cell runs: the sweep reports it instead of waiting forever."""
    distributed = pytest.importorskip("distributed")
    from planner import frontier

    monkeypatch.setattr(sweep, "HEALTH_CHECK_S", 0.2)
    monkeypatch.setattr(sweep, "WORKERLESS_GRACE_S", 1.0)
    started = threading.Event()

    def slow(*args, **kwargs):
        started.set()
        time.sleep(5)
        raise frontier.InfeasibleError("never reached")

    monkeypatch.setattr(frontier, "solve_frontier", slow)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:

        def close_worker_once_busy() -> None:
            started.wait(60)
            local.scale(0)

        closer = threading.Thread(target=close_worker_once_busy, daemon=True)
        closer.start()
        grid = grid_file(tmp_path, {"base": SMALL, "axes": {"cluster.max_nodes": [1, 2]}})
        start = time.monotonic()
        result = run("sweep", grid, "--out", tmp_path / "out", "--scheduler", local.scheduler_address)
        closer.join(10)
    assert time.monotonic() - start < 60
    assert result.exit_code == 1, result.output
    assert "every worker of the Dask cluster" in result.stderr
    assert "resume" in result.stderr


def test_a_stopped_pool_leaves_no_manager_thread_for_the_exit_hook() -> None:
    """After an exception stops the pool, its manager thread is gone before the interpreter exits.

    CPython 3.11's exit hook writes to a live manager thread's wake-up pipe without a lock
    while the thread closes it; a SIGTERM'd sweep printed a traceback from that race. Without
    the join in ``_terminate_pool`` the thread is still alive here in about 6 runs of 10.
    """
    managers: list[threading.Thread] = []

    def stop_a_busy_pool() -> None:
        with sweep.open_executor(2, None) as (pool, _name, _check):
            for _ in range(4):
                pool.submit(time.sleep, 30)
            managers.append(pool._executor_manager_thread)  # shutdown() drops the pool's reference
            raise RuntimeError("stop")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            stop_a_busy_pool()
        assert managers[-1] is not None
        assert not managers[-1].is_alive()
