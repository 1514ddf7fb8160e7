"""Install weight: the core install plans; tests, notebooks and Dask come with extras that say so."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.errors import SpecError
from planner.extras import require

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HEAVY = ("pytest", "ruff", "jupytext", "nbclient", "nbconvert", "ipykernel", "jupyterlab", "dask")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _readme_setup_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    assert text.index(block.group(0)) < text.index("\n## "), "the set-up block opens the README"
    return block.group(1).strip().splitlines()


def test_core_install_leaves_out_test_notebook_and_dask_tools() -> None:
    core = _names(PROJECT["dependencies"])
    assert not core & set(HEAVY), core & set(HEAVY)
    extras = PROJECT["optional-dependencies"]
    assert {"dask", "notebooks", "dev"} <= set(extras)
    assert {"jupyterlab", "jupytext", "nbconvert", "nbclient", "ipykernel"} <= _names(extras["notebooks"])
    assert "dask" in _names(extras["dask"])
    dev = extras["dev"]
    assert {"pytest", "ruff"} <= _names(dev)
    assert any(r.startswith("disagg-planner[") and "dask" in r and "notebooks" in r for r in dev)


def test_readme_opens_with_the_two_set_up_lines() -> None:
    first, second = _readme_setup_lines()
    assert first.startswith("pip install . && disagg frontier deepseek-r1-gb200-16k-2k --out ")
    assert second == "pip install '.[dev]' && python -m pytest"


def test_ci_runs_exactly_the_readme_install_and_test_commands() -> None:
    commands = [
        line.removeprefix("python -m ")
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    first, second = _readme_setup_lines()
    expected = [first.split(" && ")[0], *second.split(" && ")]
    assert [c.replace(" --quiet", "") for c in commands] == [e.removeprefix("python -m ") for e in expected]


def _third_party_imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    local = {"planner"} | {p.stem for p in folder.glob("*.py")}  # the package and the folder's own helpers
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


@pytest.mark.parametrize(
    ("folder", "extras"),
    [("planner", ()), ("tests", ("dev", "dask", "notebooks")), ("notebooks", ("notebooks",))],
)
def test_every_import_is_declared(folder: str, extras: tuple[str, ...]) -> None:
    """What the README's install lines put in a fresh venv covers every import of that folder."""
    declared = _names(PROJECT["dependencies"])
    for extra in extras:
        declared |= _names(PROJECT["optional-dependencies"][extra])
    distributions = packages_distributions()
    missing = {}
    for module in _third_party_imports(ROOT / folder):
        owners = {d.lower() for d in distributions.get(module, [module])}
        # Libraries installed by a declared one (numpy by pandas, yaml by pyyaml) count through it.
        if not owners & declared and module not in {"annotated_types", "pydantic_core"}:
            missing[module] = owners
    assert not missing, f"imported in {folder}/ but not declared in pyproject.toml: {missing}"


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    with pytest.raises(SpecError, match=r"pip install 'disagg-planner\[dask\]'"):
        require("distributed", "dask", "--scheduler")
    result = CliRunner().invoke(main, ["sweep", "grid.yaml", "--out", "o", "--scheduler", "tcp://h:8786"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --scheduler")
    assert "pip install 'disagg-planner[dask]'" in lines[0]
    assert "pip install '.[dask]'" in lines[0]
