"""README and help stay true: every command in the table, every option explained, the schema current."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.schema import schema_markdown
from planner.specs import Instance

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _command_table() -> list[str]:
    section = README[README.index("## Commands") :]
    section = section[: section.index("\n\n", section.index("| command |"))]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_command_table_lists_every_command_once() -> None:
    rows = _command_table()[2:]
    named = [re.match(r"\| `disagg ([a-z-]+)", row).group(1) for row in rows]
    assert sorted(named) == sorted(main.commands), named


def test_command_table_rows_render_as_two_cells() -> None:
    """A raw ``|`` inside a cell (``prefill|decode``) splits it, which is how validate/calibrate broke."""
    for row in _command_table():
        cells = row.replace("\\|", "").strip("|").split("|")
        assert len(cells) == 2, row


def test_readme_tables_are_contiguous() -> None:
    """A table row after a paragraph renders as raw text: every row must follow a row or a header."""
    lines = README.splitlines()
    for before, line in zip(lines, lines[1:], strict=False):
        if line.startswith("| ") and not before.startswith("|"):
            assert before == "", f"table row glued to a paragraph: {line[:60]}"


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_has_help_and_every_command_an_example(name: str) -> None:
    command = main.commands[name]
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"disagg {name} {param.opts[0]} has no help text"
    assert "Example: disagg " in command.help


def test_evaluate_attention_dp_is_explained() -> None:
    result = CliRunner().invoke(main, ["evaluate", "--help"])
    text = " ".join(result.output.split())
    assert "--attention-dp INTEGER RANGE Attention data-parallel ranks" in text
    assert "GPUs = TP x PP x attention-DP" in text


def test_schema_reference_is_generated_from_the_specs_and_current() -> None:
    committed = (ROOT / "docs" / "schema.md").read_text()
    assert committed == schema_markdown(), "docs/schema.md is stale: run disagg schema --out docs/schema.md"


def test_schema_reference_documents_the_fields_users_had_to_guess() -> None:
    text = schema_markdown()
    for field in ("`objective`", "`traffic.requests_per_s`", "`slo.tokens_per_s_per_user_targets`"):
        assert f"| {field} |" in text, field
    objective = next(line for line in text.splitlines() if line.startswith("| `objective` |"))
    for value in ("`max_tokens_per_s_per_gpu`", "`min_gpus`", "`min_cost`"):
        assert value in objective, value
    # Every field of every nested instance spec has a row, so a new field shows up in the reference.
    for name, field in Instance.model_fields.items():
        assert f"| `{name}` |" in text
        for sub in getattr(field.annotation, "model_fields", {}):
            assert f"| `{name}.{sub}` |" in text


def test_schema_command_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "schema.md"
    result = CliRunner().invoke(main, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == schema_markdown()


def test_design_sections_cited_in_docstrings_exist() -> None:
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", design, re.M))
    cited = []
    for path in (ROOT / "planner").rglob("*.py"):
        text = path.read_text()
        assert "(DESIGN.md" not in text, f"{path.name} cites DESIGN.md outside docs/"
        for first, last in re.findall(r"docs/DESIGN\.md §(\d+)(?:-(\d+))?", text):
            cited += [(path.name, n) for n in range(int(first), int(last or first) + 1)]
    assert len(cited) >= 5
    for name, number in cited:
        assert str(number) in sections, f"{name} cites docs/DESIGN.md §{number}, which does not exist"
