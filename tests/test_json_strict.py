"""Every JSON the planner prints or writes passes a strict parser: no NaN, no Infinity, one shape."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from planner.cli import main
from planner.economics import COLUMNS
from planner.jsonable import json_text

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=16")


def strict_loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (as JavaScript and jq do)."""

    def refuse(constant: str):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _run(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_strict_loads_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        strict_loads('{"x": NaN}')
    assert strict_loads(json_text({"x": float("nan"), "y": [float("inf")]})) == {"x": None, "y": [None]}


def test_plan_json_is_always_a_list_of_plans_with_cost():
    one = strict_loads(_run("plan", *SMALL, "--min-tokens-per-s-per-user", "40", "--json"))
    two = strict_loads(_run("plan", *SMALL, "--set", "slo.tokens_per_s_per_user_targets=[20, 40]", "--json"))
    assert isinstance(one, list)
    assert len(one) == 1
    assert [a["target_tokens_per_s_per_user"] for a in two] == [20, 40]
    for mode, plan in one[0]["plans"].items():
        assert two[1]["plans"][mode]["tokens_per_s_per_gpu"] == plan["tokens_per_s_per_gpu"]
    for plan in one[0]["plans"].values():
        assert {*COLUMNS, "billed_gpus"} <= set(plan)
    # The aggregated plan has no prefill:decode ratio: null, not NaN.
    assert one[0]["plans"]["aggregated"]["prefill_decode_gpu_ratio"] is None


def test_evaluate_json_is_strict():
    text = _run(
        "evaluate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "decode",
        "--tp", "1", "--batch", "8", "--isl", "1024", "--osl", "128", "--json",
    )  # fmt: skip
    data = strict_loads(text)
    assert data["ttft_ms"] is None  # decode has no TTFT of its own


def test_frontier_and_elastic_files_are_strict(tmp_path: Path):
    _run("frontier", *SMALL, "--out", tmp_path / "f")
    strict_loads((tmp_path / "f" / "provenance.json").read_text())
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,1.0\n2026-01-05T01:00:00Z,1,2.0\n"
    )
    _run("elastic", "llama-3.1-70b-h100-diurnal", "--set", "cluster.max_nodes=2", "--trace", trace, "--out",
         tmp_path / "e")  # fmt: skip
    strict_loads((tmp_path / "e" / "provenance.json").read_text())
    summary = pd.read_csv(tmp_path / "e" / "summary.csv").set_index("strategy")
    assert set(COLUMNS) <= set(summary.columns)
    hours = 2.0
    assert summary.loc["dynamic", "cost_usd_per_h"] * hours == pytest.approx(
        summary.loc["dynamic", "cost_usd"]
    )
    assert summary.loc["dynamic", "power_kw"] == pytest.approx(summary.loc["dynamic", "mean_gpus"] * 0.7)


def test_sweep_files_are_strict(tmp_path: Path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump({"base": "llama-3.1-70b-h100-8k-1k", "axes": {"cluster.max_gpus": [1, 4]}})
    )
    _run("sweep", grid, "--out", tmp_path / "s", "--workers", "1", "--no-progress")
    strict_loads((tmp_path / "s" / "provenance.json").read_text())
    cells = list((tmp_path / "s" / "cells").glob("*.json"))
    assert len(cells) == 2
    for path in cells:
        strict_loads(path.read_text())
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    assert {f"best_aggregated_{c}" for c in COLUMNS} <= set(summary.columns)
