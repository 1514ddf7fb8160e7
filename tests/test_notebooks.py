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

import ast
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

try:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        f"{err.name} is missing: the tests execute the notebooks; install the test tools with "
        "pip install '.[dev]' (README, second line)"
    ) from err

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


TABLE_METHODS = {"round", "head", "tail", "describe", "sort_values", "set_index", "to_frame", "style"}
"""Methods returning a table: a cell ending in one shows it in Jupyter but prints nothing as a script."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tables_are_printed_not_left_as_bare_expressions(path: Path):
    for index, cell in enumerate(jupytext.read(path).cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            continue
        value = tree.body[-1].value
        where = f"{path.name}, cell {index}: {ast.unparse(value)[:60]}"
        assert isinstance(value, ast.Call), f"{where} shows nothing when run as a script; print() it"
        method = value.func.attr if isinstance(value.func, ast.Attribute) else ""
        assert method not in TABLE_METHODS, f"{where} shows nothing when run as a script; print() it"


def test_a_notebook_run_as_a_script_prints_its_tables():
    """``python 06_chunked_pipeline_prefill.py`` (the README's plain-script way) prints its table."""
    path = NOTEBOOK_DIR / "06_chunked_pipeline_prefill.py"
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, path.name], cwd=NOTEBOOK_DIR, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "ttft_ms" in result.stdout, result.stdout
    assert len(result.stdout.splitlines()) >= 5, result.stdout


def test_notebooks_readme_gives_the_commands_that_open_them():
    text = (NOTEBOOK_DIR / "README.md").read_text()
    for command in ("pip install '.[notebooks]'", "jupyter lab", "python 01_traffic_shape.py"):
        assert command in text, command
    assert "jupytext --to ipynb --execute" in text
