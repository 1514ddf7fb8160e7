"""The ``disagg`` command line: listings, evaluate on the whole catalog, import-hf, validate, error paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from planner.catalog import load_hardware, load_model, names
from planner.cli import main
from planner.measurements import DEFAULT_MEASUREMENTS
from planner.perf import Layouts, layout_problems

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_configs"
JSON_KEYS = {
    "gpus",
    "fits",
    "memory_per_gpu_gb",
    "ttft_ms",
    "tpot_ms",
    "tokens_per_s_per_user",
    "output_tokens_per_s_per_gpu",
    "input_tokens_per_s_per_gpu",
    "requests_per_s",
    "kv_cache_bytes_per_request",
    "compute_ms",
    "memory_ms",
    "communication_ms",
}


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _assert_user_error(result: Result, *fragments: str) -> str:
    """Exit status 2, exactly one 'error:' line on stderr, no traceback; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _evaluate_args(model: str, hardware: str, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        model,
        "--hardware",
        hardware,
        "--isl",
        "1024",
        "--osl",
        "128",
        *extra,
    ]


def _llama_yaml_body() -> str:
    lines = (ROOT / "models" / "llama-3.1-8b.yaml").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


# --------------------------------------------------------------------------- list


@pytest.mark.parametrize("kind", ["models", "hardware"])
def test_list_shows_every_catalog_name(kind: str) -> None:
    result = _run("list", kind)
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert listed == names(kind)
    assert len(listed) >= 8


def test_list_models_summarizes_size() -> None:
    result = _run("list", "models")
    line = next(row for row in result.stdout.splitlines() if row.startswith("llama-3.1-8b "))
    assert "8.0B params" in line
    assert "dense" in line
    line = next(row for row in result.stdout.splitlines() if row.startswith("deepseek-r1 "))
    assert "MLA" in line
    assert "MoE 256x8" in line


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("hardware", names("hardware"))
@pytest.mark.parametrize("model", names("models"))
def test_evaluate_json_for_every_model_and_hardware(model: str, hardware: str) -> None:
    spec, hw = load_model(model), load_hardware(hardware)
    ep = 8 if spec.moe else 1
    precision = "fp8" if "fp8" in hw.supported_precisions else "bf16"
    assert layout_problems(spec, hw, Layouts.of(tp=8, ep=ep, batch=8)) == [None]
    args = ["--phase", "decode", "--tp", "8", "--ep", str(ep), "--batch", "8", "--precision", precision]
    result = _run(*_evaluate_args(model, hardware, *args, "--json"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    assert set(data) >= JSON_KEYS
    assert data["model"] == model
    assert data["hardware"] == hardware
    assert data["gpus"] == 8
    assert isinstance(data["fits"], bool)
    assert data["ttft_ms"] is None  # a decode instance has no first-token latency
    assert data["tpot_ms"] > 0
    assert data["tokens_per_s_per_user"] == pytest.approx(1e3 / data["tpot_ms"])
    assert data["output_tokens_per_s_per_gpu"] == pytest.approx(8 * 1e3 / data["tpot_ms"] / 8)
    assert data["kv_cache_bytes_per_request"] > 0
    assert data["memory_per_gpu_gb"] > 0
    parts = data["compute_ms"] + data["memory_ms"] + data["communication_ms"] + data["overhead_ms"]
    assert parts == pytest.approx(data["tpot_ms"], rel=1e-6)


@pytest.mark.parametrize("phase", ["prefill", "decode", "aggregated"])
def test_evaluate_phases_text_and_json(phase: str) -> None:
    args = _evaluate_args("llama-3.1-70b", "h200-sxm", "--phase", phase, "--tp", "4", "--batch", "16")
    text = _run(*args)
    assert text.exit_code == 0, text.output
    assert "llama-3.1-70b on h200-sxm (fp8)" in text.stdout
    assert "where the time goes" in text.stdout
    data = json.loads(_run(*args, "--json").stdout)
    assert data["phase"] == phase
    assert data["gpus"] == 4
    if phase == "decode":
        assert data["ttft_ms"] is None
    else:
        assert data["ttft_ms"] > 0
    if phase == "prefill":
        assert data["tpot_ms"] is None
        assert data["input_tokens_per_s_per_gpu"] == pytest.approx(data["requests_per_s"] * 1024 / 4)
    else:
        assert data["tpot_ms"] > 0
    assert not any(isinstance(v, float) and math.isnan(v) for v in data.values())


def test_evaluate_a_mix_instance_prices_the_named_class() -> None:
    args = (
        "evaluate",
        "--instance",
        "llama-3.1-70b-h100-diurnal",
        "--phase",
        "decode",
        "--tp",
        "4",
        "--batch",
        "8",
    )
    _assert_user_error(_run(*args), "mix of chat, rag, reasoning", "--request-class")
    rag = json.loads(_run(*args, "--request-class", "rag", "--json").stdout)
    chat = json.loads(_run(*args, "--request-class", "chat", "--json").stdout)
    assert (rag["isl_tokens"], rag["osl_tokens"]) == (16384, 512)
    assert (chat["isl_tokens"], chat["osl_tokens"]) == (2048, 512)
    # A 16k-token context reads eight times the KV cache of a 2k one per step: fewer tokens/s per user.
    assert rag["tokens_per_s_per_user"] < chat["tokens_per_s_per_user"]
    explicit = json.loads(_run(*args, "--request-class", "rag", "--isl", "2048", "--json").stdout)
    assert (explicit["isl_tokens"], explicit["osl_tokens"]) == (2048, 512)  # explicit options win
    _assert_user_error(_run(*args, "--request-class", "nope"), "unknown request class 'nope'")


def test_evaluate_unknown_model() -> None:
    result = _run(
        *_evaluate_args("no-such-model", "h100-sxm", "--phase", "decode", "--tp", "1", "--batch", "1")
    )
    _assert_user_error(result, "unknown model 'no-such-model'")


def test_evaluate_unknown_hardware_suggests_names() -> None:
    result = _run(*_evaluate_args("llama-3.1-8b", "h100", "--phase", "decode", "--tp", "1", "--batch", "1"))
    _assert_user_error(result, "unknown hardware 'h100'", "did you mean", "h100-sxm")


def test_evaluate_tp_not_dividing_heads() -> None:
    result = _run(
        *_evaluate_args("llama-3.1-8b", "h100-sxm", "--phase", "decode", "--tp", "3", "--batch", "8")
    )
    _assert_user_error(result, "TP=3", "32 attention heads", "{1, 2, 4, 8, 16, 32}")


def test_evaluate_ep_not_dividing_experts() -> None:
    args = ["--phase", "decode", "--tp", "1", "--ep", "6", "--attention-dp", "6", "--batch", "6"]
    result = _run(*_evaluate_args("qwen3-235b-a22b", "h200-sxm", *args))
    _assert_user_error(result, "EP=6", "128 experts")


def test_evaluate_ep_larger_than_the_stage() -> None:
    args = ["--phase", "decode", "--tp", "4", "--ep", "8", "--batch", "8"]
    result = _run(*_evaluate_args("qwen3-235b-a22b", "h200-sxm", *args))
    _assert_user_error(result, "EP=8", "TP x attention-DP = 4")


def test_evaluate_ep_on_dense_model() -> None:
    args = ["--phase", "decode", "--tp", "2", "--ep", "2", "--batch", "8"]
    result = _run(*_evaluate_args("llama-3.1-8b", "h100-sxm", *args))
    _assert_user_error(result, "EP=2", "dense")


def test_evaluate_fp4_on_hopper() -> None:
    args = ["--phase", "decode", "--tp", "1", "--batch", "8", "--precision", "fp4"]
    result = _run(*_evaluate_args("llama-3.1-8b", "h100-sxm", *args))
    _assert_user_error(result, "h100-sxm has no fp4", "bf16, fp8")


def test_evaluate_malformed_model_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsource: x\nnum_layers: [32,\n")
    result = _run(*_evaluate_args(str(path), "h100-sxm", "--phase", "decode", "--tp", "1", "--batch", "1"))
    _assert_user_error(result, str(path), "not valid YAML at line")


def test_evaluate_model_yaml_with_unknown_field(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(_llama_yaml_body().replace("num_kv_heads:", "num_kv_head:"))
    result = _run(*_evaluate_args(str(path), "h100-sxm", "--phase", "decode", "--tp", "1", "--batch", "1"))
    _assert_user_error(result, str(path), "'num_kv_head'", "did you mean 'num_kv_heads'?")


def test_evaluate_model_yaml_from_a_path_works(tmp_path: Path) -> None:
    path = tmp_path / "custom-llama.yaml"
    path.write_text(_llama_yaml_body().replace("name: llama-3.1-8b", "name: custom-llama"))
    args = ["--phase", "decode", "--tp", "1", "--batch", "1", "--json"]
    from_path = json.loads(_run(*_evaluate_args(str(path), "h100-sxm", *args)).stdout)
    from_name = json.loads(_run(*_evaluate_args("llama-3.1-8b", "h100-sxm", *args)).stdout)
    assert from_path["tpot_ms"] == from_name["tpot_ms"]


def test_evaluate_rejects_non_positive_tp() -> None:
    result = _run(
        *_evaluate_args("llama-3.1-8b", "h100-sxm", "--phase", "decode", "--tp", "0", "--batch", "1")
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- import-hf


def test_import_hf_writes_a_loadable_spec(tmp_path: Path) -> None:
    out = tmp_path / "my-llama.yaml"
    result = _run("import-hf", str(FIXTURES / "llama-3.1-8b.json"), "--name", "my-llama", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    spec = load_model(str(out))
    shipped = load_model("llama-3.1-8b")
    assert spec.name == "my-llama"
    assert spec.model_dump(exclude={"name", "source"}) == shipped.model_dump(exclude={"name", "source"})
    assert out.read_text().startswith("# Imported from ")
    evaluated = _run(*_evaluate_args(str(out), "h100-sxm", "--phase", "decode", "--tp", "1", "--batch", "1"))
    assert evaluated.exit_code == 0, evaluated.output


def test_import_hf_broken_json(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 4096,\n "num_hidden_layers": }\n')
    out = tmp_path / "never.yaml"
    result = _run("import-hf", str(config), "--name", "broken", "--out", str(out))
    _assert_user_error(result, str(config), "not valid JSON at line 2")
    assert not out.exists()


# --------------------------------------------------------------------------- validate


def test_validate_shipped_measurements() -> None:
    result = _run("validate")
    assert result.exit_code == 0, result.output
    assert "median |error|" in result.stdout
    rows = pd.read_csv(DEFAULT_MEASUREMENTS)
    assert sum(row_id in result.stdout for row_id in rows["id"]) == len(rows)


def test_validate_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "validation.csv"
    result = _run("validate", "--csv", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == len(pd.read_csv(DEFAULT_MEASUREMENTS))
    assert {"measured", "predicted", "error_fraction"} <= set(table.columns)


def test_validate_csv_missing_value_column(tmp_path: Path) -> None:
    path = tmp_path / "no-value.csv"
    pd.read_csv(DEFAULT_MEASUREMENTS).drop(columns=["value"]).to_csv(path, index=False)
    result = _run("validate", "--measurements", str(path))
    _assert_user_error(result, str(path), "value", "missing column")


def test_validate_csv_with_unknown_model(tmp_path: Path) -> None:
    path = tmp_path / "unknown-model.csv"
    frame = pd.read_csv(DEFAULT_MEASUREMENTS)
    frame.loc[3, "model"] = "llama-9.9-1t"
    frame.to_csv(path, index=False)
    result = _run("validate", "--measurements", str(path))
    _assert_user_error(result, str(path), "llama-9.9-1t", str(frame.loc[3, "id"]))
