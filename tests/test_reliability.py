"""Issue 15: the broken promises under hostile input, one regression test (or table row) each.

Every case here once crashed with a traceback, hung, exited with the wrong status, left
an inconsistent output folder or answered silently wrong. The promise each test checks:
bad input is one ``error:`` line and exit 2, an infeasible question exit 1, nothing
written on a non-zero exit, and no traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from planner.catalog import read_yaml
from planner.cli import main
from planner.errors import SpecError
from planner.measurements import DEFAULT_MEASUREMENTS
from planner.safe_input import MAX_DEPTH, excerpt

ROOT = Path(__file__).resolve().parent.parent
SMALL = "llama-3.1-70b-h100-8k-1k"
"""A shipped instance whose frontier solves in a few seconds."""
TRACE = ROOT / "instances" / "traces" / "diurnal-24h.csv"


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result: Result, code: int = 2, *fragments: str) -> str:
    """Exit ``code``, no traceback, nothing on stdout, one ``error:`` line (or click's usage error)."""
    text = result.output + (result.stderr or "")
    assert result.exit_code == code, (result.exit_code, text, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    last = lines[-1]
    assert last.startswith(("error: ", "Error: ")), result.stderr
    if last.startswith("error: "):
        assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    assert len(last) < 2000
    return last


def instance_file(folder: Path, text_edit: tuple[str, str] | None = None, extra: str = "") -> Path:
    """A copy of the small shipped instance, optionally edited, as a YAML path."""
    text = (ROOT / "instances" / f"{SMALL}.yaml").read_text()
    if text_edit:
        assert text_edit[0] in text, text_edit
        text = text.replace(*text_edit)
    path = folder / "inst.yaml"
    path.write_text(text + extra)
    return path


def assert_empty(folder: Path) -> None:
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


# --------------------------------------------------------------------------- bounded YAML and JSON

ALIAS_BOMB = "\n".join(
    [
        "description:",
        "  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
        *(f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)),
    ]
)
"""About 1 KB of YAML whose aliases expand to 9**10 (3.5 billion) strings."""


def test_alias_bomb_in_a_wrongly_typed_field_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    text = (ROOT / "instances" / f"{SMALL}.yaml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("description"))
    path.write_text(text + "\n" + ALIAS_BOMB + "\n")
    assert path.stat().st_size < 2000
    start = time.perf_counter()
    line = assert_refused(run("candidates", path, "--phase", "decode", "--csv", tmp_path / "c.csv"))
    assert time.perf_counter() - start < 5
    assert "aliases" in line
    assert str(path) in line


def test_alias_bomb_in_an_unused_scenario_is_refused_before_any_override(tmp_path: Path) -> None:
    bomb = ALIAS_BOMB.replace("description:", "  unused:\n    description:").replace("\n  - ", "\n      - ")
    path = instance_file(tmp_path, extra="\n" + bomb.replace("  unused:", "scenarios:\n  unused:", 1) + "\n")
    text = path.read_text().replace("scenarios:\n  hgx", "  hgx", 1)
    path.write_text(text)
    line = assert_refused(run("plan", path, "--set", "traffic.isl_tokens=2048"))
    assert "aliases" in line


def test_yaml_nested_20000_deep_is_refused(tmp_path: Path) -> None:
    path = instance_file(tmp_path, extra="\nextra: " + "[" * 20_000 + "]" * 20_000 + "\n")
    line = assert_refused(run("plan", path))
    assert f"nested deeper than {MAX_DEPTH}" in line


def test_import_hf_json_nested_20000_deep_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"a": ' + "[" * 20_000 + "]" * 20_000 + "}")
    line = assert_refused(run("import-hf", path, "--name", "m", "--out", tmp_path / "m.yaml"))
    assert "nested 20001 levels deep" in line
    assert not (tmp_path / "m.yaml").exists()


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: &x [1, *x]\n")
    with pytest.raises(SpecError, match="recursive alias"):
        read_yaml(path)


def test_a_thousand_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("a: &x 1\nb: [" + ", ".join(["*x"] * 1001) + "]\n")
    with pytest.raises(SpecError, match="more than 1000 aliases"):
        read_yaml(path)


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\ncopy: {<<: *b, y: 3}\nlist: [*b, *b]\n")
    assert read_yaml(path) == {
        "base": {"x": 1, "y": 2},
        "copy": {"x": 1, "y": 3},
        "list": [{"x": 1, "y": 2}, {"x": 1, "y": 2}],
    }


@pytest.mark.parametrize(
    "where",
    ["instance", "calibration", "grid"],
)
def test_non_utf8_files_are_one_error(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    if where == "instance":
        result = run("plan", bad)
    elif where == "calibration":
        result = run("plan", SMALL, "--min-tokens-per-s-per-user", "10", "--calibration", bad)
    else:
        result = run("sweep", bad, "--dry-run")
    line = assert_refused(result)
    assert "not UTF-8" in line
    assert str(bad) in line


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = instance_file(tmp_path, extra="precision: bf16\n")
    line = assert_refused(run("plan", path))
    assert "'precision' appears twice" in line
    assert "line" in line


def test_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    config = json.loads((ROOT / "tests" / "fixtures" / "hf_configs" / "llama-3.1-8b.json").read_text())
    text = json.dumps(config)[:-1] + ', "hidden_size": 1}'
    path = tmp_path / "config.json"
    path.write_text(text)
    line = assert_refused(run("import-hf", path, "--name", "m", "--out", tmp_path / "m.yaml"))
    assert "'hidden_size' appears twice" in line


def test_error_messages_quote_a_short_excerpt_of_a_huge_value(tmp_path: Path) -> None:
    path = instance_file(tmp_path, ("osl_tokens: 1024", "osl_tokens: [" + ", ".join(["9"] * 50_000) + "]"))
    line = assert_refused(run("plan", path))
    assert "osl_tokens" in line
    assert len(line) < 600
    assert len(excerpt(list(range(10**5)))) <= 80


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("isl_tokens: 8192", "isl_tokens: true"), "isl_tokens"),
        (("max_nodes: 4", "max_nodes: 1.5"), "max_nodes"),
        (("max_nodes: 4", "max_nodes: 4.0"), "max_nodes"),
        (("max_nodes: 4", "max_nodes: '4'"), "max_nodes"),
    ],
)
def test_specs_take_no_bool_float_or_text_for_an_integer(
    tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    path = instance_file(tmp_path, edit)
    line = assert_refused(run("plan", path))
    assert field in line
    assert "valid integer" in line


def test_set_true_is_not_an_isl_of_one() -> None:
    line = assert_refused(run("plan", SMALL, "--set", "traffic.isl_tokens=true"))
    assert "isl_tokens" in line


# --------------------------------------------------------------------------- dotted overrides


@pytest.mark.parametrize("command", ["plan", "candidates", "frontier"])
def test_set_through_a_plain_value_is_one_error(tmp_path: Path, command: str) -> None:
    extra = {
        "candidates": ["--phase", "decode", "--csv", tmp_path / "c.csv"],
        "frontier": ["--out", tmp_path / "o"],
    }
    result = run(command, SMALL, "--set", "traffic.isl_tokens.deeper=3", *extra.get(command, []))
    line = assert_refused(result)
    assert "'traffic.isl_tokens' is a single value" in line
    assert_empty(tmp_path)


def test_scenario_through_a_plain_value_is_one_error(tmp_path: Path) -> None:
    path = instance_file(tmp_path, extra="")
    text = path.read_text()
    text += "\n" if "scenarios:" in text else "\nscenarios:\n"
    text += "  deeper: {traffic.isl_tokens.deeper: 3}\n"
    path.write_text(text)
    line = assert_refused(run("plan", path, "--scenario", "deeper"))
    assert "is a single value" in line


@pytest.mark.parametrize("block", ["axes", "set"])
def test_sweep_field_through_a_plain_value_is_one_error(tmp_path: Path, block: str) -> None:
    grid = {"base": SMALL, "axes": {"cluster.max_gpus": [2, 4]}}
    if block == "axes":
        grid["axes"]["traffic.isl_tokens.deeper"] = [1, 2]
    else:
        grid["set"] = {"traffic.isl_tokens.deeper": 3}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    line = assert_refused(run("sweep", path, "--out", tmp_path / "out"))
    assert "single value" in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- options: finite, bounded


@pytest.mark.parametrize(
    "args",
    [
        ["frontier", SMALL, "--fixed-ratio", "nan"],
        ["frontier", SMALL, "--fixed-ratio", "nan", "--solver", "ortools"],
        ["frontier", SMALL, "--fixed-ratio", "inf"],
        ["frontier", SMALL, "--time-limit-s", "nan"],
        ["frontier", SMALL, "--run-time-limit-s", "inf"],
        ["plan", SMALL, "--min-tokens-per-s-per-user", "nan"],
        ["plan", SMALL, "--min-tokens-per-s-per-user", "inf"],
        ["plan", SMALL, "--min-tokens-per-s-per-user", "10", "--time-limit-s", "nan"],
        ["elastic", SMALL, "--trace", TRACE, "--load-scale", "nan"],
        ["elastic", SMALL, "--trace", TRACE, "--load-scale", "inf"],
        ["elastic", SMALL, "--trace", TRACE, "--load-scale", "1e300"],
        ["elastic", SMALL, "--trace", TRACE, "--min-tokens-per-s-per-user", "nan"],
        ["elastic", SMALL, "--trace", TRACE, "--fixed-ratio", "-inf"],
        ["sweep", "grid.yaml", "--time-limit-s", "nan", "--dry-run"],
        [
            "evaluate",
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "h100-sxm",
            "--phase",
            "decode",
            "--tp",
            "1",
            "--isl",
            "128",
            "--osl",
            "128",
            "--batch",
            "99999999999999999999",
        ],
        ["evaluate", "--instance", SMALL, "--phase", "decode", "--tp", "1", "--batch", "1", "--isl", "1e20"],
    ],
    ids=lambda args: " ".join(str(a) for a in args[:1] + args[-2:]),
)
def test_non_finite_or_huge_options_are_usage_errors(tmp_path: Path, args: list) -> None:
    needs_out = args[0] in ("frontier", "elastic")
    result = run(*args, *(["--out", tmp_path / "out"] if needs_out else []))
    line = assert_refused(result)
    assert "Invalid value for" in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- output folders checked first


def test_out_under_a_file_is_refused_before_the_solve(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    start = time.perf_counter()
    line = assert_refused(run("frontier", SMALL, "--out", blocker / "out"))
    assert time.perf_counter() - start < 5
    assert "is a file" in line
    assert "--out" in line


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = assert_refused(run("elastic", SMALL, "--trace", TRACE, "--out", blocker))
    assert "is a file" in line


def test_read_only_out_is_refused_before_the_solve(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = assert_refused(run("frontier", SMALL, "--out", folder / "out"))
        assert "cannot write" in line
    finally:
        folder.chmod(0o755)


def test_sweep_cells_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells").write_text("x")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": SMALL, "axes": {"cluster.max_gpus": [2]}}))
    line = assert_refused(run("sweep", grid, "--out", out))
    assert "cells is a file" in line


@pytest.mark.parametrize("option", ["--csv", "--out"])
def test_single_file_outputs_are_checked_first(tmp_path: Path, option: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    if option == "--csv":
        result = run("candidates", SMALL, "--phase", "decode", "--csv", blocker / "c.csv")
    else:
        result = run("calibrate", "--measurements", DEFAULT_MEASUREMENTS, "--out", blocker / "c.yaml")
    assert "is a file" in assert_refused(result)


def test_out_holding_the_users_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    line = assert_refused(run("frontier", SMALL, "--out", out))
    assert "did not write (thesis.tex)" in line
    assert (out / "thesis.tex").read_text() == "mine"


# --------------------------------------------------------------------------- traces


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("requests_per_s", "inf"),
        ("requests_per_s", "1e300"),
        ("requests_per_s", "-inf"),
        ("duration_h", "inf"),
        ("duration_h", "1e12"),
    ],
)
def test_traces_with_huge_or_infinite_values_are_refused(tmp_path: Path, column: str, value: str) -> None:
    import pandas as pd

    frame = pd.read_csv(TRACE)
    frame[column] = frame[column].astype(object)
    frame.loc[len(frame) - 1, column] = value
    trace = tmp_path / "trace.csv"
    frame.to_csv(trace, index=False)
    line = assert_refused(
        run("elastic", "llama-3.1-70b-h100-diurnal", "--trace", trace, "--out", tmp_path / "out")
    )
    assert column in line
    assert "finite" in line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- measurement files


def _measurements(tmp_path: Path, column: str | None = None, value: str | None = None, rows: int = 3) -> Path:
    import pandas as pd

    frame = pd.read_csv(DEFAULT_MEASUREMENTS, dtype=str, keep_default_na=False).head(rows)
    if column is not None:
        frame.loc[0, column] = value
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("precision", "fp16", "is not one of bf16, fp8, fp4"),
        ("isl", "inf", "not a finite number"),
        ("osl", "inf", "not a finite number"),
        ("tp", "inf", "not a finite number"),
        ("tp", "1.5", "not a whole number"),
        ("isl", "1e30", "larger than"),
        ("batch", "99999999999999999999", "neither a whole number"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "calibrate"])
def test_bad_measurement_values_are_refused(
    tmp_path: Path, column: str, value: str, fragment: str, command: str
) -> None:
    path = _measurements(tmp_path, column, value)
    out = tmp_path / "c.yaml"
    args = ["--out", out, "--no-loo"] if command == "calibrate" else []
    line = assert_refused(run(command, "--measurements", path, *args))
    assert fragment in line
    assert column in line
    assert not out.exists()


@pytest.mark.parametrize("command", ["validate", "calibrate"])
def test_header_only_measurements_are_refused(tmp_path: Path, command: str) -> None:
    path = _measurements(tmp_path, rows=0)
    args = ["--out", tmp_path / "c.yaml", "--no-loo"] if command == "calibrate" else []
    assert "no rows" in assert_refused(run(command, "--measurements", path, *args))


def test_calibrate_with_every_row_skipped_writes_nothing(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(DEFAULT_MEASUREMENTS, dtype=str, keep_default_na=False)
    frame = frame[frame["id"].str.startswith("mlperf")]  # rows above the physical ceiling: all skipped
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "c.yaml"
    line = assert_refused(run("calibrate", "--measurements", path, "--out", out, "--no-loo"))
    assert "nothing to fit" in line
    assert not out.exists()


# --------------------------------------------------------------------------- import-hf


def test_import_hf_with_zero_heads_is_one_error(tmp_path: Path) -> None:
    config = json.loads((ROOT / "tests" / "fixtures" / "hf_configs" / "llama-3.1-8b.json").read_text())
    config["num_attention_heads"] = 0
    config.pop("head_dim", None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    line = assert_refused(run("import-hf", path, "--name", "m", "--out", tmp_path / "m.yaml"))
    assert "num_attention_heads" in line
    assert "at least 1" in line


def test_numpy_integers_in_python_api_overrides_still_resolve() -> None:
    """Strict types refuse bools and floats for integers, not the numpy integers of a what-if loop."""
    import numpy as np

    from planner.problem import resolve

    problem = resolve(SMALL, overrides={"traffic.isl_tokens": np.int64(2048)})
    assert problem.instance.traffic.isl_tokens == 2048
    assert type(problem.instance.traffic.isl_tokens) is int


def test_a_number_as_period_start_is_one_error(tmp_path: Path) -> None:
    """Found by the long fuzz profile: pandas warned (a future version will raise) on a numeric time."""
    trace = tmp_path / "trace.csv"
    trace.write_text("period_start,duration_h,requests_per_s\n0,1,1\n")
    line = assert_refused(run("elastic", SMALL, "--trace", trace, "--out", tmp_path / "out"))
    assert "period_start 0 is not an ISO-8601 time" in line
