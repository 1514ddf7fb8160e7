"""Output folders as transactions: a study's files appear together, or the previous set stays.

Why it exists
    Writing ``frontier.csv``, ``frontier.png``, ... one by one (each atomically) still
    leaves a mix when a run is interrupted or the disk fills halfway: new CSVs beside an
    old plot and an old ``provenance.json``, or files of an earlier ``elastic`` run
    beside a new frontier. Here a run writes every file into a fresh hidden folder
    beside the target, records them in :data:`MANIFEST` last, and swaps the folder in
    whole (an atomic exchange on Linux, two renames elsewhere). Readers can trust a
    folder whose manifest lists its files; an interrupted run leaves the previous
    complete set (or nothing) and no stray temporary files in the target.

    The target is checked before any work (:func:`check_output_folder`): it must be
    creatable and writable, and may only hold files the planner wrote, so a swap never
    deletes a user's own files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from planner.errors import SpecError
from planner.report import _FILE_MODE, _UMASK, write_bytes_atomic

MANIFEST = ".disagg-manifest.json"
"""Written last into every output folder: the command and the files it wrote."""
PLANNER_FILES = frozenset(
    {
        "frontier.csv",
        "comparison.csv",
        "frontier.png",
        "periods.csv",
        "summary.csv",
        "elastic.png",
        "instance.yaml",
        "provenance.json",
        MANIFEST,
    }
)
"""Names earlier planner versions wrote without a manifest (a folder of only these may be replaced)."""
_RENAME_EXCHANGE = 2
"""``renameat2`` flag: swap two paths atomically (Linux 3.15+)."""


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of ``path`` that exists (the folder the first missing part would be created in)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def check_writable(path: Path, *, folder: bool, option: str = "--out") -> None:
    """Fail before any work unless ``path`` (a folder, or a file when ``folder`` is False) can be written."""
    path = Path(path).absolute()
    ancestor = _existing_ancestor(path)
    if ancestor == path:
        if folder and not path.is_dir():
            raise SpecError(f"{path} exists and is not a folder; choose a folder", field=option)
        if not folder and path.is_dir():
            raise SpecError(f"{path} is a folder; give a file name", field=option)
        ancestor = path if folder else path.parent
    elif not ancestor.is_dir():
        raise SpecError(
            f"{ancestor} is a file, so {path} cannot be created under it; choose another path", field=option
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".disagg-probe.", dir=ancestor)
    except OSError as err:
        raise SpecError(
            f"cannot write in {ancestor} ({err.strerror}); choose a writable path", field=option
        ) from None
    os.close(fd)
    Path(probe).unlink()


def foreign_files(out_dir: Path) -> list[str]:
    """Entries of an existing output folder the planner did not write (its manifest, or known names)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    listed = set(PLANNER_FILES)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        listed |= set(manifest.get("files", []))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    entries = sorted(p.name for p in out_dir.iterdir())
    return [
        name
        for name in entries
        if name not in listed and not (name.startswith(".") and name.endswith(".tmp"))
    ]


def check_output_folder(out_dir: Path, option: str = "--out") -> None:
    """Before any work: the folder can be written, and replacing it deletes nothing of the user's."""
    out_dir = Path(out_dir).absolute()
    check_writable(out_dir, folder=True, option=option)
    if out_dir == Path.cwd() or out_dir in Path.cwd().parents:
        raise SpecError(
            f"{out_dir} is the current folder or holds it; give a subfolder for the outputs", field=option
        )
    foreign = foreign_files(out_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SpecError(
            f"{out_dir} holds files the planner did not write ({shown}); the outputs replace the whole "
            "folder, so choose a new or empty folder",
            field=option,
        )


def write_output_set(
    out_dir: Path, files: dict[str, bytes], command: list[str], kind: str = ""
) -> tuple[list[Path], str]:
    """Write ``files`` into ``out_dir`` as one set; the paths and a note on what it replaced.

    ``kind`` (``frontier``, ``elastic``) is recorded in the manifest to name the set later.
    """
    out_dir = Path(out_dir).absolute()
    check_output_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        manifest = {
            "kind": kind,
            "command": command,
            "files": sorted(files),
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for entry in staging.iterdir():
            entry.chmod(_FILE_MODE)
        staging.chmod(0o777 & ~_UMASK)
        note = _swap_in(staging, out_dir)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise SpecError(
                f"cannot write the outputs into {out_dir} ({err.strerror or err}); the previous outputs "
                "are unchanged; free some space or choose another --out",
                field="--out",
            ) from None
        raise
    return [out_dir / name for name in files], note


def write_files_with_manifest(
    folder: Path, files: dict[str, bytes], command: list[str], kind: str, managed: tuple[str, ...] = ()
) -> list[Path]:
    """Write files into a folder that cannot be swapped whole (a sweep's, beside its ``cells/``).

    The old manifest goes first, each file is written atomically, files of ``managed``
    not in this set are removed, and the manifest (with each file's SHA-256) comes last:
    :func:`verify_output_set` tells a reader whether the set is complete and consistent.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    paths = []
    for name, data in files.items():
        write_bytes_atomic(folder / name, data)
        paths.append(folder / name)
    for name in managed:
        if name not in files:
            (folder / name).unlink(missing_ok=True)
    manifest = {
        "kind": kind,
        "command": command,
        "files": sorted(files),
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_bytes_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return paths


def verify_output_set(folder: Path) -> list[str]:
    """Why a folder's outputs are not one complete set (empty when they are): for readers."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return [f"no readable {MANIFEST}: the run that wrote {folder} did not finish"]
    problems = []
    for name in manifest.get("files", []):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        expected = manifest.get("sha256", {}).get(name)
        if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            problems.append(f"{name} is not the file this run wrote")
    return problems


def _swap_in(staging: Path, out_dir: Path) -> str:
    """Put ``staging`` at ``out_dir``, removing the previous folder; a note naming what was replaced."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return ""
    previous = _previous_command(out_dir)
    if not _exchange(staging, out_dir):
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        old.rmdir()
        out_dir.rename(old)
        staging.rename(out_dir)
        staging = old
    shutil.rmtree(staging, ignore_errors=True)
    return f"replaced the earlier outputs in {out_dir}" + (f" (from `{previous}`)" if previous else "")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _previous_command(out_dir: Path) -> str:
    """``disagg frontier`` for a folder a frontier run wrote (from its manifest), else empty."""
    try:
        kind = json.loads((out_dir / MANIFEST).read_text()).get("kind", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return f"disagg {kind}" if isinstance(kind, str) and kind else ""


def _remove_stale_partials(out_dir: Path) -> None:
    """Staging folders a killed run (SIGKILL, power loss) left beside the target."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.old"):
        shutil.rmtree(stale, ignore_errors=True)
