"""Messages a new user reads: override errors like file errors, the solved model named, plurals, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from planner.catalog import load_hardware
from planner.cli import main
from planner.humanize import bytes_text, memory_text, plural
from planner.specs import Traffic

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=8")


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_unknown_override_field_lists_the_valid_fields_like_a_file_error(tmp_path: Path) -> None:
    line = _one_error_line(_run("frontier", *SMALL, "--set", "traffic.isl=16384", "--out", tmp_path / "o"))
    assert "'traffic.isl'" in line
    assert "unknown field" in line
    for valid in Traffic.model_fields:
        assert valid in line, valid
    assert "Extra inputs are not permitted" not in line
    assert not (tmp_path / "o").exists()


def test_unknown_model_field_override_is_named_with_its_spec(tmp_path: Path) -> None:
    line = _one_error_line(_run("frontier", *SMALL, "--set", "model.num_layer=3", "--out", tmp_path / "o"))
    assert "'model.num_layer'" in line
    assert "did you mean 'num_layers'?" in line
    assert "allowed: " in line


def test_cross_field_override_error_does_not_dump_the_spec(tmp_path: Path) -> None:
    line = _one_error_line(
        _run("frontier", *SMALL, "--set", "hardware.gpus_per_node=3", "--out", tmp_path / "o")
    )
    assert "'hardware.gpus_per_node'" in line
    assert "must divide one another" in line
    assert "datasheet" not in line  # the spec's source text is not part of the message


@pytest.mark.solver
def test_headers_name_the_model_actually_solved(tmp_path: Path) -> None:
    swapped = ("--set", "model=llama-3.1-8b")
    frontier = _run("frontier", *SMALL, *swapped, "--out", tmp_path / "f", "--quiet")
    assert frontier.exit_code == 0, frontier.output
    first = frontier.stdout.splitlines()[0]
    assert "llama-3.1-8b on h200-sxm" in first
    assert "qwen3-32b on" not in first
    plan = _run("plan", *SMALL, *swapped, "--min-tokens-per-s-per-user", "40")
    assert plan.exit_code == 0, plan.output
    assert "llama-3.1-8b on h200-sxm" in plan.stdout.splitlines()[0]


@pytest.mark.solver
def test_plan_text_uses_singular_for_one() -> None:
    plan = _run("plan", *SMALL, "--set", "model=llama-3.1-8b", "--min-tokens-per-s-per-user", "40")
    assert plan.exit_code == 0, plan.output
    assert "(1 GPU each)" in plan.stdout  # the 8B model fits one H200
    for wrong in ("(1 GPUs", " 1 solves", " 1 instances", "instance(s)", "node(s)"):
        assert wrong not in plan.stdout, wrong


def test_plural() -> None:
    assert plural(1, "GPU") == "1 GPU"
    assert plural(2, "GPU") == "2 GPUs"
    assert plural(0, "solve") == "0 solves"
    assert plural(1_024, "node") == "1,024 nodes"


def test_byte_sizes_are_read_in_si_units() -> None:
    assert bytes_text(754_974_720) == "755 MB"
    assert bytes_text(2.5e9) == "2.5 GB"
    assert bytes_text(512) == "512 B"


def test_h100_memory_is_shown_in_gib_and_in_the_specs_gb() -> None:
    h100 = load_hardware("h100-sxm")
    # 85.5e9 bytes / 2**30 = 79.63 GiB: the "80 GB" of the datasheet, in the spec's 1e9-byte GB.
    assert memory_text(h100.hbm_capacity_gb) == "79.6 GiB (85.5 GB)"
    listing = _run("list", "hardware")
    assert listing.exit_code == 0
    line = next(x for x in listing.stdout.splitlines() if x.startswith("h100-sxm"))
    assert "79.6 GiB (85.5 GB)" in line
    assert "86 GB" not in line


def test_evaluate_shows_kv_per_request_with_a_unit() -> None:
    args = ["evaluate", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--phase", "decode"]
    result = _run(*args, "--tp", "4", "--batch", "64", "--isl", "4096", "--osl", "512")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "KV cache per request" in x)
    # Llama-3.1-70B: 80 layers x 8 KV heads x 128 dims x 2 (K, V) x 1 byte (fp8) x 4,608 tokens.
    assert "755 MB (754,974,720 bytes)" in line
