"""``disagg export``: a plan turned into what an operator deploys (engine launch commands, a Dynamo graph).

Why it exists
    A plan names layouts (TP, PP, EP, attention-DP, batch) and instance counts; an
    operator needs the flags of the engine they run. This module maps one answer of
    ``disagg plan --json`` (the recommended mode, or one named) onto:

    - ``vllm.sh``: one ``vllm serve`` command per pool layout;
    - ``sglang.sh``: one ``python -m sglang.launch_server`` command per pool layout;
    - ``trtllm.sh`` and ``trtllm-<pool>.yaml``: ``trtllm-serve`` with its
      ``--extra_llm_api_options`` file per pool layout;
    - ``dynamo.yaml``: an NVIDIA Dynamo ``DynamoGraphDeployment`` (vLLM workers; a
      prefill and a decode worker service per layout when disaggregated);
    - ``deployment.json``: the same commands as argument lists, with instance and GPU counts.

How a layout maps onto engine settings (the planner's meaning of each field)
    - parallelism: TP, PP, EP and attention-DP as the engine spells them. SGLang and
      TensorRT-LLM size TP over the attention-DP ranks too (``--tp-size = TP x DP`` with
      DP attention); vLLM takes TP and DP separately and, with ``--enable-expert-parallel``,
      spreads experts over ``TP x DP`` GPUs (a plan whose EP differs gets a note).
    - max concurrent sequences: ``batch`` (requests in flight per instance); vLLM and
      TensorRT-LLM schedule per attention-DP rank, so they get ``batch / DP``.
    - max batched tokens and chunk size: prefill instances run whole prompts
      (``batch / DP x ISL`` tokens a forward) unless PP > 1, where the planner prices
      chunked pipeline prefill in chunks of ``PREFILL_CHUNK_TOKENS``; decode instances one
      token per sequence, with the chunk budget for the KV hand-off; co-located
      instances ``batch / DP`` plus one chunk with chunked prefill, else one whole prompt.
    - KV dtype: FP8 for FP8/FP4 deployments (as the performance model prices it), else
      the engine's default.

Every flag and config key written here is in :data:`ENGINE_FLAGS` / :data:`TRTLLM_CONFIG_KEYS`
with the public document it comes from; ``tests/test_export.py`` parses every emitted
command against those lists and every YAML/JSON file with a strict parser.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from planner.errors import SpecError
from planner.jsonable import json_text
from planner.perf.phases import PREFILL_CHUNK_TOKENS

ENGINE_FLAGS: dict[str, dict[str, type]] = {
    "vllm": {
        "--tensor-parallel-size": int,
        "--pipeline-parallel-size": int,
        "--data-parallel-size": int,
        "--enable-expert-parallel": bool,
        "--max-num-seqs": int,
        "--max-num-batched-tokens": int,
        "--enable-chunked-prefill": bool,
        "--kv-cache-dtype": str,
        "--quantization": str,
        "--max-model-len": int,
        "--kv-transfer-config": str,
        "--port": int,
    },
    "sglang": {
        "--model-path": str,
        "--tp-size": int,
        "--pp-size": int,
        "--dp-size": int,
        "--ep-size": int,
        "--enable-dp-attention": bool,
        "--max-running-requests": int,
        "--chunked-prefill-size": int,
        "--max-prefill-tokens": int,
        "--kv-cache-dtype": str,
        "--quantization": str,
        "--context-length": int,
        "--disaggregation-mode": str,
        "--enable-two-batch-overlap": bool,
        "--enable-eplb": bool,
        "--port": int,
    },
    "trtllm": {
        "--backend": str,
        "--tp_size": int,
        "--pp_size": int,
        "--ep_size": int,
        "--max_batch_size": int,
        "--max_num_tokens": int,
        "--max_seq_len": int,
        "--extra_llm_api_options": str,
        "--port": int,
    },
    "dynamo.vllm": {"--model": str, "--is-prefill-worker": bool},
}
"""Flags each engine's published CLI accepts (those this module writes), with their value type.

Sources: vLLM "Engine Arguments" (https://docs.vllm.ai/en/stable/configuration/engine_args.html)
and "NixlConnector Usage Guide" (https://docs.vllm.ai/en/stable/features/nixl_connector_usage.html,
``--kv-transfer-config``); SGLang "Server Arguments"
(https://docs.sglang.io/advanced_features/server_arguments.html; two-batch overlap and EPLB as in
sgl-project/sglang issue #6017); TensorRT-LLM "trtllm-serve"
(https://nvidia.github.io/TensorRT-LLM/commands/trtllm-serve/trtllm-serve.html); Dynamo's vLLM worker
(``python3 -m dynamo.vllm`` takes vLLM's engine arguments plus ``--is-prefill-worker``:
ai-dynamo/dynamo ``components/backends/vllm/deploy/README.md``)."""

TRTLLM_CONFIG_KEYS = (
    "enable_attention_dp",
    "enable_chunked_prefill",
    "kv_cache_config",
    "kv_cache_config.dtype",
    "speculative_config",
    "speculative_config.decoding_type",
    "speculative_config.num_nextn_predict_layers",
)
"""Keys of TensorRT-LLM's LLM-API options file written here (source: the configs TensorRT-LLM publishes
with its docs, e.g. https://nvidia.github.io/TensorRT-LLM/ ``qwen3.8-low-latency.yaml``; the
``speculative_config`` keys as in the TensorRT-LLM tech blog "DeepSeek R1 MTP Implementation and
Optimization", section "How to run DeepSeek models with MTP")."""

DYNAMO_API_VERSION = "nvidia.com/v1alpha1"
"""DynamoGraphDeployment API as in ai-dynamo/dynamo ``components/backends/vllm/deploy/disagg.yaml`` and the
Dynamo "Disaggregated Serving" guide (https://docs.nvidia.com/dynamo/latest/kubernetes/disaggregated-serving/)."""
DYNAMO_IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.4.0"
"""Default worker image (NGC's Dynamo vLLM runtime); ``--image`` overrides it."""
NIXL_KV_TRANSFER = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":"))
"""vLLM's KV hand-off between prefill and decode instances (NixlConnector Usage Guide)."""


@dataclass(frozen=True)
class Engine:
    """One pool layout as an engine must be configured."""

    pool: str
    """``prefill``, ``decode`` or ``aggregated``."""
    index: int
    """Position of the layout in its pool (pools with ``layouts_per_pool > 1`` have several)."""
    instances: int
    gpus_per_instance: int
    tp: int
    pp: int
    ep: int
    attention_dp: int
    batch: int
    chunked_prefill: bool
    two_batch_overlap: bool
    eplb: bool
    max_batched_tokens: int
    """Tokens one forward pass takes per attention-DP rank."""
    chunk_tokens: int | None
    """Prefill chunk size, or None for whole prompts."""
    notes: list[str] = field(default_factory=list)
    draft_tokens: int = 0
    """Speculative decoding: draft tokens per step (0 = off)."""

    @property
    def name(self) -> str:
        """``prefill``, ``decode-2``: the pool, and the layout's number when a pool has several."""
        return self.pool if self.index == 0 else f"{self.pool}-{self.index + 1}"

    @property
    def seqs_per_rank(self) -> int:
        """Requests in flight per attention-DP rank."""
        return max(1, self.batch // self.attention_dp)


@dataclass(frozen=True)
class Deployment:
    """Everything the writers need: the model, the traffic's longest context and the engines."""

    model_path: str
    precision: str
    max_context_tokens: int
    mode: str
    engines: list[Engine]
    source: str
    """What the deployment came from (instance and target), for headers."""

    @property
    def kv_fp8(self) -> bool:
        """Whether the KV cache is FP8 (the performance model's choice for FP8 and FP4 weights)."""
        return self.precision in ("fp8", "fp4")


def model_path_of(answer: dict[str, Any], override: str | None) -> str:
    """The Hugging Face repository to serve: ``--model-path``, else the spec's source (``org/name ...``)."""
    if override:
        return override
    head = str(answer.get("model_source", "")).split(" ")[0]
    if head.count("/") == 1:
        return head
    raise SpecError(
        f"cannot tell the Hugging Face repository of model '{answer.get('model')}' from its source "
        f"'{answer.get('model_source')}'; give --model-path ORG/NAME",
        field="--model-path",
    )


def deployment_from_answer(
    answer: dict[str, Any], *, mode: str | None = None, model_path: str | None = None
) -> Deployment:
    """One ``plan --json`` answer as a :class:`Deployment` of ``mode`` (default: the recommended one)."""
    for key in ("plans", "recommended_mode", "request_classes", "precision"):
        if key not in answer:
            raise SpecError(
                f"the plan JSON has no '{key}'; write it with `disagg plan INSTANCE --json` of this version",
                field=key,
            )
    mode = mode or answer["recommended_mode"]
    plan = answer["plans"].get(mode)
    if plan is None:
        reason = answer.get("no_plan_reasons", {}).get(mode, "not in the plan")
        raise SpecError(f"the plan has no {mode} deployment ({reason}); pick another --mode", field="--mode")
    isl = max(int(c["isl_tokens"]) for c in answer["request_classes"])
    osl = max(int(c["osl_tokens"]) for c in answer["request_classes"])
    engines = []
    for pool, body in plan["pools"].items():
        for index, layout in enumerate(body["layouts"]):
            engines.append(_engine(pool, index, layout, isl))
    source = f"{answer.get('instance')} at {answer.get('target_tokens_per_s_per_user')} tokens/s per user"
    return Deployment(
        model_path_of(answer, model_path), answer["precision"], isl + osl, mode, engines, source
    )


def _engine(pool: str, index: int, layout: dict[str, Any], isl: int) -> Engine:
    tp, pp, ep, dp, batch = (int(layout[k]) for k in ("tp", "pp", "ep", "attention_dp", "batch"))
    per_rank = max(1, batch // dp)
    chunked = bool(layout.get("chunked_prefill", False))
    planned = layout.get("prefill_chunk_tokens") or PREFILL_CHUNK_TOKENS  # the plan's searched chunk
    if pool == "prefill":
        whole = per_rank * isl
        chunk = min(int(planned), whole) if pp > 1 else None
        tokens = chunk if chunk is not None else whole
    elif pool == "decode":
        chunk, tokens = PREFILL_CHUNK_TOKENS, max(per_rank, PREFILL_CHUNK_TOKENS)
    elif chunked:
        chunk, tokens = int(planned), per_rank + int(planned)
    else:
        chunk, tokens = None, per_rank + isl
    notes = []
    if ep > 1 and ep != tp * dp:
        notes.append(f"vLLM spreads experts over TP x DP = {tp * dp} GPUs, the plan over EP = {ep}")
    if tp > 1 and dp > 1:
        notes.append(
            f"TensorRT-LLM's attention DP runs attention with TP 1 on {tp * dp} ranks; the plan has "
            f"TP{tp} x DP{dp}"
        )
    drafts = int(layout.get("draft_tokens", 0) or 0)
    if drafts:
        notes.append(
            f"the plan speculates with {drafts} draft tokens per step (an MTP / EAGLE head): TensorRT-LLM's "
            "options file sets it as MTP (models shipping MTP heads, e.g. DeepSeek-V3/R1; others need an "
            "EAGLE draft model); for vLLM add --speculative-config, for SGLang --speculative-algorithm"
        )
    return Engine(
        pool, index, int(layout["instances"]), int(layout["gpus_per_instance"]), tp, pp, ep, dp, batch,
        chunk is not None, bool(layout.get("two_batch_overlap")), bool(layout.get("eplb")), int(tokens),
        chunk, notes, drafts,
    )  # fmt: skip


# --------------------------------------------------------------------------- engine arguments


def vllm_args(d: Deployment, e: Engine, *, dynamo: bool = False) -> list[str]:
    """Engine arguments of one layout for vLLM (after `vllm serve MODEL`; also Dynamo's vLLM worker)."""
    args = [
        "--tensor-parallel-size", str(e.tp), "--pipeline-parallel-size", str(e.pp),
        "--max-num-seqs", str(e.seqs_per_rank), "--max-num-batched-tokens", str(e.max_batched_tokens),
        "--max-model-len", str(d.max_context_tokens),
    ]  # fmt: skip
    if e.attention_dp > 1:
        args += ["--data-parallel-size", str(e.attention_dp)]
    if e.ep > 1:
        args.append("--enable-expert-parallel")
    if e.chunked_prefill:
        args.append("--enable-chunked-prefill")
    if d.kv_fp8:
        args += ["--kv-cache-dtype", "fp8"]
    if d.precision == "fp8":
        args += ["--quantization", "fp8"]
    if e.pool != "aggregated" and not dynamo:
        args += ["--kv-transfer-config", NIXL_KV_TRANSFER]
    return args


def sglang_args(d: Deployment, e: Engine) -> list[str]:
    """``python -m sglang.launch_server`` arguments of one layout."""
    args = [
        "--model-path", d.model_path, "--tp-size", str(e.tp * e.attention_dp), "--pp-size", str(e.pp),
        "--max-running-requests", str(e.batch), "--context-length", str(d.max_context_tokens),
        "--chunked-prefill-size", str(e.chunk_tokens if e.chunk_tokens is not None else -1),
        "--max-prefill-tokens", str(e.max_batched_tokens),
    ]  # fmt: skip
    if e.attention_dp > 1:
        args += ["--dp-size", str(e.attention_dp), "--enable-dp-attention"]
    if e.ep > 1:
        args += ["--ep-size", str(e.ep)]
    if e.two_batch_overlap:
        args.append("--enable-two-batch-overlap")
    if e.eplb:
        args.append("--enable-eplb")
    if d.kv_fp8:
        args += ["--kv-cache-dtype", "fp8_e4m3"]
    if d.precision == "fp8":
        args += ["--quantization", "fp8"]
    if e.pool != "aggregated":
        args += ["--disaggregation-mode", e.pool]
    return args


def trtllm_config(d: Deployment, e: Engine) -> dict[str, Any]:
    """TensorRT-LLM's ``--extra_llm_api_options`` file of one layout."""
    config: dict[str, Any] = {
        "enable_attention_dp": e.attention_dp > 1,
        "enable_chunked_prefill": e.chunked_prefill,
    }
    config["kv_cache_config"] = {"dtype": "fp8" if d.kv_fp8 else "auto"}
    if e.draft_tokens:
        config["speculative_config"] = {"decoding_type": "MTP", "num_nextn_predict_layers": e.draft_tokens}
    return config


def trtllm_args(d: Deployment, e: Engine) -> list[str]:
    """``trtllm-serve MODEL`` arguments of one layout."""
    return [
        "--backend", "pytorch", "--tp_size", str(e.tp * e.attention_dp), "--pp_size", str(e.pp),
        "--ep_size", str(e.ep), "--max_batch_size", str(e.seqs_per_rank),
        "--max_num_tokens", str(e.max_batched_tokens), "--max_seq_len", str(d.max_context_tokens),
        "--extra_llm_api_options", f"trtllm-{e.name}.yaml",
    ]  # fmt: skip


# --------------------------------------------------------------------------- files


def _script(d: Deployment, title: str, lines: list[tuple[Engine, list[str]]]) -> str:
    out = [
        "#!/bin/sh",
        f"# {title} launch commands for {d.model_path} ({d.precision}), {d.mode}: {d.source}.",
        "# Written by `disagg export`; run each command once per instance, on its own GPUs.",
    ]
    for engine, argv in lines:
        out.append(
            f"# {engine.name}: {engine.instances} instance(s) x {engine.gpus_per_instance} GPUs "
            f"(TP{engine.tp} PP{engine.pp} EP{engine.ep} DP{engine.attention_dp}, batch {engine.batch})"
        )
        out += [f"# note: {note}" for note in engine.notes]
        out.append(shlex.join(argv))
    return "\n".join(out) + "\n"


def dynamo_graph(d: Deployment, *, name: str, image: str = DYNAMO_IMAGE) -> dict[str, Any]:
    """A DynamoGraphDeployment: a frontend and one vLLM worker service per layout, replicas = instances."""
    services: dict[str, Any] = {
        "Frontend": {
            "dynamoNamespace": name,
            "componentType": "frontend",
            "replicas": 1,
            "extraPodSpec": {
                "mainContainer": {
                    "image": image,
                    "command": ["python3", "-m", "dynamo.frontend"],
                    "args": ["--http-port", "8000"],
                }
            },
        }
    }
    for e in d.engines:
        role = {"prefill": "Prefill", "decode": "Decode", "aggregated": ""}[e.pool]
        key = f"Vllm{role}Worker" + (str(e.index + 1) if e.index else "")
        args = ["--model", d.model_path, *vllm_args(d, e, dynamo=True)]
        if e.pool == "prefill":
            args.append("--is-prefill-worker")
        service = {
            "dynamoNamespace": name,
            "componentType": "worker",
            "replicas": e.instances,
            "resources": {"limits": {"gpu": str(e.gpus_per_instance)}},
            "extraPodSpec": {
                "mainContainer": {"image": image, "command": ["python3", "-m", "dynamo.vllm"], "args": args}
            },
        }
        if e.pool != "aggregated":
            service["subComponentType"] = e.pool
        services[key] = service
    return {
        "apiVersion": DYNAMO_API_VERSION,
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name},
        "spec": {"services": services},
    }


def render_export(d: Deployment, *, name: str, image: str = DYNAMO_IMAGE) -> dict[str, bytes]:
    """Every file of ``disagg export``, rendered in memory: name -> bytes."""
    vllm = [(e, ["vllm", "serve", d.model_path, *vllm_args(d, e)]) for e in d.engines]
    sglang = [(e, ["python", "-m", "sglang.launch_server", *sglang_args(d, e)]) for e in d.engines]
    trtllm = [(e, ["trtllm-serve", d.model_path, *trtllm_args(d, e)]) for e in d.engines]
    files = {
        "vllm.sh": _script(d, "vLLM", vllm).encode(),
        "sglang.sh": _script(d, "SGLang", sglang).encode(),
        "trtllm.sh": _script(d, "TensorRT-LLM", trtllm).encode(),
    }
    for e in d.engines:
        files[f"trtllm-{e.name}.yaml"] = yaml.safe_dump(trtllm_config(d, e), sort_keys=False).encode()
    header = (
        f"# NVIDIA Dynamo deployment of {d.model_path}, {d.mode}: {d.source}. Written by `disagg export`.\n"
    )
    graph = yaml.safe_dump(dynamo_graph(d, name=name, image=image), sort_keys=False)
    files["dynamo.yaml"] = (header + graph).encode()
    summary = {
        "model_path": d.model_path,
        "precision": d.precision,
        "mode": d.mode,
        "source": d.source,
        "pools": [
            {
                "name": e.name, "pool": e.pool, "instances": e.instances,
                "gpus_per_instance": e.gpus_per_instance, "tp": e.tp, "pp": e.pp, "ep": e.ep,
                "attention_dp": e.attention_dp, "batch": e.batch, "max_batched_tokens": e.max_batched_tokens,
                "chunk_tokens": e.chunk_tokens, "notes": e.notes,
                "commands": {"vllm": v, "sglang": s, "trtllm": t},
            }
            for e, (_, v), (_, s), (_, t) in zip(d.engines, vllm, sglang, trtllm, strict=True)
        ],
    }  # fmt: skip
    files["deployment.json"] = (json_text(summary) + "\n").encode()
    return files
