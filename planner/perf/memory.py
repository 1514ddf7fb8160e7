"""Memory per GPU of one instance: weights, KV cache and workspace, against usable HBM.

A layout whose busiest GPU needs more than the usable HBM is infeasible and is
reported as such (``fits = False``); it is never silently kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.architecture import ACTIVATION_BYTES, EMBEDDING_BYTES_PER_PARAM
from planner.perf.context import GB, PerfContext
from planner.perf.layout import Layouts
from planner.perf.serving import ServingOptions, expert_slots_per_gpu


@dataclass(frozen=True)
class MemoryUse:
    """Bytes per GPU on the busiest GPU of each layout."""

    weights_bytes: np.ndarray
    kv_cache_bytes: np.ndarray
    workspace_bytes: np.ndarray
    usable_bytes: float

    @property
    def total_bytes(self) -> np.ndarray:
        """Everything the GPU must hold."""
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes

    @property
    def fits(self) -> np.ndarray:
        """Whether the layout fits in usable HBM."""
        return self.total_bytes <= self.usable_bytes


def weight_bytes_per_gpu(ctx: PerfContext, layouts: Layouts, *, eplb: ArrayLike = False) -> np.ndarray:
    """Weights on one GPU: non-expert weights over TP, experts (and EPLB's copies) over the stage."""
    arch = ctx.arch
    tp = layouts.tp.astype(float)
    pp = layouts.pp.astype(float)
    expert_tp = layouts.gpus_per_stage.astype(float) / layouts.ep
    slots = expert_slots_per_gpu(arch.num_experts, layouts.ep, eplb)
    per_dense = arch.attention_params_per_layer + arch.dense_mlp_params_per_layer
    per_moe_shared = (
        arch.attention_params_per_layer + arch.shared_expert_params_per_layer + arch.router_params_per_layer
    )
    layers = (
        np.ceil(arch.num_dense_layers / pp) * per_dense / tp
        + np.ceil(arch.num_moe_layers / pp) * (per_moe_shared / tp + slots * arch.expert_params / expert_tp)
    ) * arch.weight_bytes_per_param
    # Embedding on the first stage, head on the last: both on one GPU only without PP.
    vocab = np.where(
        pp > 1, max(arch.embedding_params, arch.head_params), arch.embedding_params + arch.head_params
    )
    return layers + vocab * EMBEDDING_BYTES_PER_PARAM / tp


def kv_bytes_per_token_per_gpu_layer(ctx: PerfContext, layouts: Layouts) -> np.ndarray:
    """KV bytes one cached token costs on one GPU for one layer (GQA heads split over TP, MLA replicated)."""
    arch = ctx.arch
    shards = layouts.tp.astype(float) / arch.kv_duplication(layouts.tp)
    return arch.kv_elements_per_token_per_layer * arch.kv_bytes_per_element / shards


def memory_use(
    ctx: PerfContext,
    layouts: Layouts,
    *,
    requests_per_rank: np.ndarray,
    context_tokens: np.ndarray,
    tokens_per_forward_per_rank: np.ndarray,
    options: ServingOptions | None = None,
) -> MemoryUse:
    """Memory per GPU with ``requests_per_rank`` requests cached at ``context_tokens`` each."""
    arch = ctx.arch
    layers_per_stage = np.ceil(arch.model.num_layers / layouts.pp)
    kv = (
        np.asarray(requests_per_rank, dtype=float)
        * arch.kv_context_tokens(context_tokens)
        * kv_bytes_per_token_per_gpu_layer(ctx, layouts)
        * layers_per_stage
    )
    model = arch.model
    widest_mlp = max(
        model.intermediate_dim,
        (model.moe.expert_intermediate_dim * model.moe.num_experts_per_token) if model.moe else 0,
    )
    tokens = np.asarray(tokens_per_forward_per_rank, dtype=float)
    activations = tokens * (4 * model.hidden_dim + 2 * widest_mlp / layouts.tp) * ACTIVATION_BYTES
    workspace = activations + ctx.efficiency.workspace_gb * GB
    return MemoryUse(
        weights_bytes=weight_bytes_per_gpu(ctx, layouts, eplb=False if options is None else options.eplb),
        kv_cache_bytes=kv,
        workspace_bytes=workspace,
        usable_bytes=ctx.usable_memory_bytes,
    )
