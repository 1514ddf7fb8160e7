"""``disagg --help`` and the light commands leave the heavy libraries unimported (a second of CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "scipy", "pyomo", "matplotlib", "highspy", "ortools")

PROBE = f"""
import sys
from click.testing import CliRunner
from planner.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
assert result.exit_code == 0, result.output
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list", "models"], ["list", "instances"], ["evaluate", "--help"], ["frontier", "--help"]],
)
def test_light_commands_import_no_heavy_library(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "", f"{args} imported {done.stdout.strip()}"


def test_the_probe_sees_a_heavy_import() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import planner.frontier\n" + PROBE, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"pandas", "pyomo"} <= set(done.stdout.split())
