"""A model's published weight format is a deployment's default, and `evaluate --instance` honours
the instance's quantization block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from planner.catalog import load_hardware, load_model
from planner.cli import main
from planner.errors import LayoutError
from planner.hf_import import model_spec_from_hf_config
from planner.perf import Layouts, evaluate
from planner.perf.quantization import checkpoint_weights, for_deployment
from planner.problem import resolve
from planner.specs import QuantizationSpec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_configs"


def _config(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_published_block_fp8_is_the_default_at_fp8_only() -> None:
    r1 = load_model("deepseek-r1")
    assert r1.checkpoint_weight_format == "fp8_block128"
    assert for_deployment(r1, "fp8") == QuantizationSpec(
        weights="fp8_block128", activations="fp8", kv_cache="fp8"
    )
    # Other precisions requantize: the block-FP8 checkpoint is not what an fp4 or bf16 engine loads.
    assert for_deployment(r1, "fp4").weights == "nvfp4"
    assert for_deployment(r1, "bf16").weights == "bf16"
    # The deployment's own weight format wins; the rest of the block still fills in.
    own = for_deployment(r1, "fp8", QuantizationSpec(weights="fp8_per_tensor", kv_cache="bf16"))
    assert own == QuantizationSpec(weights="fp8_per_tensor", activations="fp8", kv_cache="bf16")
    # A bf16 checkpoint lends nothing.
    assert checkpoint_weights(load_model("qwen3-235b-a22b"), "fp8") is None
    assert for_deployment(load_model("qwen3-235b-a22b"), "fp8").weights == "fp8_per_tensor"


def test_block_fp8_checkpoint_refuses_expert_tp8_without_being_told() -> None:
    """Qwen3-235B-A22B-FP8 at fp8: 1536-wide experts over 8 GPUs cut its 128-wide blocks."""
    model, hardware = load_model("qwen3-235b-a22b-fp8"), load_hardware("h200-sxm")
    with pytest.raises(LayoutError, match="128-wide scale blocks of fp8_block128"):
        evaluate(model, hardware, "fp8", "decode", Layouts.of(tp=8, batch=8), 1024, 1024)
    # Overridden to per-tensor fp8 (a requantized checkpoint) the same layout runs.
    per_tensor = QuantizationSpec(weights="fp8_per_tensor", activations="fp8")
    frame = evaluate(model, hardware, per_tensor, "decode", Layouts.of(tp=8, batch=8), 1024, 1024)
    assert bool(frame["fits"].iloc[0])
    # Weights cost one byte plus one fp32 scale per 128 x 128 block: 4 / 16384 bytes more per weight.
    block = evaluate(model, hardware, "fp8", "decode", Layouts.of(tp=4, batch=8), 1024, 1024)
    plain = evaluate(model, hardware, per_tensor, "decode", Layouts.of(tp=4, batch=8), 1024, 1024)
    ratio = block["weights_per_gpu_gb"].iloc[0] / plain["weights_per_gpu_gb"].iloc[0]
    assert 1.0 < ratio <= 1 + 4 / 16384


def test_an_instance_plans_with_the_checkpoint_format(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    body = {
        "name": "q",
        "model": "qwen3-235b-a22b-fp8",
        "hardware": "h200-sxm",
        "precision": "fp8",
        "traffic": {"isl_tokens": 1024, "osl_tokens": 1024},
        "cluster": {"max_gpus": 8},
    }
    path.write_text(yaml.safe_dump(body))
    problem = resolve(str(path))
    assert problem.quantization.weights == "fp8_block128"
    table = problem.candidate_table("decode", prune=False)
    assert not (table["tp"] * table["attention_dp"] // table["ep"] == 8).any()
    assert (table["tp"] * table["attention_dp"] // table["ep"] == 4).any()
    path.write_text(yaml.safe_dump({**body, "quantization": {"weights": "fp8_per_tensor"}}))
    assert resolve(str(path)).quantization.weights == "fp8_per_tensor"


def test_import_reads_the_published_weight_format() -> None:
    assert (
        model_spec_from_hf_config(_config("deepseek-r1"), "x", "s").checkpoint_weight_format == "fp8_block128"
    )
    assert model_spec_from_hf_config(_config("llama-3.1-70b"), "x", "s").checkpoint_weight_format is None
    # MXFP4 (gpt-oss) is left to the precision's default: see planner.hf_import.
    assert model_spec_from_hf_config(_config("gpt-oss-120b"), "x", "s").checkpoint_weight_format is None
    config = _config("llama-3.1-70b")
    nvfp4 = {**config, "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}
    assert model_spec_from_hf_config(nvfp4, "x", "s").checkpoint_weight_format == "nvfp4"
    other_blocks = {**config, "quantization_config": {"quant_method": "fp8", "weight_block_size": [64, 64]}}
    spec = model_spec_from_hf_config(other_blocks, "x", "s")
    assert (spec.native_precision, spec.checkpoint_weight_format) == ("fp8", None)


def _evaluate_instance(tmp_path: Path, quantization: dict | None, *extra: str) -> dict:
    body = {
        "name": "l",
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "precision": "bf16",
        "traffic": {"isl_tokens": 1024, "osl_tokens": 256},
        "cluster": {"max_gpus": 8},
    }
    if quantization is not None:
        body["quantization"] = quantization
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(body))
    args = [
        "evaluate",
        "--instance",
        str(path),
        "--phase",
        "decode",
        "--tp",
        "1",
        "--batch",
        "8",
        "--json",
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_evaluate_instance_honours_its_quantization_block(tmp_path: Path) -> None:
    plain = _evaluate_instance(tmp_path, None)
    int4 = _evaluate_instance(tmp_path, {"weights": "int4_weight_only", "kv_cache": "fp8"})
    assert (plain["weight_format"], plain["kv_cache_dtype"]) == ("bf16", "bf16")
    assert (int4["weight_format"], int4["kv_cache_dtype"]) == ("int4_weight_only", "fp8")
    # int4 weight-only stores 0.5 + 2/128 bytes per GEMM weight against bf16's 2; the 2 x 128256 x
    # 4096 embedding and head weights stay bf16 (2.1 GB): 16.06 GB -> 0.258 x 13.96 + 2.10 = 5.70 GB.
    embedding_gb = 2 * 128256 * 4096 * 2 / 1e9
    gemm_gb = plain["weights_per_gpu_gb"] - embedding_gb
    expected = gemm_gb * (0.5 + 2 / 128) / 2 + embedding_gb
    assert int4["weights_per_gpu_gb"] == pytest.approx(expected, rel=1e-3)
    # An fp8 KV cache halves the bytes a request holds.
    assert int4["kv_cache_bytes_per_request"] == pytest.approx(plain["kv_cache_bytes_per_request"] / 2)
    # --precision naming another precision starts from that precision's defaults.
    other = _evaluate_instance(tmp_path, {"weights": "int4_weight_only"}, "--precision", "fp8")
    assert (other["precision"], other["weight_format"]) == ("fp8", "fp8_per_tensor")
