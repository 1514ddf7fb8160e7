"""Plans show the prompt chunk they chose and the worst inter-token gap they cause (frontier.csv,
`plan` text and JSON), each equal to the candidate row the solver picked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.optimize.plan import PoolPlan, prompt_chunk_tokens
from planner.problem import resolve
from planner.space import PIGGYBACK_CHUNK_TOKENS

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=16")


def _plan_json(*extra: str) -> dict:
    result = CliRunner().invoke(main, ["plan", *SMALL, "--min-tokens-per-s-per-user", "30", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def _candidate(table: pd.DataFrame, layout: dict, pool: str) -> pd.Series:
    """The candidate row of a plan layout (its layout columns and, where it has one, its chunk)."""
    keys = ["tp", "pp", "ep", "attention_dp", "batch", "chunked_prefill", "two_batch_overlap", "eplb"]
    match = pd.Series(True, index=table.index)
    keys += [key for key in ("draft_tokens",) if key in layout and key in table]
    for key in keys:
        match &= table[key] == layout[key]
    if layout["prefill_chunk_tokens"] is not None:
        match &= table["prefill_chunk_tokens"] == layout["prefill_chunk_tokens"]
    rows = table[match]
    assert len(rows) == 1, (pool, layout, rows)
    return rows.iloc[0]


def test_plan_json_carries_the_chosen_chunk_and_the_candidates_gap() -> None:
    answer = _plan_json()
    problem = resolve(SMALL[0], None, {"cluster.max_gpus": 16})
    for mode, plan in answer["plans"].items():
        assert plan is not None, mode
        gaps = []
        for pool, body in plan["pools"].items():
            table = problem.candidate_table(pool)
            for layout in body["layouts"]:
                row = _candidate(table, layout, pool)
                if pool == "prefill":
                    assert layout["worst_inter_token_gap_ms"] is None  # a prefill pool emits no tokens
                    continue
                assert layout["worst_inter_token_gap_ms"] == pytest.approx(row["worst_inter_token_gap_ms"])
                assert layout["worst_inter_token_gap_ms"] >= row["tpot_ms"] * (1 - 1e-9)
                gaps.append(layout["worst_inter_token_gap_ms"])
        assert plan["worst_inter_token_gap_ms"] == pytest.approx(max(gaps))
    aggregated = answer["plans"]["aggregated"]
    layout = aggregated["pools"]["aggregated"]["layouts"][0]
    assert layout["chunked_prefill"]
    assert layout["prefill_chunk_tokens"] in PIGGYBACK_CHUNK_TOKENS
    assert aggregated["prefill_chunk_tokens"] == layout["prefill_chunk_tokens"]
    assert isinstance(aggregated["prefill_chunk_tokens"], int)


def test_a_gap_limit_binds_the_plan() -> None:
    free = _plan_json()["plans"]["aggregated"]
    limit = free["worst_inter_token_gap_ms"] * 0.9
    bound = _plan_json("--set", f"slo.inter_token_gap_ms_max={limit}")["plans"]["aggregated"]
    assert bound["worst_inter_token_gap_ms"] <= limit


def test_plan_text_names_the_chunk_and_the_gap() -> None:
    result = CliRunner().invoke(main, ["plan", *SMALL, "--min-tokens-per-s-per-user", "30"])
    assert result.exit_code == 0, result.output
    answer = _plan_json()
    aggregated = answer["plans"]["aggregated"]
    assert f"prompt chunks of {aggregated['prefill_chunk_tokens']} tokens" in result.stdout
    assert f"worst inter-token gap {aggregated['worst_inter_token_gap_ms']:,.1f} ms" in result.stdout


def test_frontier_csv_has_the_chunk_and_gap_columns(tmp_path: Path) -> None:
    out = tmp_path / "f"
    result = CliRunner().invoke(main, ["frontier", *SMALL, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "frontier.csv")
    assert (frame["worst_inter_token_gap_ms"] >= frame["tpot_ms"] * (1 - 1e-9)).all()
    aggregated = frame[frame["mode"] == "aggregated"]
    chunked = aggregated[aggregated["chunked_prefill"]]
    assert len(chunked)
    assert chunked["prefill_chunk_tokens"].isin(PIGGYBACK_CHUNK_TOKENS).all()
    for _, row in chunked.iterrows():
        assert f"chunk {int(row['prefill_chunk_tokens'])}" in row["decode_layouts"]
    # A disaggregated prefill pool without a pipeline runs prompts whole: no chunk.
    dis = frame[(frame["mode"] == "disaggregated") & (frame["prefill_pp"] == 1)]
    assert dis["prefill_chunk_tokens"].isna().all()


def test_which_layouts_run_prompts_in_chunks() -> None:
    rows = pd.DataFrame(
        {
            "pp": [1, 4, 1, 1, 2],
            "chunked_prefill": [False, False, True, False, False],
            "prefill_chunk_tokens": [8192, 2048, 512, 8192, 1024],
        }
    )
    row = rows.iloc
    assert prompt_chunk_tokens("prefill", row[0]) is None  # PP1 prefill: the prompt in one pass
    assert prompt_chunk_tokens("prefill", row[1]) == 2048  # chunked pipeline prefill
    assert prompt_chunk_tokens("aggregated", row[2]) == 512  # piggybacked chunks
    assert prompt_chunk_tokens("aggregated", row[3]) is None  # whole prompts, one pass
    assert prompt_chunk_tokens("aggregated", row[4]) == 1024  # a pipeline chunks even unpiggybacked
    assert prompt_chunk_tokens("decode", row[1]) is None  # a decode pool takes no prompts
    lead = rows.iloc[[1]].assign(instances=3, tp=2, ep=1, attention_dp=1, batch=4, classes="c")
    pool = PoolPlan("prefill", lead)
    assert pool.layout_text() == "3 x TP2 PP4 EP1 DP1 batch 4 chunk 2048"


def _evaluate(*args: str) -> dict:
    base = [
        "evaluate",
        "--model",
        "llama-3.1-70b",
        "--hardware",
        "h200-sxm",
        "--isl",
        "32768",
        "--osl",
        "256",
    ]
    result = CliRunner().invoke(main, [*base, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_prices_the_chunk_it_is_given_and_reports_the_gap() -> None:
    """A 32k prompt over PP4: 8192-token chunks fill the pipeline in 3 of 7 passes, 1024-token ones in
    3 of 35, so the first token comes sooner; PP1 runs the prompt whole and ignores the chunk."""
    coarse = _evaluate("--phase", "prefill", "--tp", "2", "--pp", "4", "--batch", "1")
    fine = _evaluate(
        "--phase", "prefill", "--tp", "2", "--pp", "4", "--batch", "1", "--prefill-chunk-tokens", "1024"
    )
    assert (coarse["prefill_chunk_tokens"], fine["prefill_chunk_tokens"]) == (8192, 1024)
    assert fine["ttft_ms"] < coarse["ttft_ms"]
    whole = [
        _evaluate("--phase", "prefill", "--tp", "8", "--batch", "1", "--prefill-chunk-tokens", str(c))[
            "ttft_ms"
        ]
        for c in (1024, 8192)
    ]
    assert whole[0] == whole[1]
    # Co-located: a step that carries a bigger prompt chunk stalls every token of the batch longer.
    args = ("--phase", "aggregated", "--tp", "4", "--batch", "8")
    small = _evaluate(*args, "--prefill-chunk-tokens", "512")
    large = _evaluate(*args, "--prefill-chunk-tokens", "8192")
    assert small["worst_inter_token_gap_ms"] < large["worst_inter_token_gap_ms"]
    assert small["worst_inter_token_gap_ms"] >= small["tpot_ms"] * (1 - 1e-9)


def test_export_runs_the_chunk_the_plan_chose() -> None:
    """The aggregated plan's chunk becomes the engine's chunked-prefill size and batched-token budget."""
    from planner.export import deployment_from_answer

    answer = _plan_json()
    layout = answer["plans"]["aggregated"]["pools"]["aggregated"]["layouts"][0]
    engine = deployment_from_answer(answer, mode="aggregated", model_path="Qwen/Qwen3-32B").engines[0]
    assert engine.chunk_tokens == layout["prefill_chunk_tokens"]
    per_rank = layout["batch"] // layout["attention_dp"]
    assert engine.max_batched_tokens == per_rank + layout["prefill_chunk_tokens"]
