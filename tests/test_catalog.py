"""The shipped catalog loads, and bad spec files fail with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.catalog import (
    catalog_dir,
    check_precision_supported,
    load_hardware,
    load_model,
    names,
)
from planner.errors import SpecError
from planner.specs import HardwareSpec, ModelSpec

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILES = sorted((ROOT / "models").glob("*.yaml"))
HARDWARE_FILES = sorted((ROOT / "hardware").glob("*.yaml"))


def _llama_yaml_body() -> str:
    """The shipped llama-3.1-8b file without its comment header."""
    lines = (ROOT / "models" / "llama-3.1-8b.yaml").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def test_catalog_is_not_empty() -> None:
    assert len(MODEL_FILES) >= 13
    assert len(HARDWARE_FILES) >= 8
    assert names("models") == sorted(p.stem for p in MODEL_FILES)
    assert names("hardware") == sorted(p.stem for p in HARDWARE_FILES)
    assert catalog_dir("models").resolve() == (ROOT / "models").resolve()


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_loads_and_is_named_after_its_file(path: Path) -> None:
    spec = load_model(path.stem)
    assert isinstance(spec, ModelSpec)
    assert spec.name == path.stem
    assert load_model(str(path)) == spec


@pytest.mark.parametrize("path", HARDWARE_FILES, ids=lambda p: p.stem)
def test_every_hardware_loads_and_is_named_after_its_file(path: Path) -> None:
    spec = load_hardware(path.stem)
    assert isinstance(spec, HardwareSpec)
    assert spec.name == path.stem
    assert "bf16" in spec.supported_precisions
    assert load_hardware(str(path)) == spec


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsource: test\nnum_layers: 32\nhidden_dim: [4096,\n  oops: : :\n")
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    text = str(info.value)
    assert str(path) in text
    assert "line " in text
    line = int(text.split("line ")[1].split(",")[0])
    assert 4 <= line <= 6, text
    assert "Traceback" not in text


def test_malformed_yaml_reports_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "tab.yaml"
    path.write_text("name: x\nsource: y\nnum_layers: 2\n\thidden_dim: 3\n")
    with pytest.raises(SpecError, match=r"line 4\b"):
        load_model(str(path))


def test_unknown_field_is_named_with_a_did_you_mean_hint(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(_llama_yaml_body().replace("hidden_dim:", "hidden_dimm:"))
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    text = str(info.value)
    assert str(path) in text
    assert "'hidden_dimm'" in text
    assert "did you mean 'hidden_dim'?" in text


def test_unknown_field_far_from_any_name_lists_the_allowed_fields(tmp_path: Path) -> None:
    path = tmp_path / "far.yaml"
    path.write_text(_llama_yaml_body() + "zzqqxx: 1\n")
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    text = str(info.value)
    assert "'zzqqxx'" in text
    assert "did you mean" not in text
    assert "allowed:" in text
    assert "hidden_dim" in text


def test_unknown_nested_field_gets_a_hint_from_the_nested_spec(tmp_path: Path) -> None:
    body = (ROOT / "models" / "deepseek-r1.yaml").read_text()
    path = tmp_path / "nested.yaml"
    path.write_text(body.replace("num_routed_experts:", "num_routed_expert:"))
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    text = str(info.value)
    assert "'moe.num_routed_expert'" in text
    assert "did you mean 'num_routed_experts'?" in text


def test_validation_error_sets_the_field_attribute(tmp_path: Path) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(_llama_yaml_body() + "hidden_dimm: 4096\n")
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    assert info.value.path == str(path)
    assert info.value.field == "hidden_dimm"


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    body = "".join(line for line in _llama_yaml_body().splitlines(True) if not line.startswith("head_dim:"))
    path.write_text(body)
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    text = str(info.value)
    assert str(path) in text
    assert "'head_dim'" in text
    assert "missing" in text


def test_out_of_range_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "zero.yaml"
    path.write_text(_llama_yaml_body().replace("num_layers: 32", "num_layers: 0"))
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    assert "'num_layers'" in str(info.value)
    assert "got 0" in str(info.value)


def test_non_mapping_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_model(str(path))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(SpecError) as info:
        load_model(str(path))
    assert str(path) in str(info.value)


def test_unknown_model_name_suggests_close_names() -> None:
    with pytest.raises(SpecError) as info:
        load_model("llama-3.1-8bb")
    text = str(info.value)
    assert "llama-3.1-8bb" in text
    assert "did you mean" in text
    assert "llama-3.1-8b" in text.split("did you mean")[1]
    assert info.value.field == "model"


def test_unknown_hardware_name_suggests_close_names() -> None:
    with pytest.raises(SpecError) as info:
        load_hardware("h100")
    text = str(info.value)
    assert "did you mean" in text
    assert "h100-sxm" in text.split("did you mean")[1]


def test_check_precision_supported() -> None:
    h100 = load_hardware("h100-sxm")
    with pytest.raises(SpecError) as info:
        check_precision_supported(h100, "fp4")
    text = str(info.value)
    assert "fp4" in text
    assert "h100-sxm" in text
    assert "bf16, fp8" in text
    check_precision_supported(h100, "fp8")
    check_precision_supported(h100, "bf16")
    check_precision_supported(load_hardware("b200"), "fp4")
    assert h100.supported_precisions == ("bf16", "fp8")
