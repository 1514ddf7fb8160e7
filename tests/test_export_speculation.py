"""Export of a plan whose decode layout speculates: TensorRT-LLM's MTP options and a note for the others."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from planner.cli import main


def test_speculating_decode_layout_exports_mtp(tmp_path) -> None:
    args = ["export", "llama-3.1-8b-gb200-4k-256", "--set", "cluster.max_gpus=8"]
    args += ["--set", "traffic.draft_acceptance_fraction=0.7", "--min-tokens-per-s-per-user", "300"]
    result = CliRunner().invoke(main, [*args, "--mode", "disaggregated", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    decode = yaml.safe_load((tmp_path / "trtllm-decode.yaml").read_text())
    drafts = decode["speculative_config"]["num_nextn_predict_layers"]
    assert decode["speculative_config"]["decoding_type"] == "MTP"
    assert drafts in (1, 2, 3)  # the instance's default speculation.draft_tokens
    prefill = yaml.safe_load((tmp_path / "trtllm-prefill.yaml").read_text())
    assert "speculative_config" not in prefill
    assert f"speculates with {drafts} draft tokens" in (tmp_path / "vllm.sh").read_text()
