"""The three things an instance can do: prefill, decode, or both co-located.

Each function takes N layouts and returns a :class:`PhaseMetrics` of N-long
arrays. They all price forward passes with :func:`planner.perf.step.stage_step_cost`
and check memory with :func:`planner.perf.memory.memory_use`; they differ only in
which tokens a pass carries and how passes make up a request:

- **prefill**: one pass over a batch of prompts. With PP > 1 the prompts are cut
  into chunks that flow through the stages (chunked pipeline parallelism), so the
  first token arrives after ``(chunks + PP - 1)`` chunk times instead of ``PP``
  full-stage times, at the same throughput.
- **decode**: one step per output token for ``batch`` requests at the mean context;
  with PP > 1 the batch is split into PP micro-batches that keep every stage busy.
- **aggregated**: in-flight batching of both. With chunked-prefill piggybacking each
  step also carries ``batch x ISL / OSL`` prompt tokens (steady state); without it,
  prefill runs as separate passes that stall the decode steps.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from planner.perf.context import GB, PerfContext
from planner.perf.layout import Layouts
from planner.perf.memory import MemoryUse, kv_bytes_per_token_per_gpu_layer, memory_use
from planner.perf.prefix_cache import with_prefix_cache_memory
from planner.perf.serving import ServingOptions
from planner.perf.speculative import Speculation, draft_s, with_drafter_memory
from planner.perf.step import StepCost, attention_dp_imbalance, stage_step_cost

PREFILL_CHUNK_TOKENS = 8192
"""Prompt tokens per chunk in chunked pipeline-parallel prefill (large enough to keep GEMMs efficient)."""


@dataclass(frozen=True)
class PhaseMetrics:
    """What one instance of each layout does; every field is an N-long float array."""

    gpus: np.ndarray
    fits: np.ndarray
    memory_per_gpu_gb: np.ndarray
    weights_per_gpu_gb: np.ndarray
    kv_cache_per_gpu_gb: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray
    tokens_per_s_per_user: np.ndarray
    worst_inter_token_gap_ms: np.ndarray
    requests_per_s: np.ndarray
    output_tokens_per_s: np.ndarray
    input_tokens_per_s: np.ndarray
    output_tokens_per_s_per_gpu: np.ndarray
    input_tokens_per_s_per_gpu: np.ndarray
    kv_cache_bytes_per_request: np.ndarray
    kv_transfer_bytes_per_request: np.ndarray
    kv_transfer_ms: np.ndarray
    compute_ms: np.ndarray
    memory_ms: np.ndarray
    communication_ms: np.ndarray
    overhead_ms: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """Column name -> array, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _breakdown_ms(step: StepCost, passes: np.ndarray, overhead_s: np.ndarray, latency_s: np.ndarray):
    """Scale one pass's compute/memory/communication split to a whole latency, in ms."""
    body = passes * step.body_s + step.head_s
    work_total = np.maximum(body, 1e-30)
    comm = passes * step.communication_s
    compute = passes * step.compute_s
    memory = passes * step.memory_s + step.head_s
    fixed = passes * step.fixed_s
    rest = latency_s - overhead_s
    scale = rest / work_total
    return compute * scale * 1e3, memory * scale * 1e3, comm * scale * 1e3, (overhead_s + fixed * scale) * 1e3


def _assemble(
    ctx: PerfContext,
    layouts: Layouts,
    mem: MemoryUse,
    *,
    ttft_s,
    tpot_s,
    requests_per_s,
    isl,
    worst_gap_s=None,
    osl,
    kv_bytes_per_request,
    kv_transfer_s,
    breakdown,
) -> PhaseMetrics:
    gpus = layouts.gpus.astype(float)
    n = len(layouts)
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()  # noqa: E731
    requests_per_s = full(requests_per_s)
    output = requests_per_s * osl
    inputs = requests_per_s * isl
    tpot_ms = full(tpot_s) * 1e3
    compute_ms, memory_ms, comm_ms, overhead_ms = (full(v) for v in breakdown)
    return PhaseMetrics(
        gpus=gpus,
        fits=mem.fits,
        memory_per_gpu_gb=mem.total_bytes / GB,
        weights_per_gpu_gb=mem.weights_bytes / GB,
        kv_cache_per_gpu_gb=mem.kv_cache_bytes / GB,
        ttft_ms=full(ttft_s) * 1e3,
        tpot_ms=tpot_ms,
        tokens_per_s_per_user=np.where(np.isfinite(tpot_ms), 1e3 / tpot_ms, np.nan),
        worst_inter_token_gap_ms=tpot_ms.copy() if worst_gap_s is None else full(worst_gap_s) * 1e3,
        requests_per_s=requests_per_s,
        output_tokens_per_s=output,
        input_tokens_per_s=inputs,
        output_tokens_per_s_per_gpu=output / gpus,
        input_tokens_per_s_per_gpu=inputs / gpus,
        kv_cache_bytes_per_request=full(kv_bytes_per_request),
        # What a prefill instance ships: the prompt's KV once, without the copies TP keeps.
        kv_transfer_bytes_per_request=full(ctx.arch.kv_bytes_per_request(isl)),
        kv_transfer_ms=full(kv_transfer_s) * 1e3,
        compute_ms=compute_ms,
        memory_ms=memory_ms,
        communication_ms=comm_ms,
        overhead_ms=overhead_ms,
    )


def kv_cache_bytes_per_request(ctx: PerfContext, layouts: Layouts, context_tokens) -> np.ndarray:
    """KV bytes one request occupies in an instance, duplicates included (MLA latents, GQA heads < TP)."""
    return ctx.arch.kv_bytes_per_request(context_tokens) * ctx.arch.kv_duplication(layouts.tp)


def kv_transfer_s(ctx: PerfContext, layouts: Layouts, prompt_tokens, prefill_s, link_bytes_per_s):
    """Exposed time to ship one request's KV to the decode pool, streamed layer by layer.

    Every GPU of the prefill instance sends its distinct shard in parallel, so the
    transfer overlaps all but the last layer's share of the prefill; only what does
    not fit under the prefill is added to the first-token latency.
    """
    arch = ctx.arch
    senders = np.minimum(layouts.tp, arch.model.num_kv_heads if arch.kv_shardable else 1) * layouts.pp
    total_s = arch.kv_bytes_per_request(prompt_tokens) / (
        senders * link_bytes_per_s * ctx.efficiency.collective_efficiency_fraction
    )
    return np.maximum(total_s / arch.model.num_layers, total_s - prefill_s)


# --------------------------------------------------------------------------- prefill


def _prefill_core(
    ctx: PerfContext,
    layouts: Layouts,
    isl,
    chunk_tokens,
    options: ServingOptions | None,
    cached_tokens=0.0,
):
    """Stage cost, chunk count and timings of prefilling ``batch`` prompts of ``isl`` tokens.

    ``cached_tokens`` of each prompt come from the prefix cache (:mod:`~planner.perf.prefix_cache`).
    """
    arch = ctx.arch
    isl = np.asarray(isl, dtype=float)
    cached = np.asarray(cached_tokens, dtype=float)
    dp = layouts.attention_dp.astype(float)
    pp = layouts.pp.astype(float)
    prompts_per_rank = layouts.batch / dp
    tokens_per_rank = prompts_per_rank * (isl - cached)
    chunk_tokens = np.asarray(chunk_tokens, dtype=float)
    chunks = np.where(pp > 1, np.maximum(1.0, np.ceil(tokens_per_rank / chunk_tokens)), 1.0)
    chunk_tokens_per_rank = tokens_per_rank / chunks
    pairs = prompts_per_rank * (arch.prefill_attention_pairs(isl) - arch.prefill_attention_pairs(cached))
    # Later chunks read the KV of earlier ones: on average half the prompt per chunk; the cached prefix once.
    kv_token_bytes = kv_bytes_per_token_per_gpu_layer(ctx, layouts)
    kv_reads = np.where(chunks > 1, np.minimum(isl - cached, tokens_per_rank) / 2 * kv_token_bytes, 0.0)
    kv_reads = kv_reads + prompts_per_rank * cached * kv_token_bytes / chunks
    step = stage_step_cost(
        ctx,
        layouts,
        tokens_per_rank=chunk_tokens_per_rank,
        attention_flops_per_rank_layer=pairs * arch.prefill_attention_flops_per_pair / chunks,
        kv_read_bytes_per_gpu_layer=kv_reads,
        head_tokens_per_rank=prompts_per_rank / chunks,
        options=options,
    )
    overhead_s = ctx.efficiency.step_overhead_ms * 1e-3
    chunk_s = step.body_s + step.head_s + overhead_s
    # Steady state: the busiest stage is busy for all chunks of the batch.
    stage_busy_s = chunks * chunk_s
    latency_s = (chunks + pp - 1) * chunk_s + (pp - 1) * step.handoff_s
    passes = chunks + pp - 1
    return step, chunks, chunk_tokens_per_rank, stage_busy_s, latency_s, passes, passes * overhead_s


def prefill(
    ctx: PerfContext,
    layouts: Layouts,
    isl,
    osl,
    *,
    kv_link_bytes_per_s: float | None = None,
    chunk_tokens=PREFILL_CHUNK_TOKENS,
    options: ServingOptions | None = None,
    cached_tokens=0.0,
    prefix_cache_tokens: float = 0.0,
) -> PhaseMetrics:
    """A prefill instance: first-token latency (with KV transfer out) and requests/s.

    ``chunk_tokens`` (scalar or one per layout) is the chunk of chunked pipeline
    prefill (PP > 1): smaller chunks fill the pipeline sooner but run smaller GEMMs.

    ``output_tokens_per_s`` counts the tokens the decode pool will generate for the
    requests this instance prefills (``requests_per_s x OSL``), so prefill and decode
    rates compare directly. ``cached_tokens`` of each prompt hit the prefix cache, which
    holds ``prefix_cache_tokens`` on every instance (:mod:`~planner.perf.prefix_cache`).
    """
    step, chunks, chunk_tokens_per_rank, busy_s, latency_s, passes, overhead_s = _prefill_core(
        ctx, layouts, isl, chunk_tokens, options, cached_tokens
    )
    prompts_per_rank = layouts.batch / layouts.attention_dp
    mem = memory_use(
        ctx,
        layouts,
        requests_per_rank=prompts_per_rank,
        context_tokens=np.asarray(isl, dtype=float),
        tokens_per_forward_per_rank=chunk_tokens_per_rank,
        options=options,
    )
    mem = with_prefix_cache_memory(ctx, layouts, mem, prefix_cache_tokens)
    link = kv_link_bytes_per_s or ctx.hardware.scale_out_bandwidth_gb_per_s * GB
    shipped_tokens = np.asarray(isl, dtype=float) - np.asarray(cached_tokens, dtype=float)
    transfer_s = kv_transfer_s(ctx, layouts, shipped_tokens, latency_s, link)
    breakdown = _breakdown_ms(step, passes, overhead_s, latency_s)
    metrics = _assemble(
        ctx,
        layouts,
        mem,
        ttft_s=latency_s + transfer_s,
        tpot_s=np.nan,
        worst_gap_s=np.nan,
        requests_per_s=layouts.batch / busy_s,
        isl=isl,
        osl=osl,
        kv_bytes_per_request=kv_cache_bytes_per_request(ctx, layouts, isl),
        kv_transfer_s=transfer_s,
        breakdown=breakdown,
    )
    shipped = np.broadcast_to(ctx.arch.kv_bytes_per_request(shipped_tokens), (len(layouts),)).astype(float)
    return replace(metrics, kv_transfer_bytes_per_request=shipped)


# --------------------------------------------------------------------------- decode


def _decode_step(
    ctx: PerfContext,
    layouts: Layouts,
    isl,
    osl,
    *,
    prompt_tokens_per_microbatch=0.0,
    options: ServingOptions | None = None,
    verify_tokens: int = 1,
):
    """One decode step (optionally carrying piggybacked prompt tokens) and its time.

    ``verify_tokens`` query positions per request (speculative decoding: k + 1) share one KV read.
    """
    arch = ctx.arch
    isl = np.asarray(isl, dtype=float)
    osl = np.asarray(osl, dtype=float)
    pp = layouts.pp.astype(float)
    dp = layouts.attention_dp.astype(float)
    per_microbatch = layouts.batch / (dp * pp)
    mean_context = arch.kv_context_tokens(isl + (osl + 1) / 2)
    kv_token_bytes = kv_bytes_per_token_per_gpu_layer(ctx, layouts)
    # The step waits for the attention-DP rank whose requests hold the most context.
    busiest = attention_dp_imbalance(dp, per_microbatch, isl, osl)
    attention = per_microbatch * verify_tokens * mean_context * arch.decode_attention_flops_per_pair * busiest
    kv_reads = per_microbatch * mean_context * kv_token_bytes * busiest
    chunk = np.asarray(prompt_tokens_per_microbatch, dtype=float)
    redo = 0.0
    if np.any(chunk > 0):
        # Piggybacked prompt tokens attend to their own prompt's earlier part (half on average)
        # and re-read its cached KV once per chunk; MLA also re-expands that latent to K/V.
        pairs_per_token = arch.prefill_attention_pairs(isl) / isl
        attention = attention + chunk * pairs_per_token * arch.prefill_attention_flops_per_pair
        prompts_in_chunk = np.maximum(1.0, chunk / isl)
        prefix = np.where(chunk > 0, prompts_in_chunk * np.minimum(isl / 2, isl), 0.0)
        kv_reads = kv_reads + prefix * kv_token_bytes
        if arch.model.mla is not None:
            m = arch.model.mla
            up_projection = (
                m.kv_lora_rank_dim * arch.model.num_attention_heads * (m.qk_nope_head_dim + m.v_head_dim)
            )
            redo = 2.0 * prefix * up_projection
    step = stage_step_cost(
        ctx,
        layouts,
        tokens_per_rank=per_microbatch * verify_tokens + chunk,
        attention_flops_per_rank_layer=attention,
        kv_read_bytes_per_gpu_layer=kv_reads,
        head_tokens_per_rank=per_microbatch * verify_tokens,
        extra_attention_gemm_flops_per_rank_layer=redo,
        options=options,
    )
    overhead_s = np.full(len(layouts), ctx.efficiency.step_overhead_ms * 1e-3)
    # Each token passes every stage; the PP micro-batches keep all stages busy meanwhile.
    tpot_s = pp * step.body_s + step.head_s + (pp - 1) * step.handoff_s + overhead_s
    return step, tpot_s, overhead_s


def _speculative_step(ctx, layouts, isl, osl, speculation: Speculation | None, **step_options):
    """A decode step with ``k`` drafts verified in it: (step, seconds per step, overhead, tokens per step).

    Without speculation (None or k = 0) this is the plain step yielding one token.
    """
    if speculation is None or speculation.draft_tokens == 0:
        return (*_decode_step(ctx, layouts, isl, osl, **step_options), 1.0)
    step, step_s, overhead_s = _decode_step(
        ctx, layouts, isl, osl, verify_tokens=speculation.verify_tokens, **step_options
    )
    plain, _, _ = _decode_step(ctx, layouts, isl, osl, options=step_options.get("options"))
    return step, step_s + draft_s(ctx, layouts, plain, speculation), overhead_s, speculation.tokens_per_step


def decode(
    ctx: PerfContext,
    layouts: Layouts,
    isl,
    osl,
    *,
    options: ServingOptions | None = None,
    speculation: Speculation | None = None,
    prefix_cache_tokens: float = 0.0,
) -> PhaseMetrics:
    """A decode instance: time per output token at ``batch`` requests in flight, tokens/s.

    With ``speculation`` each step verifies k draft tokens and yields its mean accepted
    tokens (:mod:`~planner.perf.speculative`); ``prefix_cache_tokens`` of cached
    prefixes are held besides the requests' KV (:mod:`~planner.perf.prefix_cache`).
    """
    isl = np.asarray(isl, dtype=float)
    osl = np.asarray(osl, dtype=float)
    step, step_s, overhead_s, per_step = _speculative_step(
        ctx, layouts, isl, osl, speculation, options=options
    )
    tpot_s = step_s / per_step
    verify = 1 if speculation is None else speculation.verify_tokens
    mem = memory_use(
        ctx,
        layouts,
        requests_per_rank=layouts.batch / layouts.attention_dp,
        context_tokens=isl + osl,
        tokens_per_forward_per_rank=layouts.batch * verify / (layouts.attention_dp * layouts.pp),
        options=options,
    )
    mem = with_prefix_cache_memory(
        ctx, layouts, with_drafter_memory(ctx, mem, speculation), prefix_cache_tokens
    )
    return _assemble(
        ctx,
        layouts,
        mem,
        ttft_s=np.nan,
        tpot_s=tpot_s,
        requests_per_s=layouts.batch / (tpot_s * osl),
        isl=isl,
        osl=osl,
        kv_bytes_per_request=kv_cache_bytes_per_request(ctx, layouts, isl + osl),
        kv_transfer_s=0.0,
        breakdown=_breakdown_ms(step, layouts.pp.astype(float), overhead_s / per_step, tpot_s),
    )


# --------------------------------------------------------------------------- aggregated


def aggregated(
    ctx: PerfContext,
    layouts: Layouts,
    isl,
    osl,
    *,
    chunked_prefill: bool = True,
    options: ServingOptions | None = None,
    chunk_tokens=PREFILL_CHUNK_TOKENS,
    speculation: Speculation | None = None,
    cached_tokens=0.0,
    prefix_cache_tokens: float = 0.0,
) -> PhaseMetrics:
    """A co-located instance running both phases with in-flight batching.

    Speculation and the prefix cache work as in :func:`decode` and :func:`prefill`: a
    step yields its accepted tokens (so prompts arrive that much faster per step), and
    only the uncached part of a prompt is prefilled (its piggybacked chunks' attention is
    still priced per token of the whole prompt).

    With ``chunked_prefill`` each decode step carries ``batch x ISL / OSL`` prompt
    tokens (the steady-state share) in pieces of at most ``chunk_tokens`` per rank
    (scalar or one per layout), so prompts ride along the weight reads of decode and
    a prompt completes after ``ISL / chunk`` steps. Without it, the prompts that
    arrive per step are prefilled in separate passes that stall every decode step.

    ``worst_inter_token_gap_ms`` is the longest gap a request sees between two of its
    tokens: the decode step that carries a whole piece on the busiest rank (chunked),
    or the step that waits for a whole prefill pass (not chunked). The mean
    (``tpot_ms``) hides it.
    """
    chunk_tokens = np.asarray(chunk_tokens, dtype=float)
    isl = np.asarray(isl, dtype=float)
    osl = np.asarray(osl, dtype=float)
    dp = layouts.attention_dp.astype(float)
    pp = layouts.pp.astype(float)
    per_microbatch = layouts.batch / (dp * pp)
    # A new prompt is prefilled in full-size chunks on its rank while decode goes on:
    # its first token comes after one prompt's prefill plus the decode step it joins.
    single = Layouts.of(layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, layouts.attention_dp)
    *_, single_latency_s, _, _ = _prefill_core(ctx, single, isl, chunk_tokens, options, cached_tokens)
    per_step = 1.0 if speculation is None else speculation.tokens_per_step
    new_isl = isl - np.asarray(cached_tokens, dtype=float)
    if chunked_prefill:
        # Prompt tokens per step, summed over the attention-DP ranks. A prompt lives on one rank,
        # so the busiest rank carries at least one whole chunk whenever any rank has one.
        # How far the scheduler evens this out across ranks is a calibrated fraction.
        arriving = per_microbatch * dp * new_isl * per_step / osl
        balanced = arriving / dp
        piece = np.minimum(new_isl, chunk_tokens)
        pieces = arriving / piece
        unbalanced = np.minimum(arriving, np.maximum(balanced, piece * np.ceil(pieces / dp)))
        chunk = unbalanced - ctx.efficiency.attention_dp_balance_fraction * (unbalanced - balanced)
        step, step_s, overhead_s, _ = _speculative_step(
            ctx, layouts, isl, osl, speculation, prompt_tokens_per_microbatch=chunk, options=options
        )
        tpot_s = step_s / per_step
        forward_tokens = per_microbatch + np.maximum(chunk, piece)
        breakdown = _breakdown_ms(step, pp, overhead_s / per_step, tpot_s)
        # The worst step: the busiest rank carries a whole piece (or its whole unbalanced share).
        worst_tokens = np.maximum(unbalanced, piece)
        _, worst_gap_s, _, _ = _speculative_step(
            ctx, layouts, isl, osl, speculation, prompt_tokens_per_microbatch=worst_tokens, options=options
        )
        # A prompt's pieces go one per step, so its first token waits (ISL - cached) / chunk such
        # steps (never less than prefilling it at once, plus the step it joins).
        ttft_s = np.maximum(single_latency_s + step_s, np.ceil(new_isl / piece) * worst_gap_s)
    else:
        step, decode_s, overhead_s, _ = _speculative_step(
            ctx, layouts, isl, osl, speculation, options=options
        )
        # Prompts arriving per decode step are prefilled together; a pass with fewer prompts
        # than attention-DP ranks still costs the busiest rank one whole prompt (unless balanced).
        arrivals = layouts.batch * per_step / osl
        prompts = np.maximum(1.0, np.round(arrivals))
        padded = (np.ceil(prompts / dp) * dp).astype(np.int64)
        pre = Layouts.of(layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, padded)
        _, _, _, busy_s, latency_s, _, _ = _prefill_core(ctx, pre, isl, chunk_tokens, options, cached_tokens)
        balance = ctx.efficiency.attention_dp_balance_fraction
        per_prompt_s = busy_s / (balance * padded + (1 - balance) * prompts)
        step_s = decode_s + per_prompt_s * arrivals
        tpot_s = step_s / per_step
        prefill_batch = padded
        ttft_s = latency_s + decode_s
        # The worst gap: a decode step that waits for a whole prefill pass.
        worst_gap_s = decode_s + latency_s
        forward_tokens = np.maximum(per_microbatch, prefill_batch / dp * new_isl)
        stall = step_s - decode_s
        d_compute, d_memory, d_comm, d_over = _breakdown_ms(step, pp, overhead_s, decode_s)
        breakdown = tuple(v / per_step for v in (d_compute + stall * 1e3, d_memory, d_comm, d_over))
    mem = memory_use(
        ctx,
        layouts,
        requests_per_rank=layouts.batch / dp,
        context_tokens=isl + osl,
        tokens_per_forward_per_rank=forward_tokens,
        options=options,
    )
    mem = with_prefix_cache_memory(
        ctx, layouts, with_drafter_memory(ctx, mem, speculation), prefix_cache_tokens
    )
    return _assemble(
        ctx,
        layouts,
        mem,
        ttft_s=ttft_s,
        tpot_s=tpot_s,
        requests_per_s=layouts.batch / (tpot_s * osl),
        isl=isl,
        osl=osl,
        kv_bytes_per_request=kv_cache_bytes_per_request(ctx, layouts, isl + osl),
        kv_transfer_s=0.0,
        worst_gap_s=worst_gap_s,
        breakdown=breakdown,
    )
