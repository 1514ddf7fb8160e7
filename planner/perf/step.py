"""The cost of one forward pass through one pipeline stage, per GPU, for many layouts at once.

Every phase (prefill chunk, decode step, mixed co-located step) is a forward
pass with some tokens through the GEMMs, some attention work and some KV reads;
this module prices it. Each GEMM group and attention is a roofline,
max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth), and communication is
added on top (not overlapped): TP all-reduce (two per layer), EP
dispatch/combine (one each per MoE layer), both priced per fabric by
:mod:`~planner.perf.collectives`, and the PP hand-off; only two-batch
overlap (:mod:`~planner.perf.serving`) hides the EP part behind compute. Time is
attributed to compute, memory or communication by which side of each roofline
binds, so the breakdown adds up to the total.

Routed experts: only the experts a step's tokens hit are read
(:func:`active_expert_fraction`), the busiest EP rank carries the load imbalance
(:func:`moe_load_imbalance`) and the expert GEMMs run at the grouped-GEMM efficiency
of their rows per active expert (:func:`grouped_gemm_efficiency`).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from planner.perf.architecture import ACTIVATION_BYTES, DISPATCH_BYTES_PER_ELEMENT, EMBEDDING_BYTES_PER_PARAM
from planner.perf.collectives import LOW_LATENCY_MAX_TOKENS_PER_RANK, all_reduce_s, ep_all_to_all_s
from planner.perf.context import PerfContext
from planner.perf.layout import Layouts
from planner.perf.serving import ServingOptions, expert_slots_per_gpu


@dataclass(frozen=True)
class StepCost:
    """Seconds per GPU for one pass through one stage (body) and through the output head."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    communication_s: np.ndarray
    head_s: np.ndarray
    handoff_s: np.ndarray
    fixed_s: np.ndarray | float = 0.0
    """Fixed per-layer kernel time of the stage (``layer_overhead_us``): neither compute nor memory."""

    @property
    def body_s(self) -> np.ndarray:
        """One stage's layers, without the output head."""
        return self.compute_s + self.memory_s + self.communication_s + self.fixed_s


def gemm_efficiency(ctx: PerfContext, rows: np.ndarray) -> np.ndarray:
    """Achieved fraction of peak for a GEMM with that many token rows (saturating in the rows)."""
    eff = ctx.efficiency
    rows = np.maximum(rows, 1e-9)
    return eff.gemm_efficiency_fraction * rows / (rows + eff.gemm_half_saturation_tokens)


def _roofline(flops, flop_rate, nbytes, byte_rate) -> tuple[np.ndarray, np.ndarray]:
    """Split max(compute, memory) time into (compute-bound part, memory-bound part)."""
    t_compute = flops / flop_rate
    t_memory = nbytes / byte_rate
    compute_bound = t_compute >= t_memory
    return np.where(compute_bound, t_compute, 0.0), np.where(compute_bound, 0.0, t_memory)


def grouped_gemm_efficiency(ctx: PerfContext, rows_per_expert: np.ndarray) -> np.ndarray:
    """Achieved fraction of peak for a grouped (per-expert) GEMM with that many rows per active expert.

    Its own saturation curve: one expert's GEMM with a handful of rows is far from
    the efficiency of a dense GEMM with the same total rows.
    """
    eff = ctx.efficiency
    rows = np.maximum(rows_per_expert, 1e-9)
    return eff.grouped_gemm_efficiency_fraction * rows / (rows + eff.grouped_gemm_half_saturation_tokens)


def active_expert_fraction(experts: int, experts_per_token: int, tokens: np.ndarray) -> np.ndarray:
    """Expected fraction of the E experts that ``tokens`` top-k routed tokens hit: 1 - (1 - k/E)^tokens."""
    return 1.0 - (1.0 - experts_per_token / experts) ** np.asarray(tokens, dtype=float)


def expected_max_of_normals(n) -> np.ndarray:
    """Expected largest of ``n`` standard normal draws (Blom: Phi^-1((n - 3/8) / (n + 1/4))).

    The standard library's inverse normal CDF, over the few distinct ``n`` (DP degrees): scipy's
    ``ndtri`` agrees to the last digit or two, and importing scipy costs a planning run 0.5 s.
    """
    n = np.asarray(n, dtype=float)
    distinct, where = np.unique((n - 0.375) / (n + 0.25), return_inverse=True)
    inverse = NormalDist().inv_cdf
    return np.array([inverse(p) for p in distinct], dtype=float)[where].reshape(n.shape)


def attention_dp_imbalance(dp, requests_per_rank, isl, osl) -> np.ndarray:
    """Busiest attention-DP rank's decode attention work (KV reads) over the mean (1 = even).

    Each rank holds its own requests, each somewhere in its answer, so a request's
    context is uniform on [ISL, ISL + OSL] (standard deviation OSL / sqrt(12)); a
    rank's total over its requests has relative spread that / mean / sqrt(requests),
    and the step waits for the busiest of DP ranks (expected maximum of DP normal draws).
    """
    dp = np.asarray(dp, dtype=float)
    isl = np.asarray(isl, dtype=float)
    osl = np.asarray(osl, dtype=float)
    relative = osl / np.sqrt(12.0) / (isl + osl / 2) / np.sqrt(np.maximum(requests_per_rank, 1.0))
    return np.where(dp > 1, 1.0 + expected_max_of_normals(dp) * relative, 1.0)


def moe_load_imbalance(
    ctx: PerfContext, ep: np.ndarray, pairs_per_stage: np.ndarray, eplb: np.ndarray
) -> np.ndarray:
    """Busiest EP rank's token-expert pairs over the mean (1 = perfectly even).

    Two independent spreads add in quadrature. The static skew of expert popularity
    (calibrated, ``moe_load_imbalance_ratio``) is what EPLB's placement removes. The
    sampling spread of routing a finite batch remains: a rank's pair count is binomial
    with relative deviation sqrt((1 - 1/EP) / mean pairs), and the busiest of EP ranks
    sits at the expected maximum of EP normal draws (Blom's approximation), so small
    batches are uneven even when experts are equally popular.
    """
    ep = np.asarray(ep, dtype=float)
    static = np.where(eplb, 0.0, ctx.efficiency.moe_load_imbalance_ratio - 1.0)
    mean_pairs = np.maximum(np.asarray(pairs_per_stage, dtype=float) / ep, 1e-9)
    sampling = expected_max_of_normals(ep) * np.sqrt((1.0 - 1.0 / ep) / mean_pairs)
    imbalance = np.minimum(1.0 + np.sqrt(static**2 + sampling**2), ep)
    return np.where(ep > 1, imbalance, 1.0)


@dataclass(frozen=True)
class _PassParts:
    """One pass's costs before deciding what overlaps what, seconds per GPU."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    tp_comm_s: np.ndarray
    ep_comm_s: np.ndarray
    head_s: np.ndarray
    handoff_s: np.ndarray
    fixed_s: np.ndarray


def stage_step_cost(
    ctx: PerfContext,
    layouts: Layouts,
    *,
    tokens_per_rank: np.ndarray,
    attention_flops_per_rank_layer: np.ndarray,
    kv_read_bytes_per_gpu_layer: np.ndarray,
    head_tokens_per_rank: np.ndarray,
    extra_attention_gemm_flops_per_rank_layer: np.ndarray | float = 0.0,
    options: ServingOptions | None = None,
) -> StepCost:
    """Price one forward pass of ``tokens_per_rank`` tokens on every attention-DP rank of a stage.

    ``attention_flops_per_rank_layer`` and the KV bytes are per layer; the stage holds
    ``num_layers / pp`` of them. The output head runs on ``head_tokens_per_rank`` tokens.

    With two-batch overlap (``options``; EP > 1 and at least two tokens per rank) the
    pass runs as two half micro-batches, each with its own weight reads and smaller
    GEMMs: the compute stream is busy 2 x (compute + memory + TP all-reduce) of a half,
    the links 2 x (EP dispatch/combine) of a half, and the slower of the two sets the
    time (the one-layer fill and drain of this two-stage pipeline is neglected). Normal-mode
    EP kernels occupy SMs while they run, so the compute beside them is slower
    (``ep_normal_compute_slowdown_ratio``).
    """
    n = len(layouts)
    options = options or ServingOptions.of(n)
    inputs = (
        np.broadcast_to(np.asarray(v, dtype=float), (n,))
        for v in (
            tokens_per_rank,
            attention_flops_per_rank_layer,
            kv_read_bytes_per_gpu_layer,
            extra_attention_gemm_flops_per_rank_layer,
        )
    )
    tokens, attention, kv_reads, extra = inputs
    head_tokens = np.asarray(head_tokens_per_rank, dtype=float)
    whole = _pass_parts(ctx, layouts, options, tokens, attention, kv_reads, extra, head_tokens)
    step = StepCost(
        whole.compute_s,
        whole.memory_s,
        whole.tp_comm_s + whole.ep_comm_s,
        whole.head_s,
        whole.handoff_s,
        whole.fixed_s,
    )
    overlap = options.two_batch_overlap & (layouts.ep > 1) & (tokens >= 2)
    if not np.any(overlap):
        return step
    half = _pass_parts(ctx, layouts, options, tokens / 2, attention / 2, kv_reads / 2, extra / 2, head_tokens)
    # Normal-mode EP kernels (above the low-latency token limit) take SMs from the other half's compute.
    normal_mode = tokens / 2 / layouts.tp > LOW_LATENCY_MAX_TOKENS_PER_RANK
    half_compute = half.compute_s * np.where(
        normal_mode, ctx.efficiency.ep_normal_compute_slowdown_ratio, 1.0
    )
    busy = half_compute + half.memory_s + half.tp_comm_s + half.fixed_s
    exposed = np.maximum(half.ep_comm_s - busy, 0.0)
    return StepCost(
        np.where(overlap, 2 * half_compute, step.compute_s),
        np.where(overlap, 2 * half.memory_s, step.memory_s),
        np.where(overlap, 2 * (half.tp_comm_s + exposed), step.communication_s),
        step.head_s,
        step.handoff_s,
        np.where(overlap, 2 * half.fixed_s, step.fixed_s),
    )


def _pass_parts(
    ctx: PerfContext,
    layouts: Layouts,
    options: ServingOptions,
    m: np.ndarray,
    attention_flops_per_rank_layer: np.ndarray,
    kv_read_bytes_per_gpu_layer: np.ndarray,
    extra_attention_gemm_flops_per_rank_layer: np.ndarray,
    head_tokens: np.ndarray,
) -> _PassParts:
    """Every cost of one pass of ``m`` tokens per rank, with communication split by kind."""
    arch, eff = ctx.arch, ctx.efficiency
    tp = layouts.tp.astype(float)
    pp = layouts.pp.astype(float)
    dp = layouts.attention_dp.astype(float)
    ep = layouts.ep.astype(float)
    stage_gpus = tp * dp
    expert_tp = stage_gpus / ep
    stage_tokens = m * dp
    wb = arch.weight_bytes_per_param
    hidden = arch.model.hidden_dim
    gemm_rate = ctx.peak_flops_per_s * gemm_efficiency(ctx, m)
    mem_rate = ctx.hbm_bytes_per_s * eff.memory_efficiency_fraction
    attn_rate = ctx.attention_peak_flops_per_s * eff.attention_efficiency_fraction

    dense_layers = arch.num_dense_layers / pp
    moe_layers = arch.num_moe_layers / pp

    compute = np.zeros_like(m)
    memory = np.zeros_like(m)

    def add(c, mem, layers):
        nonlocal compute, memory
        compute = compute + c * layers
        memory = memory + mem * layers

    # Non-expert GEMMs (attention projections, dense or shared MLP, router): split over TP.
    for params, layers in (
        (arch.attention_params_per_layer + arch.dense_mlp_params_per_layer, dense_layers),
        (
            arch.attention_params_per_layer
            + arch.shared_expert_params_per_layer
            + arch.router_params_per_layer,
            moe_layers,
        ),
    ):
        add(*_roofline(2 * m * params / tp, gemm_rate, params * wb / tp, mem_rate), layers)

    # Routed experts: E/EP experts per GPU (more with EPLB's copies), each split over expert-TP GPUs.
    ep_comm = np.zeros_like(m)
    if arch.num_moe_layers:
        experts, k = arch.num_experts, arch.experts_per_token
        pairs = stage_tokens * k
        # Small batches read only the experts they hit.
        touched = active_expert_fraction(experts, k, stage_tokens)
        slots = expert_slots_per_gpu(experts, ep, options.eplb)
        expert_bytes = slots * touched * arch.expert_params * wb / expert_tp
        # Only expert parallelism concentrates hot experts on some GPUs; EP=1 slices every expert evenly.
        imbalance = moe_load_imbalance(ctx, ep, pairs, options.eplb)
        expert_flops = 2 * pairs * arch.expert_params / stage_gpus * imbalance
        # The busiest GPU's grouped GEMM carries imbalance x the mean rows of each expert the batch hits.
        rows_per_expert = pairs * imbalance / (experts * touched)
        expert_rate = ctx.peak_flops_per_s * grouped_gemm_efficiency(ctx, rows_per_expert)
        add(*_roofline(expert_flops, expert_rate, expert_bytes, mem_rate), moe_layers)

        # Dispatch (fp8) and combine (bf16) of the tokens each GPU owns, to the other EP ranks,
        # in the faster of the normal and low-latency modes (planner.perf.collectives).
        owned = stage_tokens / stage_gpus * imbalance
        a2a = ep_all_to_all_s(ctx, owned, ep, stage_gpus, DISPATCH_BYTES_PER_ELEMENT) + ep_all_to_all_s(
            ctx, owned, ep, stage_gpus, ACTIVATION_BYTES
        )
        # Experts split wider than the TP group need their tokens gathered across DP ranks.
        gather = all_reduce_s(
            ctx, stage_tokens / ep * hidden * ACTIVATION_BYTES, np.maximum(expert_tp / tp, 1)
        )
        # Without attention-DP every GPU of the stage already holds every token: nothing to
        # dispatch, and the combine is the layer's TP all-reduce (counted below).
        ep_comm = (np.where((ep > 1) & (dp > 1), a2a, 0.0) + gather) * moe_layers

    # Attention scores/values (compute) and KV-cache reads (memory).
    attn_flops = (attention_flops_per_rank_layer + extra_attention_gemm_flops_per_rank_layer) / tp
    add(*_roofline(attn_flops, attn_rate, kv_read_bytes_per_gpu_layer, mem_rate), dense_layers + moe_layers)

    # Fixed per-layer kernel time (launch gaps, minimum kernel durations): its own term, reported
    # as overhead, never as compute (a batch-1 step is not compute-bound).
    fixed = eff.layer_overhead_us * 1e-6 * (dense_layers + moe_layers) * np.ones_like(compute)

    # Two TP all-reduces per layer of the rank's activations.
    tp_comm = 2 * all_reduce_s(ctx, m * hidden * ACTIVATION_BYTES, tp) * (dense_layers + moe_layers)

    # Output head on the last stage (bf16 weights), split over TP.
    head_c, head_m = _roofline(
        2 * head_tokens * arch.head_or_embedding_params / tp,
        ctx.peak_flops_per_s * gemm_efficiency(ctx, head_tokens) * _bf16_share(ctx),
        arch.head_or_embedding_params * EMBEDDING_BYTES_PER_PARAM / tp,
        mem_rate,
    )

    handoff_span = layouts.gpus.astype(float)
    handoff = np.where(
        pp > 1,
        m
        * hidden
        * ACTIVATION_BYTES
        / (ctx.link_bytes_per_s(handoff_span) * eff.collective_efficiency_fraction)
        + ctx.link_latency_s(handoff_span),
        0.0,
    )
    return _PassParts(compute, memory, tp_comm, ep_comm, head_c + head_m, handoff, fixed)


def _bf16_share(ctx: PerfContext) -> float:
    """The head runs in bf16: its peak relative to the deployment precision's peak."""
    return ctx.hardware.bf16_dense_tflops_per_s * 1e12 / ctx.peak_flops_per_s
