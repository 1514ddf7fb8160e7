"""Execute every notebook in ``notebooks/`` through a real Jupyter kernel; any failing cell fails the test.

The notebooks are jupytext percent-format scripts (``NN_name.py``). Each is read
with jupytext and run by nbclient in a ``python3`` kernel whose working directory
is ``notebooks/`` (as when a user opens it in Jupyter) and whose ``PYTHONPATH``
starts with this checkout, so the kernel imports the planner under test rather
than an installed copy. The last cell of each notebook asserts its trend.
The selected notebooks run once per session, two at a time (each in its own
kernel process); each test then reports one notebook's outcome.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
KERNEL = "python3"
CELL_TIMEOUT_S = 300
PARALLEL_KERNELS = 2

pytestmark = [pytest.mark.slow, pytest.mark.solver]


def _execute(path: Path) -> tuple[str | None, float]:
    """Run one notebook; return (error text or None, seconds)."""
    notebook = jupytext.read(path)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        return str(err), time.perf_counter() - start
    return None, time.perf_counter() - start


@pytest.fixture(scope="module")
def executed(request) -> dict[Path, tuple[str | None, float]]:
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_notebook_executes"
    ]
    with pytest.MonkeyPatch.context() as patch:
        path = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *([path] if path else [])]))
        with ThreadPoolExecutor(max_workers=PARALLEL_KERNELS) as pool:
            return dict(zip(selected, pool.map(_execute, selected), strict=True))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_percent_format_and_ends_with_an_assertion(path: Path):
    notebook = jupytext.read(path)
    nbformat.validate(notebook)
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    assert notebook.cells[0].cell_type == "markdown", "start with a markdown cell stating the question"
    last = notebook.cells[-1]
    assert last.cell_type == "code", "end with the assertion cell"
    assert "assert " in last.source, "the last cell must assert the result"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, executed):
    error, seconds = executed[path]
    if error is not None:
        pytest.fail(f"{path.name} failed after {seconds:.1f} s:\n{error}")
