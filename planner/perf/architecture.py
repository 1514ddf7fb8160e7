"""Cost-relevant quantities derived once from a ModelSpec: parameters, FLOPs and KV bytes per token.

Everything here is a scalar fact about the model; the phase models in this
package combine these with a layout (arrays) to get times. Counting follows the
published architectures: gated (SwiGLU) MLPs with three matrices, attention
projections Q/K/V/O (GQA) or the MLA down/up projections, bf16 embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.quantization import KV_CACHE_BYTES_PER_ELEMENT, WEIGHT_FORMATS, resolve
from planner.specs import ModelSpec, Precision, QuantizationSpec

EMBEDDING_BYTES_PER_PARAM = 2.0
"""Embeddings and the output head stay in bf16 in quantized checkpoints."""

ACTIVATION_BYTES = 2.0
"""Activations on the wire and in workspace are bf16."""

DISPATCH_BYTES_PER_ELEMENT = 1.0
"""EP dispatch sends fp8 activations (plus negligible scales); combine returns bf16."""


@dataclass(frozen=True)
class Architecture:
    """Per-layer parameter counts and per-token costs of one model at one precision."""

    model: ModelSpec
    precision: Precision
    quantization: QuantizationSpec
    num_dense_layers: int
    num_moe_layers: int
    attention_params_per_layer: float
    dense_mlp_params_per_layer: float
    shared_expert_params_per_layer: float
    router_params_per_layer: float
    expert_params: float
    num_experts: int
    experts_per_token: int
    embedding_params: float
    head_params: float
    prefill_attention_flops_per_pair: float
    decode_attention_flops_per_pair: float
    kv_elements_per_token_per_layer: float
    kv_shardable: bool

    @classmethod
    def from_spec(cls, model: ModelSpec, precision: Precision | QuantizationSpec) -> Architecture:
        """Derive the counts from the spec, at a precision word's default formats or the given ones."""
        quantization = resolve(precision, model)
        h = model.hidden_dim
        heads = model.num_attention_heads
        if model.mla is not None:
            m = model.mla
            qk_dim = m.qk_nope_head_dim + m.qk_rope_head_dim
            q_params = (
                h * m.q_lora_rank_dim + m.q_lora_rank_dim * heads * qk_dim
                if m.q_lora_rank_dim
                else h * heads * qk_dim
            )
            kv_params = h * (m.kv_lora_rank_dim + m.qk_rope_head_dim) + m.kv_lora_rank_dim * heads * (
                m.qk_nope_head_dim + m.v_head_dim
            )
            attention_params = q_params + kv_params + heads * m.v_head_dim * h
            # Prefill runs MLA as ordinary MHA on up-projected K/V (QK^T over qk_dim, PV over v).
            prefill_pair = 2.0 * heads * (qk_dim + m.v_head_dim)
            # Decode absorbs the up-projections: scores and values live in the latent space.
            decode_pair = 2.0 * heads * (2 * m.kv_lora_rank_dim + m.qk_rope_head_dim)
            kv_elements = float(m.kv_lora_rank_dim + m.qk_rope_head_dim)
            kv_shardable = False
        else:
            hd = model.head_dim
            attention_params = h * hd * (2 * heads + 2 * model.num_kv_heads)
            prefill_pair = decode_pair = 4.0 * heads * hd
            kv_elements = float(2 * model.num_kv_heads * hd)
            kv_shardable = True
        moe = model.moe
        num_moe = 0 if moe is None else model.num_layers - moe.num_dense_layers
        return cls(
            model=model,
            precision=quantization.activations,
            quantization=quantization,
            num_dense_layers=model.num_layers - num_moe,
            num_moe_layers=num_moe,
            attention_params_per_layer=float(attention_params),
            dense_mlp_params_per_layer=3.0 * h * model.intermediate_dim,
            shared_expert_params_per_layer=(
                0.0 if moe is None else 3.0 * h * moe.expert_intermediate_dim * moe.num_shared_experts
            ),
            router_params_per_layer=0.0 if moe is None else float(h * moe.num_routed_experts),
            expert_params=0.0 if moe is None else 3.0 * h * moe.expert_intermediate_dim,
            num_experts=1 if moe is None else moe.num_routed_experts,
            experts_per_token=0 if moe is None else moe.num_experts_per_token,
            embedding_params=float(model.vocab_size_tokens * h),
            head_params=0.0 if model.tie_word_embeddings else float(model.vocab_size_tokens * h),
            prefill_attention_flops_per_pair=prefill_pair,
            decode_attention_flops_per_pair=decode_pair,
            kv_elements_per_token_per_layer=kv_elements,
            kv_shardable=kv_shardable,
        )

    # ----------------------------------------------------------------- parameters

    @property
    def total_params(self) -> float:
        """All parameters, embeddings and head included."""
        per_moe_layer = (
            self.attention_params_per_layer
            + self.shared_expert_params_per_layer
            + self.router_params_per_layer
            + self.num_experts * self.expert_params
        )
        per_dense_layer = self.attention_params_per_layer + self.dense_mlp_params_per_layer
        return (
            self.num_dense_layers * per_dense_layer
            + self.num_moe_layers * per_moe_layer
            + self.embedding_params
            + self.head_params
        )

    @property
    def active_params(self) -> float:
        """Parameters one token multiplies through (embeddings and head included)."""
        per_moe_layer = (
            self.attention_params_per_layer
            + self.shared_expert_params_per_layer
            + self.router_params_per_layer
            + self.experts_per_token * self.expert_params
        )
        per_dense_layer = self.attention_params_per_layer + self.dense_mlp_params_per_layer
        return (
            self.num_dense_layers * per_dense_layer
            + self.num_moe_layers * per_moe_layer
            + self.embedding_params
            + self.head_params
        )

    @property
    def weight_bytes_per_param(self) -> float:
        """Stored bytes of one GEMM weight in this deployment's weight format, scales included."""
        return WEIGHT_FORMATS[self.quantization.weights].bytes_per_param

    @property
    def head_or_embedding_params(self) -> float:
        """Parameters of the output projection (the embedding matrix when tied)."""
        return self.head_params or self.embedding_params

    # ----------------------------------------------------------------- KV cache

    @property
    def kv_bytes_per_element(self) -> float:
        """Bytes of one cached K/V (or latent) element."""
        return KV_CACHE_BYTES_PER_ELEMENT[self.quantization.kv_cache]

    def kv_context_tokens(self, context_tokens: ArrayLike) -> np.ndarray:
        """Tokens of KV held per layer, averaged over layers (sliding-window layers hold the window)."""
        n = np.asarray(context_tokens, dtype=float)
        spec = self.model
        if not spec.num_sliding_window_layers:
            return n
        sw = spec.num_sliding_window_layers
        capped = np.minimum(n, float(spec.sliding_window_tokens))
        return ((spec.num_layers - sw) * n + sw * capped) / spec.num_layers

    def kv_bytes_per_token(self) -> float:
        """Unique (unduplicated) KV bytes per cached token over all layers."""
        return self.kv_elements_per_token_per_layer * self.kv_bytes_per_element * self.model.num_layers

    def kv_bytes_per_request(self, context_tokens: ArrayLike) -> np.ndarray:
        """Unique KV bytes one request holds at a context length (sliding windows applied)."""
        return self.kv_bytes_per_token() * self.kv_context_tokens(context_tokens)

    def kv_duplication(self, tp: ArrayLike) -> np.ndarray:
        """How many copies of each KV element a TP group stores (MLA latents and GQA heads < TP)."""
        tp = np.asarray(tp, dtype=float)
        if not self.kv_shardable:
            return tp
        return np.maximum(1.0, tp / self.model.num_kv_heads)

    def prefill_attention_pairs(self, prompt_tokens: ArrayLike) -> np.ndarray:
        """(query, key) pairs attended while prefilling one prompt, averaged over layers (causal)."""
        n = np.asarray(prompt_tokens, dtype=float)
        full = n * (n + 1) / 2
        spec = self.model
        if not spec.num_sliding_window_layers:
            return full
        w = float(spec.sliding_window_tokens)
        windowed = np.where(n <= w, full, w * (w + 1) / 2 + (n - w) * w)
        sw = spec.num_sliding_window_layers
        return ((spec.num_layers - sw) * full + sw * windowed) / spec.num_layers
