"""``disagg export``: every emitted command parses against its engine's published flags, every file parses."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Literal

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict, Field

from planner.cli import main
from planner.export import ENGINE_FLAGS, TRTLLM_CONFIG_KEYS, deployment_from_answer, render_export

SMALL = ("qwen3-32b-h200-4000-500", "--set", "cluster.max_gpus=16")
LAUNCHERS = {
    ("vllm", "serve"): ("vllm", 1),  # engine, positional arguments after the launcher (the model)
    ("python", "-m", "sglang.launch_server"): ("sglang", 0),
    ("trtllm-serve",): ("trtllm", 1),
}


def engine_parser(engine: str, positionals: int = 0) -> argparse.ArgumentParser:
    """An argparse parser accepting exactly the recorded flags of an engine (unknown flags are errors)."""
    parser = argparse.ArgumentParser(prog=engine, exit_on_error=False, add_help=False)
    for index in range(positionals):
        parser.add_argument(f"positional{index}")
    for flag, kind in ENGINE_FLAGS[engine].items():
        if kind is bool:
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=kind, required=False)
    return parser


def parse_command(line: str) -> tuple[str, argparse.Namespace]:
    argv = shlex.split(line)
    for prefix, (engine, positionals) in LAUNCHERS.items():
        if tuple(argv[: len(prefix)]) == prefix:
            parser = engine_parser(engine, positionals)
            try:
                namespace, unknown = parser.parse_known_args(argv[len(prefix) :])
            except argparse.ArgumentError as err:  # a value of the wrong type
                pytest.fail(f"{engine}: {err} in {line}")
            assert not unknown, f"{engine} has no flags {unknown} (published CLI): {line}"
            return engine, namespace
    pytest.fail(f"unknown launcher: {line}")


def script_commands(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Container(_Strict):
    image: str = Field(min_length=1)
    command: list[str]
    args: list[str]


class _PodSpec(_Strict):
    mainContainer: _Container  # noqa: N815 (the CRD's field name)


class _Limits(_Strict):
    gpu: str = Field(pattern=r"^[1-9][0-9]*$")


class _Resources(_Strict):
    limits: _Limits


class _Service(_Strict):
    dynamoNamespace: str  # noqa: N815
    componentType: Literal["frontend", "worker"]  # noqa: N815
    subComponentType: Literal["prefill", "decode"] | None = None  # noqa: N815
    replicas: int = Field(ge=1)
    resources: _Resources | None = None
    extraPodSpec: _PodSpec  # noqa: N815


class _Spec(_Strict):
    services: dict[str, _Service]


class _Metadata(_Strict):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)


class DynamoGraphDeployment(_Strict):
    """The subset of the DynamoGraphDeployment CRD this planner writes (ai-dynamo/dynamo vLLM examples)."""

    apiVersion: Literal["nvidia.com/v1alpha1"]  # noqa: N815
    kind: Literal["DynamoGraphDeployment"]
    metadata: _Metadata
    spec: _Spec


def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(constant)

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    result = CliRunner().invoke(main, ["plan", *SMALL, "--min-tokens-per-s-per-user", "40", "--json"])
    assert result.exit_code == 0, result.output
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(result.output)
    return path


@pytest.mark.parametrize("mode", ["disaggregated", "aggregated"])
def test_export_of_a_plan_json_parses_for_every_engine(plan_file: Path, tmp_path: Path, mode: str):
    result = CliRunner().invoke(main, ["export", str(plan_file), "--mode", mode, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(plan_file.read_text())
    plan = answer["plans"][mode]
    layouts = [(pool, layout) for pool, body in plan["pools"].items() for layout in body["layouts"]]
    summary = strict_json((tmp_path / "deployment.json").read_text())
    assert len(summary["pools"]) == len(layouts)

    seen = set()
    for script in ("vllm.sh", "sglang.sh", "trtllm.sh"):
        commands = script_commands(tmp_path / script)
        assert len(commands) == len(layouts)
        for line, (pool, layout) in zip(commands, layouts, strict=True):
            engine, ns = parse_command(line)
            seen.add(engine)
            dp = layout["attention_dp"]
            if engine == "vllm":
                assert (
                    ns.tensor_parallel_size * ns.pipeline_parallel_size * (ns.data_parallel_size or 1)
                    == (layout["gpus_per_instance"])
                )
                assert ns.max_num_seqs == layout["batch"] // dp
                assert ns.kv_cache_dtype == "fp8"
                assert (ns.kv_transfer_config is not None) == (pool != "aggregated")
            elif engine == "sglang":
                assert ns.tp_size * ns.pp_size == layout["gpus_per_instance"]
                assert ns.max_running_requests == layout["batch"]
                assert ns.disaggregation_mode == (None if pool == "aggregated" else pool)
            else:
                assert ns.tp_size * ns.pp_size == layout["gpus_per_instance"]
                config = yaml.safe_load((tmp_path / ns.extra_llm_api_options).read_text())
                keys = {k for k in config} | {
                    f"{k}.{sub}" for k, v in config.items() if isinstance(v, dict) for sub in v
                }
                assert keys <= set(TRTLLM_CONFIG_KEYS)
    assert seen == {"vllm", "sglang", "trtllm"}

    graph = DynamoGraphDeployment.model_validate(yaml.safe_load((tmp_path / "dynamo.yaml").read_text()))
    workers = [s for s in graph.spec.services.values() if s.componentType == "worker"]
    assert len(workers) == len(layouts)
    dynamo_flags = engine_parser("vllm")
    for flag, kind in ENGINE_FLAGS["dynamo.vllm"].items():
        dynamo_flags.add_argument(flag, **({"action": "store_true"} if kind is bool else {"type": kind}))
    for worker, (pool, layout) in zip(workers, layouts, strict=True):
        assert worker.replicas == layout["instances"]
        assert int(worker.resources.limits.gpu) == layout["gpus_per_instance"]
        assert worker.subComponentType == (None if pool == "aggregated" else pool)
        assert worker.extraPodSpec.mainContainer.command == ["python3", "-m", "dynamo.vllm"]
        ns, unknown = dynamo_flags.parse_known_args(worker.extraPodSpec.mainContainer.args)
        assert not unknown
        assert ns.is_prefill_worker == (pool == "prefill")
        assert ns.model == "Qwen/Qwen3-32B"


def test_export_of_an_instance_equals_export_of_its_plan(plan_file: Path, tmp_path: Path):
    direct = tmp_path / "direct"
    result = CliRunner().invoke(
        main, ["export", *SMALL, "--min-tokens-per-s-per-user", "40", "--out", str(direct)]
    )
    assert result.exit_code == 0, result.output
    via = tmp_path / "via"
    assert CliRunner().invoke(main, ["export", str(plan_file), "--out", str(via)]).exit_code == 0
    for name in ("vllm.sh", "sglang.sh", "dynamo.yaml"):
        assert (direct / name).read_text() == (via / name).read_text()


def _answer(layout: dict, pool: str = "decode") -> dict:
    base = {
        "instances": 2,
        "gpus_per_instance": 8,
        "chunked_prefill": False,
        "two_batch_overlap": True,
        "eplb": True,
    }
    prefill = {
        "tp": 1,
        "pp": 1,
        "ep": 8,
        "attention_dp": 8,
        "batch": 8,
        "instances": 1,
        "gpus_per_instance": 8,
    }
    return {
        "instance": "hand", "target_tokens_per_s_per_user": 20.0, "model": "deepseek-r1",
        "model_source": "deepseek-ai/DeepSeek-R1 config.json", "precision": "fp4",
        "request_classes": [{"name": "all", "isl_tokens": 1024, "osl_tokens": 1024, "share_fraction": 1.0}],
        "recommended_mode": "disaggregated",
        "plans": {"disaggregated": {"pools": {
            "prefill": {"layouts": [{**base, **prefill}]},
            "decode": {"layouts": [{**base, **layout}]},
        }}},
    }  # fmt: skip


def test_wide_ep_layout_maps_by_hand():
    """DeepSeek-R1 FP4, decode TP1 EP8 attention-DP8 batch 256 with two-batch overlap + EPLB."""
    d = deployment_from_answer(_answer({"tp": 1, "pp": 1, "ep": 8, "attention_dp": 8, "batch": 256}))
    prefill, decode = d.engines
    assert d.model_path == "deepseek-ai/DeepSeek-R1"
    assert d.max_context_tokens == 2048
    assert prefill.max_batched_tokens == 1 * 1024  # batch 8 over 8 ranks: one whole prompt per rank
    assert prefill.chunk_tokens is None
    assert decode.seqs_per_rank == 32
    files = render_export(d, name="hand")
    _, ns = parse_command(script_commands_of(files["sglang.sh"])[1])
    assert (ns.tp_size, ns.dp_size, ns.ep_size, ns.enable_dp_attention) == (8, 8, 8, True)
    assert ns.enable_two_batch_overlap
    assert ns.enable_eplb
    assert ns.max_running_requests == 256
    assert ns.kv_cache_dtype == "fp8_e4m3"
    assert ns.quantization is None  # FP4 needs a pre-quantized checkpoint; no on-the-fly flag
    _, ns = parse_command(script_commands_of(files["vllm.sh"])[1])
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (1, 8, True)
    assert ns.max_num_seqs == 32
    config = yaml.safe_load(files["trtllm-decode.yaml"])
    assert config["enable_attention_dp"] is True
    assert decode.notes == []  # EP 8 = TP x DP: every engine expresses it exactly


def script_commands_of(data: bytes) -> list[str]:
    return [line for line in data.decode().splitlines() if line and not line.startswith("#")]


def test_a_layout_engines_cannot_express_exactly_gets_a_note():
    d = deployment_from_answer(_answer({"tp": 2, "pp": 1, "ep": 4, "attention_dp": 4, "batch": 64}))
    notes = d.engines[1].notes
    assert any("TP x DP = 8" in n for n in notes)
    assert any("TensorRT-LLM" in n for n in notes)
    assert "# note:" in render_export(d, name="hand")["vllm.sh"].decode()


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        ("{}", (), "expected the list"),
        ("not json", (), "not JSON"),
        (None, ("--answer", "3"), "--answer 3"),
        (None, ("--mode", "aggregated", "--model-path", ""), None),
    ],
)
def test_bad_plan_files_exit_2_and_write_nothing(plan_file, tmp_path, content, args, needle):
    path = plan_file
    if content is not None:
        path = tmp_path / "bad.json"
        path.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", str(path), *args, "--out", str(out)])
    if needle is None:  # an empty --model-path falls back to the spec's repository
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert result.output.startswith("error:")
    assert not out.exists()


def test_a_mode_without_plan_is_named(plan_file, tmp_path):
    (answer,) = json.loads(plan_file.read_text())
    answer["plans"]["aggregated"] = None
    answer["no_plan_reasons"] = {"aggregated": "no layout fits"}
    path = tmp_path / "one.json"
    path.write_text(json.dumps([answer]))
    result = CliRunner().invoke(
        main, ["export", str(path), "--mode", "aggregated", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "no layout fits" in result.output
