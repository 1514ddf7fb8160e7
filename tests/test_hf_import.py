"""The HF config importer reproduces the shipped model catalog and reports bad configs clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.catalog import load_spec, parse_spec
from planner.errors import SpecError
from planner.hf_import import (
    import_hf_config,
    load_hf_config,
    model_spec_from_hf_config,
    model_spec_to_yaml,
)
from planner.specs import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf_configs"
MODELS = ROOT / "models"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _write(tmp_path: Path, config: object, file_name: str = "config.json") -> Path:
    path = tmp_path / file_name
    path.write_text(json.dumps(config))
    return path


def _without_source(spec: ModelSpec) -> dict[str, Any]:
    data = spec.model_dump()
    data.pop("source")
    return data


def test_every_fixture_has_a_shipped_model() -> None:
    assert len(NAMES) >= 13
    missing = [name for name in NAMES if not (MODELS / f"{name}.yaml").is_file()]
    assert missing == []


@pytest.mark.parametrize("name", NAMES)
def test_import_matches_shipped_spec(name: str) -> None:
    imported = import_hf_config(FIXTURES / f"{name}.json", name)
    shipped = load_spec(MODELS / f"{name}.yaml", ModelSpec)
    assert _without_source(imported) == _without_source(shipped)
    assert "config.json" in shipped.source


@pytest.mark.parametrize("name", NAMES)
def test_yaml_round_trip(name: str) -> None:
    spec = import_hf_config(FIXTURES / f"{name}.json", name, source=f"{name} config.json")
    text = model_spec_to_yaml(spec)
    assert parse_spec(yaml.safe_load(text), ModelSpec, "round-trip") == spec
    assert text.startswith(f"name: {name}\nsource: ")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_file_is_writer_output_plus_comment_header(name: str) -> None:
    lines = (MODELS / f"{name}.yaml").read_text().splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    body = "".join(lines[len(header) :])
    assert header, "shipped model files start with a comment header"
    assert body == model_spec_to_yaml(load_spec(MODELS / f"{name}.yaml", ModelSpec))


def test_header_is_written_as_comments() -> None:
    spec = import_hf_config(FIXTURES / "llama-3.2-1b.json", "llama-3.2-1b")
    text = model_spec_to_yaml(spec, header="first line\n\nthird line")
    assert text.startswith("# first line\n#\n# third line\nname: llama-3.2-1b\n")


def test_defaults_are_omitted_but_name_and_source_kept() -> None:
    spec = ModelSpec(
        name="tiny",
        source="s",
        num_layers=2,
        hidden_dim=64,
        num_attention_heads=4,
        num_kv_heads=4,
        head_dim=16,
        intermediate_dim=128,
        vocab_size_tokens=100,
    )
    data = yaml.safe_load(model_spec_to_yaml(spec))
    assert list(data) == [
        "name",
        "source",
        "num_layers",
        "hidden_dim",
        "num_attention_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_dim",
        "vocab_size_tokens",
    ]


# --------------------------------------------------------------------------- mapping rules


def test_model_spec_from_hf_config_uses_given_source() -> None:
    spec = model_spec_from_hf_config(_fixture("llama-3.1-8b"), "llama-3.1-8b", "somewhere")
    assert spec.source == "somewhere"


def test_text_config_nesting_is_unwrapped() -> None:
    inner = _fixture("llama-3.1-8b")
    dtype = inner.pop("torch_dtype")
    wrapper = {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "torch_dtype": dtype,
        "text_config": inner,
        "vision_config": {"hidden_size": 1024, "num_attention_heads": 16},
    }
    nested = model_spec_from_hf_config(wrapper, "llama-3.1-8b", "s")
    flat = model_spec_from_hf_config(_fixture("llama-3.1-8b"), "llama-3.1-8b", "s")
    assert nested == flat


def test_head_dim_and_kv_heads_default() -> None:
    config = _fixture("llama-2-70b")
    del config["num_key_value_heads"]
    spec = model_spec_from_hf_config(config, "mha", "s")
    assert spec.head_dim == 8192 // 64
    assert spec.num_kv_heads == 64


def test_explicit_head_dim_wins_over_hidden_over_heads() -> None:
    spec = model_spec_from_hf_config(_fixture("qwen3-32b"), "qwen3-32b", "s")
    assert spec.head_dim == 128 != 5120 // 64


def test_qwen2_style_sliding_window_layers() -> None:
    config = _fixture("qwen3-32b")
    config.update(use_sliding_window=True, sliding_window=4096, max_window_layers=48)
    spec = model_spec_from_hf_config(config, "q", "s")
    assert (spec.sliding_window_tokens, spec.num_sliding_window_layers) == (4096, 16)


def test_disabled_sliding_window_is_ignored() -> None:
    config = _fixture("qwen3-32b")
    config.update(use_sliding_window=False, sliding_window=4096)
    spec = model_spec_from_hf_config(config, "q", "s")
    assert (spec.sliding_window_tokens, spec.num_sliding_window_layers) == (None, 0)


def test_mistral_style_sliding_window_covers_every_layer() -> None:
    config = _fixture("llama-3.1-8b")
    config["sliding_window"] = 4096
    spec = model_spec_from_hf_config(config, "m", "s")
    assert (spec.sliding_window_tokens, spec.num_sliding_window_layers) == (4096, 32)


def test_qwen_moe_leading_dense_layers_and_shared_expert() -> None:
    config = _fixture("qwen3-30b-a3b")
    config.update(mlp_only_layers=[0, 1], shared_expert_intermediate_size=4 * 768)
    spec = model_spec_from_hf_config(config, "q", "s")
    assert spec.moe is not None
    assert (spec.moe.num_dense_layers, spec.moe.num_shared_experts) == (2, 4)


def test_fp8_dtype_and_float16_precisions() -> None:
    config = _fixture("llama-3.1-8b")
    config["torch_dtype"] = "float8_e4m3fn"
    assert model_spec_from_hf_config(config, "x", "s").native_precision == "fp8"
    config["torch_dtype"] = "float16"
    assert model_spec_from_hf_config(config, "x", "s").native_precision == "bf16"


# --------------------------------------------------------------------------- errors


def test_missing_hidden_size_names_file_and_key(tmp_path: Path) -> None:
    config = _fixture("llama-3.1-8b")
    del config["hidden_size"]
    path = _write(tmp_path, config)
    with pytest.raises(SpecError) as info:
        import_hf_config(path, "llama-3.1-8b")
    assert str(path) in str(info.value)
    assert "hidden_size" in str(info.value)
    assert info.value.field == "hidden_size"
    assert info.value.path == str(path)


def test_missing_nested_key_names_text_config(tmp_path: Path) -> None:
    inner = _fixture("llama-3.1-8b")
    del inner["num_hidden_layers"]
    path = _write(tmp_path, {"model_type": "llava", "text_config": inner})
    with pytest.raises(SpecError) as info:
        import_hf_config(path, "x")
    assert info.value.field == "text_config.num_hidden_layers"


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"hidden_size": 4096,')
    with pytest.raises(SpecError) as info:
        load_hf_config(path)
    assert str(path) in str(info.value)
    assert "JSON" in str(info.value)
    with pytest.raises(SpecError, match="broken.json"):
        import_hf_config(path, "x")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(SpecError, match="nope.json"):
        load_hf_config(path)


def test_non_object_json_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, [1, 2, 3])
    with pytest.raises(SpecError, match="JSON object"):
        load_hf_config(path)


def test_unknown_attention_type_names_layer_types(tmp_path: Path) -> None:
    config = _fixture("gpt-oss-120b")
    config["layer_types"] = ["linear_attention", "full_attention"] * 18
    path = _write(tmp_path, config)
    with pytest.raises(SpecError) as info:
        import_hf_config(path, "x")
    assert info.value.field == "layer_types"
    assert "linear_attention" in str(info.value)


def test_layer_types_length_must_match_layers(tmp_path: Path) -> None:
    config = _fixture("gpt-oss-120b")
    config["layer_types"] = config["layer_types"][:-1]
    with pytest.raises(SpecError) as info:
        import_hf_config(_write(tmp_path, config), "x")
    assert info.value.field == "layer_types"


@pytest.mark.parametrize(
    ("key", "value"),
    [("attention_chunk_size", 8192), ("index_topk", 2048), ("full_attention_interval", 4)],
)
def test_unsupported_architectures_are_refused(tmp_path: Path, key: str, value: int) -> None:
    config = _fixture("llama-3.1-8b")
    config[key] = value
    with pytest.raises(SpecError) as info:
        import_hf_config(_write(tmp_path, config), "x")
    assert info.value.field == key
    assert "by hand" in str(info.value)


def test_unknown_quantization_is_refused(tmp_path: Path) -> None:
    config = _fixture("llama-3.1-8b")
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    with pytest.raises(SpecError) as info:
        import_hf_config(_write(tmp_path, config), "x")
    assert info.value.field == "quantization_config.quant_method"
    assert "gptq" in str(info.value)


def test_moe_without_top_k_is_refused(tmp_path: Path) -> None:
    config = _fixture("mixtral-8x22b")
    del config["num_experts_per_tok"]
    with pytest.raises(SpecError) as info:
        import_hf_config(_write(tmp_path, config), "x")
    assert info.value.field == "num_experts_per_tok"


def test_non_integer_value_is_refused(tmp_path: Path) -> None:
    config = _fixture("llama-3.1-8b")
    config["num_attention_heads"] = "32"
    with pytest.raises(SpecError) as info:
        import_hf_config(_write(tmp_path, config), "x")
    assert info.value.field == "num_attention_heads"


def test_inconsistent_config_fails_spec_validation_naming_the_file(tmp_path: Path) -> None:
    config = _fixture("llama-3.1-8b")
    config["num_key_value_heads"] = 5
    path = _write(tmp_path, config)
    with pytest.raises(SpecError) as info:
        import_hf_config(path, "x")
    assert str(path) in str(info.value)
    assert "num_kv_heads" in str(info.value)
