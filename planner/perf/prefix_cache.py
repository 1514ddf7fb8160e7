"""Prefix caching: the part of a prompt already cached is neither prefilled nor shipped.

Why it exists
    Chat and agent traffic repeat long system prompts and conversation history.
    An engine with a prefix cache (vLLM automatic prefix caching, SGLang's
    RadixAttention, TensorRT-LLM KV cache reuse) finds the longest cached prefix
    of a new prompt and computes only the rest. DeepSeek reported a 56% hit rate
    in production ("DeepSeek-V3/R1 Inference System Overview", deepseek-ai
    open-infra-index, day 6: 56.3% of input tokens hit the on-disk KV cache).

Model
    A hit rate h (per request class) means the first ``h x ISL`` tokens of every
    prompt are cached. Prefill then runs ``(1 - h) x ISL`` new tokens, which still
    attend to the whole prompt (the attention pairs of the full prompt minus those
    inside the cached prefix) and read the cached prefix's KV once. Only the new
    tokens' KV crosses to the decode pool, which keeps the same prefix cached.
    Every instance serving the class (prefill and decode) holds the cached
    prefixes: ``prefix_cache_tokens`` distinct tokens (default: one prompt's
    share, ``h x ISL``, the least a hit needs), as KV in HBM.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.context import PerfContext
from planner.perf.layout import Layouts
from planner.perf.memory import MemoryUse, kv_bytes_per_token_per_gpu_layer


def cached_prompt_tokens(isl_tokens: ArrayLike, hit_fraction: float) -> np.ndarray:
    """Tokens of each prompt served from the cache."""
    return np.asarray(isl_tokens, dtype=float) * hit_fraction


def resident_prefix_tokens(
    isl_tokens: ArrayLike, hit_fraction: float, prefix_cache_tokens: int | None
) -> float:
    """Distinct prefix tokens an instance keeps cached: the given size, else one prompt's cached share."""
    if hit_fraction == 0:
        return 0.0
    if prefix_cache_tokens is not None:
        return float(prefix_cache_tokens)
    return float(np.max(cached_prompt_tokens(isl_tokens, hit_fraction)))


def with_prefix_cache_memory(ctx: PerfContext, layouts: Layouts, mem: MemoryUse, tokens: float) -> MemoryUse:
    """Memory with ``tokens`` cached prefix tokens held as KV on every GPU of each layout."""
    if tokens <= 0:
        return mem
    per_gpu = (
        ctx.arch.kv_context_tokens(np.asarray(tokens, dtype=float))
        * kv_bytes_per_token_per_gpu_layer(ctx, layouts)
        * np.ceil(ctx.arch.model.num_layers / layouts.pp)
    )
    return replace(mem, kv_cache_bytes=mem.kv_cache_bytes + per_gpu)
