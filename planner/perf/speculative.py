"""Speculative decoding with a draft head (MTP, EAGLE): k draft tokens per step, verified in one pass.

Why it exists
    A decode step at small batch is bound by reading the weights, so running the
    target model on k + 1 tokens per request costs little more than on one. A
    cheap drafter (DeepSeek-V3's multi-token-prediction module: one extra layer
    sharing the output head) proposes k tokens one after the other; the target
    model verifies all k + 1 positions in one pass and keeps the longest accepted
    prefix plus its own next token. At large batch the pass is compute-bound and
    the extra positions cost real FLOPs, so speculation helps interactivity and
    can hurt throughput: the planner prices every k as its own layout and lets the
    optimizer choose.

Model
    With each draft token accepted independently at rate alpha (given per request
    class, since code and chat differ), a step yields on average
    ``(1 - alpha^(k+1)) / (1 - alpha)`` tokens. The step is the target model's pass
    with ``k + 1`` query tokens per request (KV read once, attention and GEMM work
    ``k + 1`` times) plus ``k`` sequential draft passes, each one layer (the MTP
    module) and the output head at one token per request, and each a forward step
    of its own with the fixed per-step cost (launches, sampling). The drafter's weights
    and KV cache are one more layer's worth on every GPU.

Checked in ``tests/test_speculative.py`` against TensorRT-LLM's DeepSeek-R1 MTP
measurements on 8 x B200 ("Pushing Latency Boundaries: Optimizing DeepSeek-R1
Performance on NVIDIA B200 GPUs", NVIDIA TensorRT-LLM tech blog 1, table
"Autoregressive MTP Layers": acceptance length and TPS/user for MTP 0 to 5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.context import PerfContext
from planner.perf.layout import Layouts
from planner.perf.memory import MemoryUse
from planner.perf.step import StepCost


def accepted_tokens_per_step(acceptance_fraction: ArrayLike, draft_tokens: ArrayLike) -> np.ndarray:
    """Mean tokens one verification step yields: ``(1 - a^(k+1)) / (1 - a)`` (``k + 1`` at a = 1)."""
    a = np.asarray(acceptance_fraction, dtype=float)
    k = np.asarray(draft_tokens, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = (1.0 - a ** (k + 1)) / (1.0 - a)
    return np.where(a >= 1.0, k + 1, geometric)


def acceptance_fraction_for(accepted_tokens: float, draft_tokens: int) -> float:
    """The per-token acceptance rate that yields ``accepted_tokens`` per step with ``draft_tokens`` drafts.

    Engines report the mean acceptance length; this turns it into the alpha an
    instance file takes.
    """
    if draft_tokens < 1 or not 1.0 < accepted_tokens < draft_tokens + 1:
        raise ValueError(
            f"accepted_tokens must lie in (1, {draft_tokens + 1}) for {draft_tokens} draft tokens"
        )
    from scipy.optimize import brentq  # imported when used: scipy.optimize is slow to import

    return float(
        brentq(lambda a: accepted_tokens_per_step(a, draft_tokens) - accepted_tokens, 1e-9, 1 - 1e-12)
    )


@dataclass(frozen=True)
class Speculation:
    """One speculative-decoding setting of a decode engine."""

    draft_tokens: int
    """Draft tokens proposed per step (k)."""
    acceptance_fraction: float
    """Chance each draft token is accepted (alpha)."""
    num_draft_layers: int = 1
    """Layers one draft token runs through (1 for an MTP / EAGLE head)."""

    @property
    def verify_tokens(self) -> int:
        """Query positions per request in the target model's pass (k + 1)."""
        return self.draft_tokens + 1

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens a step yields per request."""
        return float(accepted_tokens_per_step(self.acceptance_fraction, self.draft_tokens))


def draft_s(ctx: PerfContext, layouts: Layouts, plain: StepCost, speculation: Speculation) -> np.ndarray:
    """Seconds of the k sequential draft passes, from the one-token-per-request step ``plain``.

    A draft pass is ``num_draft_layers`` layers at one token per request (the average
    layer of a stage: ``body_s x PP / num_layers``) plus the shared output head, and it is a
    forward step of its own: it pays the fixed per-step cost (``step_overhead_ms``: launch,
    sampling the draft) too. That fixed part is what TensorRT-LLM's DeepSeek-R1 MTP table
    shows: each extra draft costs about 7% of a batch-1 step, far more than one of 61 layers.
    """
    per_layer = plain.body_s * layouts.pp / ctx.arch.model.num_layers
    per_pass = (
        speculation.num_draft_layers * per_layer + plain.head_s + ctx.efficiency.step_overhead_ms * 1e-3
    )
    return speculation.draft_tokens * per_pass


def with_drafter_memory(ctx: PerfContext, mem: MemoryUse, speculation: Speculation | None) -> MemoryUse:
    """Memory with the drafter's layers added: weights and KV one more average layer each."""
    if speculation is None or speculation.draft_tokens == 0:
        return mem
    share = 1.0 + speculation.num_draft_layers / ctx.arch.model.num_layers
    return replace(mem, weights_bytes=mem.weights_bytes * share, kv_cache_bytes=mem.kv_cache_bytes * share)
