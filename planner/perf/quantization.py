"""Quantization formats: what a weight and a cached KV element cost, and which shards a format allows.

A deployment's formats are a :class:`~planner.specs.QuantizationSpec` (weights,
GEMM precision, KV-cache dtype); a bare precision word means that precision's
defaults, so old instance files keep their meaning. A model whose published
checkpoint is already quantized (``ModelSpec.checkpoint_weight_format``, e.g.
DeepSeek-V3/R1's block-FP8) lends its weight format to deployments at the GEMM
precision that format runs at (:data:`WEIGHT_FORMAT_PRECISION`), unless the
deployment names its own weight format: engines serve such a checkpoint as
published rather than requantizing it.

Block-scaled formats store one scale per block of weights, and a tensor-parallel
shard must hold whole blocks: a column-parallel GEMM (gate, up, Q) is split along
its output dimension, a row-parallel one (down, O) along its input dimension, so
the per-GPU width must be a multiple of the block along the split dimension.
:func:`block_problems` refuses the layouts that would cut a block, saying why
(no engine can load such a shard: e.g. Qwen3-235B-A22B's 1536-wide experts in
128 x 128 fp8 blocks split over 8 GPUs give 192 columns each).

Sources: fp8 block-128 is DeepSeek-V3's scheme (technical report, section 3.3;
``quantization_config.weight_block_size: [128, 128]`` of the published FP8 configs),
one fp32 scale per block; NVFP4 keeps one FP8 E4M3 scale per 16 elements along
the reduction dimension (NVIDIA, "Introducing NVFP4 for efficient and accurate
low-precision inference"); MXFP4 one E8M0 scale per 32 elements (OCP Microscaling
Formats v1.0); int4 weight-only (AWQ/GPTQ) one fp16 scale per group of 128 input
elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.specs import KvCacheDtype, ModelSpec, Precision, QuantizationSpec, WeightFormat


@dataclass(frozen=True)
class WeightFormatFacts:
    """Storage cost and scale-block shape of one weight format."""

    bytes_per_param: float
    """Stored bytes per weight, scales included."""
    block_out: int
    """Block extent along a GEMM's output dimension (1: no constraint)."""
    block_in: int
    """Block extent along a GEMM's input (reduction) dimension (1: no constraint)."""


WEIGHT_FORMATS: dict[WeightFormat, WeightFormatFacts] = {
    "bf16": WeightFormatFacts(2.0, 1, 1),
    "fp8_per_tensor": WeightFormatFacts(1.0, 1, 1),
    "fp8_block128": WeightFormatFacts(1.0 + 4 / (128 * 128), 128, 128),
    "nvfp4": WeightFormatFacts(0.5 + 1 / 16, 1, 16),
    "mxfp4": WeightFormatFacts(0.5 + 1 / 32, 1, 32),
    "int4_weight_only": WeightFormatFacts(0.5 + 2 / 128, 1, 128),
}
"""Facts per weight format (see the module docstring for the sources)."""

KV_CACHE_BYTES_PER_ELEMENT: dict[KvCacheDtype, float] = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1 / 16}
"""KV-cache element size; an fp4 cache carries an fp8 scale per 16 elements, like NVFP4."""


WEIGHT_FORMAT_PRECISION: dict[WeightFormat, Precision] = {
    "bf16": "bf16",
    "fp8_per_tensor": "fp8",
    "fp8_block128": "fp8",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
    "int4_weight_only": "bf16",
}
"""The GEMM precision each weight format is served at (int4 weight-only runs bf16 GEMMs)."""


def checkpoint_weights(model: ModelSpec | None, precision: Precision) -> WeightFormat | None:
    """The model's published weight format if a deployment at ``precision`` serves it, else None."""
    published = model.checkpoint_weight_format if model is not None else None
    if published is None or WEIGHT_FORMAT_PRECISION[published] != precision:
        return None
    return published


def for_deployment(
    model: ModelSpec | None, precision: Precision, quantization: QuantizationSpec | None = None
) -> QuantizationSpec:
    """Every format of a deployment at ``precision``, filled in order.

    The spec's own fields first, then the model's checkpoint weight format
    (:func:`checkpoint_weights`), then the precision's defaults.
    """
    spec = quantization or QuantizationSpec()
    activations = spec.activations or precision
    weights = spec.weights or checkpoint_weights(model, activations)
    return spec.model_copy(update={"weights": weights}).resolved(activations)


def resolve(precision: Precision | QuantizationSpec, model: ModelSpec | None = None) -> QuantizationSpec:
    """Every format of a deployment: a precision word's defaults, or a spec with its gaps filled.

    With ``model``, its checkpoint weight format comes first (:func:`for_deployment`).
    """
    if isinstance(precision, QuantizationSpec):
        if precision.activations is None:
            raise ValueError("a QuantizationSpec passed without a precision needs its activations field")
        return for_deployment(model, precision.activations, precision)
    return for_deployment(model, precision)


def _shard_checks(model: ModelSpec, tp: np.ndarray, expert_tp: np.ndarray):
    """(what, full width, GPUs it is split over, split dimension) of every sharded GEMM group."""
    checks = []
    heads = model.num_attention_heads
    if model.mla is not None:
        checks.append(("the attention output projection", heads * model.mla.v_head_dim, tp, "in"))
        qk = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        checks.append(("the query up-projection", heads * qk, tp, "out"))
    else:
        checks.append(("the attention output projection", heads * model.head_dim, tp, "in"))
        checks.append(("the query projection", heads * model.head_dim, tp, "out"))
    dense_layers = model.num_layers if model.moe is None else model.moe.num_dense_layers
    if dense_layers:
        checks.append(("the dense MLP", model.intermediate_dim, tp, "both"))
    if model.moe is not None:
        moe = model.moe
        if moe.num_shared_experts:
            checks.append(
                ("the shared expert", moe.expert_intermediate_dim * moe.num_shared_experts, tp, "both")
            )
        checks.append(("each routed expert's FFN", moe.expert_intermediate_dim, expert_tp, "both"))
    return checks


def block_problems(
    model: ModelSpec, quantization: QuantizationSpec, tp: np.ndarray, expert_tp: np.ndarray
) -> tuple[np.ndarray, list[str | None]]:
    """Which layouts cut a quantization block, and why (None where the shards hold whole blocks)."""
    facts = WEIGHT_FORMATS[quantization.weights or "bf16"]
    n = len(tp)
    problems: list[str | None] = [None] * n
    failed = np.zeros(n, dtype=bool)
    if facts.block_out == 1 and facts.block_in == 1:
        return failed, problems
    for what, width, group, dim in _shard_checks(model, tp, expert_tp):
        block = {"out": facts.block_out, "in": facts.block_in, "both": max(facts.block_out, facts.block_in)}[
            dim
        ]
        if block == 1:
            continue
        group = np.maximum(np.asarray(group, dtype=np.int64), 1)
        bad = (width % group != 0) | ((width // group) % block != 0)
        for i in np.flatnonzero(bad & ~failed):
            ok = [g for g in range(1, width + 1) if width % g == 0 and (width // g) % block == 0]
            splitter = "expert-TP (TP x attention-DP / EP)" if what.startswith("each routed") else "TP"
            allowed = ", ".join(map(str, ok))
            problems[i] = (
                f"{what} of {model.name} is {width} wide; split over {group[i]} GPUs each holds "
                f"{width / group[i]:g}, which cuts the {block}-wide scale blocks of {quantization.weights} "
                f"weights (no engine can load such a shard); use {splitter} in {{{allowed}}}, "
                "or a weight format with smaller blocks"
            )
        failed |= bad
    return failed, problems
