"""Prefix caching: less prefill work and KV transfer, cached prefixes in memory, a smaller prefill pool."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from planner.catalog import load_hardware, load_model
from planner.class_features import ClassFeatures
from planner.cli import main
from planner.compare import mode_rows
from planner.frontier import solve_frontier
from planner.perf import Architecture, Layouts, evaluate
from planner.problem import resolve

ISL, OSL = 8192, 512


def _row(phase: str, hit: float, cache_tokens: float = 0.0, batch: int = 1):
    model, hardware = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    layouts = Layouts.of([1], [1], [1], [1], [batch])
    return evaluate(
        model,
        hardware,
        "fp8",
        phase,
        layouts,
        ISL,
        OSL,
        prefix_cache_hit_fraction=hit,
        prefix_cache_tokens=cache_tokens,
    ).iloc[0]


def test_prefill_skips_the_cached_share() -> None:
    cold, warm = _row("prefill", 0.0), _row("prefill", 0.5)
    # Only the new half of the prompt's KV crosses to the decode pool.
    assert warm.kv_transfer_bytes_per_request == pytest.approx(cold.kv_transfer_bytes_per_request / 2)
    # Half the GEMM tokens but 3/4 of the causal attention pairs and a read of the cached half:
    # faster, but by less than 2x.
    speedup = warm.requests_per_s / cold.requests_per_s
    assert 1.3 < speedup < 2.0
    assert warm.ttft_ms < cold.ttft_ms
    # Input tokens served still count whole prompts.
    assert warm.input_tokens_per_s == pytest.approx(warm.requests_per_s * ISL)


def test_cached_prefixes_occupy_hbm() -> None:
    model = load_model("llama-3.1-8b")
    arch = Architecture.from_spec(model, "fp8")
    tokens = 100_000
    for phase in ("prefill", "decode", "aggregated"):
        plain, cached = _row(phase, 0.5), _row(phase, 0.5, cache_tokens=tokens)
        added_gb = cached.kv_cache_per_gpu_gb - plain.kv_cache_per_gpu_gb
        # TP1: the whole KV of 100k tokens (32 layers x 8 KV heads x 128 x K and V) on the one GPU.
        assert added_gb == pytest.approx(float(arch.kv_bytes_per_request(tokens)) / 1e9), phase
        assert float(arch.kv_bytes_per_request(tokens)) == pytest.approx(
            tokens * 32 * 8 * 128 * 2 * arch.kv_bytes_per_element
        )


def test_default_cache_is_one_prompt_share() -> None:
    problem = resolve("qwen3-32b-h200-4000-500", overrides={"traffic.prefix_cache_hit_fraction": 0.5})
    features = ClassFeatures.of(problem.instance, problem.request_classes[0])
    assert features.prefix_cache_tokens == 2000
    assert ClassFeatures.of(
        resolve("qwen3-32b-h200-4000-500").instance, problem.request_classes[0]
    ).speculations("prefill") == (None,)


@pytest.fixture(scope="module")
def sweep():
    small = {"cluster.max_gpus": 16}
    out = {}
    for hit in (0.0, 0.5):
        problem = resolve(
            "qwen3-32b-h200-4000-500", overrides={**small, "traffic.prefix_cache_hit_fraction": hit}
        )
        out[hit] = mode_rows(solve_frontier(problem, modes=("disaggregated",)), "disaggregated")
    return out


def test_hits_shrink_the_prefill_pool(sweep) -> None:
    cold, warm = sweep[0.0], sweep[0.5]
    assert warm["prefill_decode_gpu_ratio"].median() < cold["prefill_decode_gpu_ratio"].median()
    assert warm["tokens_per_s_per_gpu"].max() > cold["tokens_per_s_per_gpu"].max()
    assert warm["kv_transfer_gb_per_s"].max() <= cold["kv_transfer_gb_per_s"].max()


def test_set_what_if_and_bad_values() -> None:
    runner = CliRunner()
    args = [
        "plan",
        "qwen3-32b-h200-4000-500",
        "--set",
        "cluster.max_gpus=16",
        "--min-tokens-per-s-per-user",
        "20",
    ]
    ok = runner.invoke(main, [*args, "--set", "traffic.prefix_cache_hit_fraction=0.56"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(main, [*args, "--set", "traffic.prefix_cache_hit_fraction=1"])
    assert bad.exit_code == 2
    assert bad.output.startswith("error:")
    assert "prefix_cache_hit_fraction" in bad.output
    mix = runner.invoke(
        main,
        [
            *args,
            "--set",
            "traffic={classes: [{name: chat, isl_tokens: 100, osl_tokens: 10}], "
            "prefix_cache_hit_fraction: 0.5}",
        ],
    )
    assert mix.exit_code == 2
    assert "on each class" in mix.output
