"""The candidate table: runnable layouts only, feasible rows only, and exactly the non-dominated ones."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from planner.catalog import load_hardware, load_instance, load_model, names
from planner.cli import main
from planner.errors import InfeasibleError
from planner.perf import Layouts, evaluate, layout_problems
from planner.problem import Problem
from planner.space import (
    LAYOUT_COLUMNS,
    MAX_PP,
    PHASES,
    candidate_table,
    dominated_mask,
    enumerate_layouts,
    instance_max_gpus,
    priced_rows,
)
from planner.specs import Instance


def _instance_table(instance: Instance, phase: str, *, prune: bool = True) -> pd.DataFrame:
    """An instance's candidate table (its catalog model and hardware, no scenario; a mix: its first class)."""
    problem = Problem(instance, load_model(instance.model), load_hardware(instance.hardware))
    first = problem.request_classes[0].name
    return problem.candidate_table(phase, prune=prune, request_class=first)  # type: ignore[arg-type]


INSTANCES = names("instances")
REQUIRED_COLUMNS = [
    "candidate_id",
    "phase",
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "batch",
    "chunked_prefill",
    "gpus",
    "ttft_ms",
    "tpot_ms",
    "tokens_per_s_per_user",
    "requests_per_s",
    "output_tokens_per_s",
    "input_tokens_per_s",
    "memory_per_gpu_gb",
    "kv_cache_bytes_per_request",
    "kv_transfer_ms",
]
LAYOUT = ["tp", "pp", "ep", "attention_dp", "batch", "chunked_prefill"]


@pytest.fixture(scope="module")
def tables() -> dict[tuple[str, str], pd.DataFrame]:
    """Every shipped instance x phase, built once (the whole lot takes well under a second)."""
    return {
        (name, phase): _instance_table(load_instance(name), phase) for name in INSTANCES for phase in PHASES
    }


# --------------------------------------------------------------------------- brute-force referee


def _criteria(frame: pd.DataFrame, phase: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Higher-is-better (x, y) and GPUs, computed from the raw columns (not from planner.space)."""
    gpus = frame["gpus"].to_numpy(dtype=np.int64)
    if phase == "prefill":
        return frame["requests_per_s"].to_numpy() / gpus, -frame["ttft_ms"].to_numpy(), gpus
    return frame["tokens_per_s_per_user"].to_numpy(), frame["output_tokens_per_s"].to_numpy() / gpus, gpus


def _brute_dominated(x: np.ndarray, y: np.ndarray, g: np.ndarray, block: int = 512) -> np.ndarray:
    """Row i is dominated if some j has x_j >= x_i, y_j >= y_i, g_j | g_i and is strictly better in one."""
    out = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), block):
        i = slice(start, start + block)
        xi, yi, gi = x[i, None], y[i, None], g[i, None]
        weakly = (x[None, :] >= xi) & (y[None, :] >= yi) & (gi % g[None, :] == 0)
        strictly = (x[None, :] > xi) | (y[None, :] > yi) | (g[None, :] < gi)
        out[i] = (weakly & strictly).any(axis=1)
    return out


# --------------------------------------------------------------------------- enumeration

ENUMERATION_CASES = [
    ("llama-3.1-70b", "h100-sxm", 32),
    ("llama-3.1-8b", "gb200-nvl72", 72),
    ("qwen3-32b", "h200-sxm", 5),
    ("mixtral-8x22b", "h100-sxm", 24),
    ("deepseek-r1", "gb200-nvl72", 72),
    ("deepseek-r1", "h200-sxm", 16),
    ("qwen3-235b-a22b", "b200", 64),
]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("model_name", "hardware_name", "max_gpus"), ENUMERATION_CASES)
def test_enumerated_layouts_are_runnable_and_within_budget(
    model_name: str, hardware_name: str, max_gpus: int, phase: str
) -> None:
    model, hardware = load_model(model_name), load_hardware(hardware_name)
    layouts = enumerate_layouts(model, hardware, phase, max_gpus=max_gpus, isl_tokens=4096)
    assert len(layouts) > 0
    assert layout_problems(model, hardware, layouts) == [None] * len(layouts)
    assert (layouts.gpus <= max_gpus).all()
    stage = layouts.tp * layouts.attention_dp
    # Only wide expert parallelism spans domains: TP1, PP1, EP over the whole stage.
    wide = stage > hardware.scale_up_domain_gpus
    assert (layouts.tp[wide] == 1).all()
    assert (layouts.pp[wide] == 1).all()
    assert (layouts.ep[wide] == stage[wide]).all()
    assert (stage[wide] % hardware.scale_up_domain_gpus == 0).all()
    assert not wide.any() or model.is_moe
    assert (layouts.pp <= MAX_PP[phase]).all()
    assert (layouts.batch % layouts.attention_dp == 0).all()
    rows = list(zip(layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, layouts.batch, strict=True))
    assert len(set(rows)) == len(rows), "duplicate layouts"
    if phase == "prefill":
        per_rank = layouts.batch // layouts.attention_dp
        assert ((per_rank == 1) | (per_rank * 4096 <= 32768)).all()
        assert (per_rank == 1).any()
    else:
        assert (layouts.batch // layouts.attention_dp <= 2048).all()


@pytest.mark.parametrize("model_name", ["llama-3.1-8b", "llama-3.1-70b", "qwen3-32b", "llama-3.1-405b"])
def test_dense_models_use_neither_attention_dp_nor_ep(model_name: str) -> None:
    model, hardware = load_model(model_name), load_hardware("gb200-nvl72")
    for phase in PHASES:
        layouts = enumerate_layouts(model, hardware, phase, max_gpus=72, isl_tokens=1024)
        assert set(layouts.attention_dp.tolist()) == {1}
        assert set(layouts.ep.tolist()) == {1}


def test_moe_models_get_attention_dp_and_the_full_ep_range() -> None:
    layouts = enumerate_layouts(
        load_model("deepseek-r1"), load_hardware("gb200-nvl72"), "decode", max_gpus=72, isl_tokens=1024
    )
    stage = layouts.tp * layouts.attention_dp
    assert layouts.attention_dp.max() > 1
    assert ((layouts.ep == 1) & (stage > 1)).any()
    assert ((layouts.ep == stage) & (stage == 64)).any()
    assert layouts.tp.max() == 64  # 128 heads, domain 72


def test_instance_max_gpus_takes_the_smaller_budget() -> None:
    h100 = load_hardware("h100-sxm")
    assert instance_max_gpus(load_instance("llama-3.1-70b-h100-8k-1k"), h100) == 32  # max_nodes: 4 x 8
    base = load_instance("llama-3.1-70b-h100-8k-1k")
    both = base.update({"cluster.max_gpus": 20})
    assert isinstance(both, Instance)
    assert instance_max_gpus(both, h100) == 20
    gpus_only = base.update({"cluster.max_nodes": None, "cluster.max_gpus": 40})
    assert instance_max_gpus(gpus_only, h100) == 40  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the shipped instances


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", INSTANCES)
def test_table_rows_are_feasible_and_non_dominated(tables, name: str, phase: str) -> None:
    inst = load_instance(name)
    model, hardware = load_model(inst.model), load_hardware(inst.hardware)
    table = tables[name, phase]
    assert len(table) > 0
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    assert table["candidate_id"].tolist() == list(range(len(table)))
    assert (table["phase"] == phase).all()
    assert table["chunked_prefill"].dtype == bool
    if phase != "aggregated":
        assert not table["chunked_prefill"].any()
    assert (table["gpus"] == table["tp"] * table["pp"] * table["attention_dp"]).all()
    assert (table["gpus"] <= instance_max_gpus(inst, hardware)).all()
    if phase != "decode":
        assert (table["ttft_ms"] <= inst.slo.ttft_ms_max).all()

    # Re-price every row independently: all fit and the numbers match.
    for (chunked, serving), rows in table.groupby(["chunked_prefill", "two_batch_overlap"]):
        again = evaluate(
            model,
            hardware,
            inst.precision,
            phase,  # type: ignore[arg-type]
            Layouts.of(*(rows[c].to_numpy() for c in ["tp", "pp", "ep", "attention_dp", "batch"])),
            int(table["isl_tokens"].iloc[0]),
            int(table["osl_tokens"].iloc[0]),
            chunked_prefill=bool(chunked),
            kv_link_gb_per_s=table.attrs["kv_link_gb_per_s"],
            two_batch_overlap=bool(serving),
            eplb=bool(serving),
            prefill_chunk_tokens=rows["prefill_chunk_tokens"].to_numpy(),
        )
        assert again["fits"].all()
        assert (rows["eplb"] == rows["two_batch_overlap"]).all()  # priced together: the wide-EP serving mode
        assert (rows["ep"] > 1).all() or not serving
        for column in ["requests_per_s", "memory_per_gpu_gb", "ttft_ms", "tokens_per_s_per_user"]:
            np.testing.assert_allclose(again[column].to_numpy(), rows[column].to_numpy(), rtol=1e-12)

    x, y, g = _criteria(table, phase)
    assert not _brute_dominated(x, y, g).any()

    funnel = table.attrs["funnel"]
    assert funnel["evaluated"] >= funnel["fit_memory"] >= funnel["meet_ttft"] >= funnel["non_dominated"]
    assert funnel["non_dominated"] == len(table)


@pytest.mark.parametrize(
    ("name", "phase"),
    [
        ("qwen3-32b-h200-4000-500", "prefill"),
        ("qwen3-32b-h200-4000-500", "aggregated"),
        ("llama-3.1-70b-h100-8k-1k", "decode"),
        ("llama-3.1-405b-gb200-4k-256", "aggregated"),
        ("deepseek-r1-gb200-1k-32k", "decode"),
        ("deepseek-r1-gb200-16k-2k", "prefill"),
    ],
)
def test_pruning_keeps_exactly_the_non_dominated_rows(tables, name: str, phase: str) -> None:
    """Brute force over the unpruned (feasible) table picks the same rows as the pruned table."""
    full = _instance_table(load_instance(name), phase, prune=False)
    assert len(full) == full.attrs["funnel"]["meet_ttft"]
    x, y, g = _criteria(full, phase)
    undominated = ~_brute_dominated(x, y, g)
    keep = full[undominated].assign(_x=x[undominated], _y=y[undominated])
    # Exact ties on both criteria and GPUs: the lowest TTFT, then the least layout, stays.
    keep = keep.assign(_ttft=keep["ttft_ms"].fillna(np.inf)).sort_values(["_ttft", *LAYOUT_COLUMNS])
    keep = keep.drop_duplicates(["_x", "_y", "gpus"])
    pruned = tables[name, phase]
    key = lambda f: sorted(map(tuple, f[LAYOUT].to_numpy().tolist()))  # noqa: E731
    assert key(keep) == key(pruned)
    assert len(pruned) < len(full)


def test_dominated_mask_matches_brute_force_with_ties_and_odd_gpu_counts() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(1, 400))
        x = rng.integers(0, 6, n).astype(float)  # few values: many ties
        y = rng.integers(0, 6, n).astype(float)
        g = rng.choice([1, 2, 3, 4, 6, 8, 12, 16], n)
        np.testing.assert_array_equal(dominated_mask(x, y, g), _brute_dominated(x, y, g))


def test_per_gpu_rate_alone_is_not_dominance() -> None:
    """A 3-GPU row is not dominated by a 2-GPU row with a better per-GPU rate (2 does not divide 3)."""
    x = np.array([1.0, 1.0])
    y = np.array([2.0, 1.0])  # row 0: 2 GPUs, better per-GPU rate; row 1: 3 GPUs
    assert dominated_mask(x, y, np.array([2, 3])).tolist() == [False, False]
    assert dominated_mask(x, y, np.array([2, 4])).tolist() == [False, True]


def test_tables_are_deterministic(tables) -> None:
    name = "deepseek-r1-gb200-16k-2k"
    again = _instance_table(load_instance(name), "aggregated")
    pd.testing.assert_frame_equal(again, tables[name, "aggregated"])
    assert again.attrs == tables[name, "aggregated"].attrs


def test_biggest_instance_is_fast() -> None:
    inst = load_instance("deepseek-r1-gb200-16k-2k")
    start = time.perf_counter()
    for phase in PHASES:
        _instance_table(inst, phase)
    assert time.perf_counter() - start < 5.0


# --------------------------------------------------------------------------- infeasibility


def test_qwen_300ms_ttft_binds_but_leaves_candidates(tables) -> None:
    """The real behaviour of the 300 ms instance: the limit removes rows, never all of them."""
    name = "qwen3-32b-h200-4000-500"
    for phase in ("prefill", "aggregated"):
        funnel = tables[name, phase].attrs["funnel"]
        assert 0 < funnel["meet_ttft"] < funnel["fit_memory"]
        assert tables[name, phase]["ttft_ms"].max() <= 300


def test_unreachable_ttft_names_the_smallest_feasible_limit() -> None:
    inst = load_instance("qwen3-32b-h200-4000-500")
    loose = _instance_table(inst.update({"slo.ttft_ms_max": 1e6}), "prefill")  # type: ignore[arg-type]
    fastest = loose["ttft_ms"].min()
    tight = inst.update({"slo.ttft_ms_max": fastest * 0.9})
    with pytest.raises(InfeasibleError, match="slo.ttft_ms_max") as caught:
        _instance_table(tight, "prefill")  # type: ignore[arg-type]
    suggested = float(re.search(r"at least ([0-9.]+)", str(caught.value)).group(1))
    assert fastest <= suggested <= fastest + 0.1
    relaxed = _instance_table(inst.update({"slo.ttft_ms_max": suggested}), "prefill")  # type: ignore[arg-type]
    assert len(relaxed) > 0


@pytest.mark.parametrize("phase", PHASES)
def test_model_too_big_for_budget_says_how_many_gpus(phase: str) -> None:
    model, hardware = load_model("llama-3.1-405b"), load_hardware("h100-sxm")
    kwargs = {"isl_tokens": 4096, "osl_tokens": 256, "ttft_ms_max": 1e5}
    with pytest.raises(InfeasibleError, match="memory") as caught:
        candidate_table(model, hardware, "bf16", phase, max_gpus=1, **kwargs)
    message = str(caught.value)
    needed = int(re.search(r"raise cluster.max_gpus \(or max_nodes\) to at least (\d+)", message).group(1))
    assert needed > 8  # 810 GB of bf16 weights do not fit on one 8-GPU board
    assert len(candidate_table(model, hardware, "bf16", phase, max_gpus=needed, **kwargs)) > 0
    with pytest.raises(InfeasibleError):
        candidate_table(model, hardware, "bf16", phase, max_gpus=needed - 1, **kwargs)


# --------------------------------------------------------------------------- CLI


def test_cli_writes_the_csv(tmp_path: Path) -> None:
    out = tmp_path / "decode.csv"
    result = CliRunner().invoke(
        main, ["candidates", "llama-3.1-70b-h100-8k-1k", "--phase", "decode", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert len(frame) > 0
    assert "non-dominated" in result.output
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_unknown_instance_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["candidates", "no-such-instance", "--phase", "prefill", "--csv", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.csv").exists()


def test_cli_infeasible_instance_exits_1(tmp_path: Path) -> None:
    spec = {
        "name": "tiny",
        "model": "llama-3.1-405b",
        "hardware": "h100-sxm",
        "precision": "bf16",
        "traffic": {"isl_tokens": 1024, "osl_tokens": 128},
        "cluster": {"max_gpus": 1},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(
        main, ["candidates", str(path), "--phase", "decode", "--csv", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error:")
    assert "at least" in lines[0]


@pytest.mark.parametrize("phase", PHASES)
def test_priced_rows_counts_what_the_table_prices(tables, phase: str) -> None:
    # DeepSeek-R1 is MoE: layouts with EP > 1 are priced twice (plain and the wide-EP serving mode).
    inst = load_instance("deepseek-r1-gb200-16k-2k")
    model, hardware = load_model(inst.model), load_hardware(inst.hardware)
    counted = priced_rows(
        model, hardware, phase, max_gpus=instance_max_gpus(inst, hardware), isl_tokens=inst.traffic.isl_tokens
    )
    assert counted == tables["deepseek-r1-gb200-16k-2k", phase].attrs["funnel"]["evaluated"]
