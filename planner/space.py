"""The candidate table: every serving instance the optimizer may use, priced and pruned (docs/DESIGN.md §3).

Why it exists
    The MIP in :mod:`planner.optimize` never sees hardware or model numbers: it
    only chooses how many copies of each *row* of this table to run. A layout that
    is missing here can never be in a plan, and every row that is here becomes
    Pyomo variables. So the table must contain every candidate that can be in an
    optimal plan, and as few others as possible.

What it holds
    For one phase (``prefill``, ``decode`` or ``aggregated``) :func:`enumerate_layouts`
    lists the parallel layouts (TP x PP x attention-DP GPUs, EP over a stage) and
    batch sizes; :func:`candidate_table` prices them all in one vectorized call of
    :func:`planner.perf.evaluate` (two for ``aggregated``: with and without chunked
    prefill; MoE layouts with EP > 1 once more in the wide-EP serving mode, two-batch
    overlap and EPLB on, as SGLang and TensorRT-LLM deploy DeepSeek), then drops, in this
    order and counting each step in
    ``frame.attrs["funnel"]``:

    1. rows that do not fit in usable HBM;
    2. rows whose first-token latency exceeds ``ttft_ms_max`` (prefill: prefill plus
       KV transfer; aggregated: a prompt's prefill plus the decode step it joins;
       decode rows have no TTFT of their own);
    3. dominated rows (below).

Why pruning keeps the frontier exact
    The MIP uses a candidate only through its GPU count ``g`` (integer copies, GPU
    and node budget, cost), its rate ``r`` (prefill: requests/s; decode and
    aggregated: output tokens/s) and a latency it must meet (prefill: TTFT at most
    the limit; decode and aggregated: tokens/s per user at least the interactivity
    target). Candidate A *dominates* B when A's latency is at least as good, A's
    rate per GPU ``r / g`` is at least B's, and ``g_A`` divides ``g_B``, with at
    least one of the three strictly better. Then any plan that runs ``n`` copies of B
    can run ``n * g_B / g_A`` copies of A on exactly the same GPUs (they tile B's
    GPUs, so node and scale-up-domain packing still work), for a rate
    ``n * g_B * (r_A / g_A) >= n * r_B`` and a latency that meets every limit B met.
    Replacing B by A never makes a plan worse, so dropping B never changes the
    optimum, at any load and at any interactivity target.

    The GPU condition matters: with integer instance counts, a better rate *per GPU*
    alone is not enough. A 2-GPU candidate with the same per-GPU rate as a 3-GPU
    one cannot replace it in a 3-GPU budget (one copy gives 2/3 of the rate, two
    copies need 4 GPUs). That is why ``gpus`` is part of the dominance test, and why
    the test is "divides" rather than "at most": the two agree whenever GPU counts
    are powers of two (every shipped model), and "divides" stays exact for layouts
    such as TP=3 or TP=6 that some models' head counts allow.

    The criteria per phase:

    - prefill: ``requests_per_s / gpus`` (higher), ``ttft_ms`` (lower), ``gpus`` (divides);
    - decode and aggregated: ``tokens_per_s_per_user`` (higher),
      ``output_tokens_per_s / gpus`` (higher), ``gpus`` (divides).

    Aggregated rows are filtered by the instance's TTFT limit but not ranked by TTFT,
    so a table is exact for its own ``ttft_ms_max``; a different limit needs a new
    table.

    Exact ties (equal on both criteria and on ``gpus``) are the same candidate to the MIP,
    so one row of each is kept (:func:`exact_tie_mask`): the lowest ``ttft_ms``, then the
    least layout. Keeping them all multiplied the rows (87 of the 95
    aggregated rows of Llama-3.1-70B on GB200 were ties across prefill chunk sizes),
    added symmetric branches, and left which of them a plan showed to the solver's path.

Pruning is vectorized: rows are grouped by GPU count, and for each pair of groups
``(g_A, g_B)`` with ``g_A | g_B`` a sort plus a running maximum answers "is there an
A at least as good on both rates?" for every B in ``O(n log n)`` time and ``O(n)``
memory, with no pairwise matrix.

KV transfer link: when the whole GPU budget fits in one scale-up domain (a GB200
NVL72 rack with ``max_gpus <= 72``) every prefill instance sends its KV cache to a
decode instance in the same domain, so prefill rows are priced with the scale-up
bandwidth; otherwise with the scale-out bandwidth (the conservative case).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.class_features import ClassFeatures
from planner.errors import InfeasibleError
from planner.perf import Layouts, evaluate, layout_problems
from planner.perf.calibration import Calibration
from planner.perf.phases import PREFILL_CHUNK_TOKENS
from planner.perf.quantization import resolve
from planner.specs import HardwareSpec, Instance, ModelSpec, Phase, Precision, QuantizationSpec

PHASES: tuple[Phase, ...] = ("prefill", "decode", "aggregated")

MAX_PP: dict[Phase, int] = {"prefill": 64, "decode": 4, "aggregated": 4}
"""Largest pipeline depth tried per phase (powers of two up to this, and at most the layers).

Prefill tolerates deep pipelines (chunked pipeline prefill keeps stages busy, and
very long prompts need them to reach a first token soon: DeepSeek-R1's 61 layers
run over 32 stages, two layers or fewer each); the only rule is a layer per stage
at least (:func:`~planner.perf.layout.layout_problems`), so the layer count and
the GPU budget bound the depth. Decode pays one hand-off per stage per token, so
deeper pipelines only help when the weights do not fit otherwise, and 4 stages
cover every shipped model.
"""

PREFILL_TOKENS_PER_RANK_MAX = 32768
"""Largest prompt tokens one attention-DP rank takes per prefill batch (prompts per rank x ISL).

Prefill GEMMs saturate at a few thousand tokens, so bigger batches only add
first-token latency; 32k tokens (e.g. 8 prompts of 4k) leaves room for MoE
expert GEMMs to fill up. One prompt per rank is always tried, however long.
"""

DECODE_REQUESTS_PER_RANK: tuple[int, ...] = (
    1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
)  # fmt: skip
"""Requests in flight per attention-DP rank tried for decode and aggregated instances.

A roughly geometric grid (ratio 1.5-2): the interactivity frontier is traced at
the per-user rates of the candidates, so a finer grid gives a smoother frontier.
The cap of 2048 is TensorRT-LLM's default ``max_batch_size``; memory usually binds
earlier. With PP > 1 only values of at least PP are used, so each of the PP
micro-batches holds at least one request (every value >= 4 in the grid is a
multiple of 4, so the micro-batches are even).
"""

PIPELINE_CHUNK_TOKENS: tuple[int, ...] = (1024, 2048, 4096, 8192)
"""Chunk sizes tried for chunked pipeline prefill (PP > 1): smaller chunks fill a deep
pipeline sooner (first token earlier) but run smaller, less efficient GEMMs."""

PIGGYBACK_CHUNK_TOKENS: tuple[int, ...] = (512, 2048, 8192)
"""Prompt tokens per rank and step tried for chunked-prefill piggybacking: smaller chunks
shorten the worst inter-token gap but spread a prompt over more steps."""

LAYOUT_COLUMNS: tuple[str, ...] = (
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "batch",
    "chunked_prefill",
    "prefill_chunk_tokens",
    "two_batch_overlap",
    "eplb",
    "draft_tokens",
)
"""What defines one serving engine: its parallel layout, batch and serving options
(``draft_tokens``: speculative decoding, 0 = off)."""

COLUMNS: tuple[str, ...] = (
    "candidate_id",
    "phase",
    *LAYOUT_COLUMNS,
    "gpus",
    "ttft_ms",
    "tpot_ms",
    "tokens_per_s_per_user",
    "worst_inter_token_gap_ms",
    "requests_per_s",
    "requests_per_s_per_gpu",
    "output_tokens_per_s",
    "output_tokens_per_s_per_gpu",
    "input_tokens_per_s",
    "input_tokens_per_s_per_gpu",
    "memory_per_gpu_gb",
    "weights_per_gpu_gb",
    "kv_cache_per_gpu_gb",
    "kv_cache_bytes_per_request",
    "kv_transfer_bytes_per_request",
    "kv_transfer_ms",
    "isl_tokens",
    "osl_tokens",
    "calibration_block",
)
"""Columns of a candidate table, in order. ``tp``, ``pp``, ``ep``, ``attention_dp`` and
``batch`` (requests in flight per instance) are counts; ``gpus`` is GPUs per instance."""


@dataclass(frozen=True)
class Funnel:
    """How many rows survived each step of :func:`candidate_table` (also in ``frame.attrs["funnel"]``)."""

    evaluated: int
    """Layout x batch (x chunked-prefill) rows priced."""
    fit_memory: int
    """Rows whose busiest GPU fits in usable HBM."""
    meet_ttft: int
    """Fitting rows that also meet the TTFT limit (decode: same as ``fit_memory``) and, when one
    is set, the inter-token gap limit."""
    non_dominated: int
    """Rows left after dominance pruning: the table (equal to ``meet_ttft`` with ``prune=False``)."""


def instance_max_gpus(instance: Instance, hardware: HardwareSpec) -> int:
    """The GPU budget of an instance: ``cluster.max_gpus``, ``max_nodes x gpus_per_node``, or the smaller."""
    cluster = instance.cluster
    limits = []
    if cluster.max_gpus is not None:
        limits.append(cluster.max_gpus)
    if cluster.max_nodes is not None:
        limits.append(cluster.max_nodes * hardware.gpus_per_node)
    return min(limits)


# --------------------------------------------------------------------------- enumeration


def _powers_of_two(limit: int) -> list[int]:
    values, v = [], 1
    while v <= limit:
        values.append(v)
        v *= 2
    return values


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _batches_per_rank(phase: Phase, pp: int, isl_tokens: int | None) -> list[int]:
    if phase == "prefill":
        if isl_tokens is None:
            raise ValueError("enumerate_layouts needs isl_tokens for the prefill batch grid")
        cap = max(1, PREFILL_TOKENS_PER_RANK_MAX // isl_tokens)
        return _powers_of_two(cap)
    return [b for b in DECODE_REQUESTS_PER_RANK if b >= pp]


def enumerate_layouts(
    model: ModelSpec,
    hardware: HardwareSpec,
    phase: Phase,
    *,
    max_gpus: int,
    isl_tokens: int | None = None,
    quantization: QuantizationSpec | None = None,
) -> Layouts:
    """Every layout x batch worth pricing for one phase, all runnable (``layout_problems`` accepts them).

    With a block-scaled weight format (``quantization``) layouts whose shards would
    cut a scale block are left out.

    - **TP**: the divisors of the attention heads up to the scale-up domain (TP across
      domains would put two all-reduces per layer on the slow network); the KV-head
      rule of :func:`~planner.perf.layout.layout_problems` removes the rest.
    - **PP**: powers of two up to :data:`MAX_PP` of the phase and the layer count.
    - **attention-DP**: powers of two, and only above 1 for MoE or MLA models. In a
      dense model every rank holds its own copy of all weights (attention and MLP are
      split over TP only), so attention-DP d is exactly d independent TP x PP
      instances, which the MIP already expresses by running d copies; listing them
      would only add rows. MoE ranks share the experts (EP spans the ranks), and MLA
      ranks avoid replicating the latent KV cache over TP.
    - **stage**: TP x attention-DP stays inside one scale-up domain, so TP
      all-reduces and the EP all-to-all stay on scale-up links; PP stages may span
      domains (the hand-off is one point-to-point send per micro-batch). The one
      exception is **wide expert parallelism** (MoE only): TP1, PP1 and attention-DP =
      EP over 2, 4, ... whole domains (DeepSeek's and SGLang's multi-node
      deployments), when EP divides the experts; the EP all-to-all then crosses the
      network (:func:`~planner.perf.collectives.ep_all_to_all_s`).
    - **EP** (MoE only): every divisor of the experts that divides TP x attention-DP,
      from 1 (experts split by tensor parallelism) to the whole stage.
    - **GPUs**: TP x PP x attention-DP <= ``max_gpus``.
    - **batch** (requests per instance = per-rank value x attention-DP): prefill,
      prompts per rank in powers of two with prompts x ``isl_tokens`` <=
      :data:`PREFILL_TOKENS_PER_RANK_MAX` (always at least 1); decode and
      aggregated, :data:`DECODE_REQUESTS_PER_RANK` (values >= PP).

    Order is deterministic: TP, PP, attention-DP, EP, batch, all ascending.
    """
    if max_gpus < 1:
        raise ValueError("max_gpus must be at least 1")
    domain = hardware.scale_up_domain_gpus
    heads = model.num_attention_heads
    uses_attention_dp = model.is_moe or model.attention == "mla"
    experts = model.moe.num_routed_experts if model.moe else 1
    pps = [p for p in _powers_of_two(MAX_PP[phase]) if p <= model.num_layers]
    rows: list[tuple[int, int, int, int, int]] = []
    for tp in _divisors(heads, min(domain, max_gpus)):
        for pp in pps:
            if tp * pp > max_gpus:
                continue
            dp_limit = min(domain // tp, max_gpus // (tp * pp)) if uses_attention_dp else 1
            for dp in _powers_of_two(dp_limit):
                stage = tp * dp
                eps = _divisors(np.gcd(experts, stage), stage) if model.is_moe else [1]
                for ep in eps:
                    for per_rank in _batches_per_rank(phase, pp, isl_tokens):
                        rows.append((tp, pp, ep, dp, per_rank * dp))
    if model.is_moe:
        for dp in _powers_of_two(max_gpus):
            if dp > domain and dp % domain == 0 and experts % dp == 0:
                rows.extend(
                    (1, 1, dp, dp, per_rank * dp) for per_rank in _batches_per_rank(phase, 1, isl_tokens)
                )
    table = np.array(rows, dtype=np.int64).reshape(-1, 5)
    layouts = Layouts.of(*table.T)
    problems = layout_problems(model, hardware, layouts, quantization=quantization)
    ok = np.array([p is None for p in problems], dtype=bool)
    return Layouts.of(
        *(a[ok] for a in (layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, layouts.batch))
    )


# --------------------------------------------------------------------------- pricing


def _price(
    model: ModelSpec,
    hardware: HardwareSpec,
    precision: Precision | QuantizationSpec,
    phase: Phase,
    *,
    isl_tokens: int,
    osl_tokens: int,
    max_gpus: int,
    kv_link_gb_per_s: float,
    calibration: Calibration | None,
    features: ClassFeatures | None = None,
) -> pd.DataFrame:
    """All enumerated rows of a phase priced by the performance model (one call per variant)."""
    features = features or ClassFeatures()
    layouts = enumerate_layouts(
        model,
        hardware,
        phase,
        max_gpus=max_gpus,
        isl_tokens=isl_tokens,
        quantization=resolve(precision, model),
    )
    variants = _variants(phase)
    wide_ep = layouts.ep > 1
    frames = []
    for chunked, speculation in ((c, s) for c in variants for s in features.speculations(phase)):
        for serving in (False, True) if wide_ep.any() else (False,):
            rows = Layouts.of(*(a[wide_ep] for a in _fields(layouts))) if serving else layouts
            rows, chunk_tokens = _with_chunk_sizes(phase, chunked, rows)
            frame = evaluate(
                model,
                hardware,
                precision,
                phase,
                rows,
                isl_tokens,
                osl_tokens,
                calibration=calibration,
                chunked_prefill=chunked,
                kv_link_gb_per_s=kv_link_gb_per_s if phase == "prefill" else None,
                two_batch_overlap=serving,
                eplb=serving,
                prefill_chunk_tokens=chunk_tokens,
                speculation=speculation,
                prefix_cache_hit_fraction=features.prefix_cache_hit_fraction,
                prefix_cache_tokens=features.prefix_cache_tokens,
            )
            frame["chunked_prefill"] = chunked
            frame["two_batch_overlap"] = frame["eplb"] = serving
            frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["phase"] = phase
    frame["requests_per_s_per_gpu"] = frame["requests_per_s"] / frame["gpus"]
    return frame


def chunk_sizes(phase: Phase, chunked_prefill: bool, pp: int) -> tuple[int, ...]:
    """Prompt chunk sizes a layout is priced at: only where the chunk changes the answer."""
    if phase == "prefill" and pp > 1:
        return PIPELINE_CHUNK_TOKENS
    if phase == "aggregated" and chunked_prefill:
        return PIGGYBACK_CHUNK_TOKENS
    return (PREFILL_CHUNK_TOKENS,)


def _chunk_rows(phase: Phase, chunked_prefill: bool, pp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per layout, how many chunk sizes it is priced at, and every row's chunk (layouts in turn).

    :func:`chunk_sizes` depends on PP only through ``pp > 1``: two tuples, picked per layout.
    """
    flat, deep = (np.array(chunk_sizes(phase, chunked_prefill, depth), dtype=np.int64) for depth in (1, 2))
    is_deep = np.asarray(pp) > 1
    repeat = np.where(is_deep, len(deep), len(flat)).astype(np.int64)
    layout = np.repeat(np.arange(len(repeat)), repeat)
    position = np.arange(len(layout)) - (np.cumsum(repeat) - repeat)[layout]
    chunks = np.where(
        is_deep[layout], deep[np.minimum(position, len(deep) - 1)], flat[np.minimum(position, len(flat) - 1)]
    )
    return repeat, chunks


def _with_chunk_sizes(phase: Phase, chunked_prefill: bool, layouts: Layouts) -> tuple[Layouts, np.ndarray]:
    """Each layout repeated once per chunk size it is priced at, with the chunk of each row."""
    repeat, chunks = _chunk_rows(phase, chunked_prefill, layouts.pp)
    return Layouts.of(*(np.repeat(a, repeat) for a in _fields(layouts))), chunks


def _variants(phase: Phase) -> tuple[bool, ...]:
    """Chunked-prefill settings a phase is priced with (aggregated: with and without)."""
    return (True, False) if phase == "aggregated" else (False,)


def priced_rows(
    model: ModelSpec,
    hardware: HardwareSpec,
    phase: Phase,
    *,
    max_gpus: int,
    isl_tokens: int,
    quantization: QuantizationSpec | None = None,
    features: ClassFeatures | None = None,
) -> int:
    """How many rows :func:`candidate_table` will price for a phase, without pricing them (~ms)."""
    layouts = enumerate_layouts(
        model, hardware, phase, max_gpus=max_gpus, isl_tokens=isl_tokens, quantization=quantization
    )
    wide_ep = layouts.ep > 1
    speculations = len((features or ClassFeatures()).speculations(phase))
    rows = 0
    for chunked in _variants(phase):
        per_layout, _ = _chunk_rows(phase, chunked, layouts.pp)
        rows += int(per_layout.sum() + per_layout[wide_ep].sum())
    return rows * speculations


def _fields(layouts: Layouts) -> tuple[np.ndarray, ...]:
    return (layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, layouts.batch)


def _sort_keys(phase: Phase) -> tuple[list[str], list[bool]]:
    """Phase-appropriate row order: prefill by GPUs then TTFT; decode-like by interactivity."""
    layout = list(LAYOUT_COLUMNS)
    if phase == "prefill":
        keys = ["gpus", "ttft_ms", "requests_per_s_per_gpu", *layout]
        ascending = [True, True, False] + [True] * len(layout)
    else:
        keys = ["tokens_per_s_per_user", "output_tokens_per_s_per_gpu", "gpus", *layout]
        ascending = [False, False, True] + [True] * len(layout)
    return keys, ascending


def dominance_criteria(frame: pd.DataFrame, phase: Phase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two higher-is-better criteria and the GPU counts a phase's rows are judged by."""
    gpus = frame["gpus"].to_numpy(dtype=np.int64)
    if phase == "prefill":
        return (
            frame["requests_per_s_per_gpu"].to_numpy(dtype=float),
            -frame["ttft_ms"].to_numpy(dtype=float),
            gpus,
        )
    return (
        frame["tokens_per_s_per_user"].to_numpy(dtype=float),
        frame["output_tokens_per_s_per_gpu"].to_numpy(dtype=float),
        gpus,
    )


def _dominated_by_group(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, *, strict: bool
) -> np.ndarray:
    """For each B: is there an A with ax >= bx and ay >= by (``strict``: and not both equal).

    Sort A by x; a suffix maximum of y over "x at least t" answers each B with one
    binary search. For the non-strict case (A has strictly fewer GPUs) ">= on both"
    suffices; within one GPU count we need "> on x and >= on y" or ">= on x and > on y".
    """
    order = np.argsort(ax, kind="stable")
    sx, sy = ax[order], ay[order]
    # suffix_max[i] = max(sy[i:]); one extra slot of -inf for "no A qualifies".
    suffix_max = np.append(np.maximum.accumulate(sy[::-1])[::-1], -np.inf)
    at_least = suffix_max[np.searchsorted(sx, bx, side="left")]  # A with x >= bx
    if not strict:
        return at_least >= by
    above = suffix_max[np.searchsorted(sx, bx, side="right")]  # A with x > bx
    return (above >= by) | (at_least > by)


SKYLINE_BLOCK = 128
"""Items :func:`skyline` judges among themselves at once."""
SKYLINE_SLICE = 1 << 16
"""Pending items :func:`skyline` tests against the newly kept at once (memory: block x slice booleans)."""


def exact_tie_mask(frame: pd.DataFrame, x: np.ndarray, y: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """Rows equal to an earlier-kept row on ``x``, ``y`` and ``gpus``: all but the lowest-TTFT one.

    Among equals the lowest ``ttft_ms`` stays (decode rows have none: NaN sorts last and ties),
    then the least layout (:data:`LAYOUT_COLUMNS` in order), so the choice is deterministic
    whatever the table's order.
    """
    ttft = frame["ttft_ms"].to_numpy(dtype=float)
    layout = [frame[c].to_numpy() for c in reversed(LAYOUT_COLUMNS)]
    order = np.lexsort((*layout, np.nan_to_num(ttft, nan=np.inf), gpus, y, x))
    same = (np.diff(x[order]) == 0) & (np.diff(y[order]) == 0) & (np.diff(gpus[order]) == 0)
    mask = np.zeros(len(frame), dtype=bool)
    mask[order[1:][same]] = True
    return mask


def mix_non_dominated(frames: list[pd.DataFrame], phase: Phase) -> list[pd.DataFrame]:
    """Each class's rows of the layouts no other layout dominates in *every* class (a traffic mix).

    One instance time-shares its layout between classes, and a plan may use only
    ``layouts_per_pool`` layouts, so a layout may only be dropped for one other layout that
    is at least as good for every class it serves (by :func:`dominance_criteria`, with
    ``gpus`` dividing, and serving every class it serves): then each of its instances can
    be swapped for that layout's copies, class by class, without a new layout. Dominance in
    *some* class is not enough (a layout second-best for two classes can be the only single
    layout serving both well). Exact ties keep the lowest worst-class ``ttft_ms``, then the
    least layout (:data:`LAYOUT_COLUMNS` in order). The same rule prunes per target in
    :meth:`planner.optimize.model.Candidates.at_target` (by :func:`skyline`).
    """
    layout_of = [frame[list(LAYOUT_COLUMNS)].to_numpy(dtype=np.int64) for frame in frames]
    # Layouts in lexicographic order of LAYOUT_COLUMNS: the position is also the tie-break rank.
    layout_id = _row_ids(np.concatenate(layout_of))
    n, classes = int(layout_id.max()) + 1, len(frames)
    ids = np.split(layout_id, np.cumsum([len(f) for f in frames])[:-1])
    criteria = np.full((n, 2 * classes), -np.inf)
    gpus = np.zeros(n, dtype=np.int64)
    worst_ttft = np.zeros(n)
    for k, (frame, at) in enumerate(zip(frames, ids, strict=True)):
        x, y, g = dominance_criteria(frame, phase)
        criteria[at, 2 * k], criteria[at, 2 * k + 1], gpus[at] = x, y, g
        ttft = np.nan_to_num(frame["ttft_ms"].to_numpy(dtype=float), nan=0.0)
        worst_ttft[at] = np.maximum(worst_ttft[at], ttft)
    keep = skyline(criteria, gpus, tie_breaks=(worst_ttft,))
    return [frame[keep[at]] for frame, at in zip(frames, ids, strict=True)]


def _row_ids(rows: np.ndarray) -> np.ndarray:
    """Each row's position among the distinct rows in lexicographic order.

    ``np.unique(axis=0)``'s inverse. Small integer columns are read as the digits of one
    integer key (one sort, several times faster on the ~100,000 rows of a mix); when the
    digits' range would overflow it, one lexsort of the columns.
    """
    low, high = rows.min(axis=0, initial=0), rows.max(axis=0, initial=0)
    radix = (high - low + 1).astype(object)  # Python ints: the product cannot overflow
    if math.prod(radix) < 2**62:
        key = np.zeros(len(rows), dtype=np.int64)
        for column, base, offset in zip(rows.T, radix, low, strict=True):
            key = key * int(base) + (column - offset)
        return np.unique(key, return_inverse=True)[1].reshape(-1)
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    ids = np.empty(len(rows), dtype=np.int64)
    ids[order] = np.concatenate(([0], np.cumsum((ordered[1:] != ordered[:-1]).any(axis=1))))
    return ids


def _dense_rank_sum(criteria: np.ndarray) -> np.ndarray:
    """Sum over the columns of each item's dense rank in that column (equal values, equal rank)."""
    total = np.zeros(len(criteria), dtype=np.int64)
    for column in criteria.T:
        order = np.argsort(column, kind="stable")
        ranks = np.empty(len(column), dtype=np.int64)
        values = column[order]
        ranks[order] = np.concatenate(([0], np.cumsum(values[1:] != values[:-1])))  # -inf == -inf
        total += ranks
    return total


def skyline(criteria: np.ndarray, gpus: np.ndarray, tie_breaks: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Which of ``n`` items no other item dominates: ``criteria`` is ``(n, m)``, higher is better.

    ``a`` dominates ``b`` when ``gpus[a]`` divides ``gpus[b]`` and ``a`` is at least as good on
    every criterion (:func:`mix_non_dominated` says why that lets ``a`` replace ``b``); among exact
    ties the least ``tie_breaks`` (then the least index) stays. A sort-filter skyline: items by
    GPUs, then by rank-sum of the criteria, so an item's dominators come before it. The next
    :data:`SKYLINE_BLOCK` items are judged among themselves (beaten by an earlier one, kept or
    not: dominance is transitive); the ones left are kept, and every item still pending that they
    beat is dropped at once, so the pending items shrink fast.
    """
    n = len(gpus)
    pending = np.lexsort((np.arange(n), *reversed(tie_breaks), -_dense_rank_sum(criteria), gpus))
    keep = np.zeros(n, dtype=bool)
    while len(pending):
        head, pending = pending[:SKYLINE_BLOCK], pending[SKYLINE_BLOCK:]
        earlier = np.arange(len(head))[:, None] < np.arange(len(head))[None, :]
        kept = head[~(_beats(head, head, criteria, gpus) & earlier).any(axis=0)]
        keep[kept] = True
        if len(pending) and len(kept):
            parts = [pending[a : a + SKYLINE_SLICE] for a in range(0, len(pending), SKYLINE_SLICE)]
            beaten = [_beats(kept, part, criteria, gpus).any(axis=0) for part in parts]
            pending = pending[~np.concatenate(beaten)]
    return keep


def _beats(judges: np.ndarray, items: np.ndarray, criteria: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """``[j, i]``: judge ``j`` is as good as item ``i`` on every criterion, on a GPU count dividing."""
    beats = gpus[items][None, :] % gpus[judges][:, None] == 0
    for column in criteria.T:
        beats &= column[judges][:, None] >= column[items][None, :]
    return beats


def dominated_mask(x: np.ndarray, y: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """Which rows another row dominates: >= on x and y, GPU count dividing, one of the three strict.

    ``x`` and ``y`` are higher-is-better and must be finite. Exact: see the module docstring.
    """
    dominated = np.zeros(len(x), dtype=bool)
    counts = np.unique(gpus)
    members = {int(g): np.flatnonzero(gpus == g) for g in counts}
    for g_b, rows_b in members.items():
        for g_a, rows_a in members.items():
            if g_a > g_b or g_b % g_a:
                continue
            pending = rows_b[~dominated[rows_b]]
            if not len(pending):
                break
            hit = _dominated_by_group(x[rows_a], y[rows_a], x[pending], y[pending], strict=g_a == g_b)
            dominated[pending[hit]] = True
    return dominated


# --------------------------------------------------------------------------- the table


def candidate_table(
    model: ModelSpec,
    hardware: HardwareSpec,
    precision: Precision | QuantizationSpec,
    phase: Phase,
    *,
    isl_tokens: int,
    osl_tokens: int,
    ttft_ms_max: float,
    max_gpus: int,
    calibration: Calibration | None = None,
    prune: bool = True,
    derate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    inter_token_gap_ms_max: float | None = None,
    features: ClassFeatures | None = None,
    kv_link_gb_per_s: float | None = None,
) -> pd.DataFrame:
    """The pruned candidate instances of one phase: one row each, ``candidate_id`` 0..n-1.

    ``inter_token_gap_ms_max`` (optional) drops decode and aggregated rows whose worst
    inter-token gap (``worst_inter_token_gap_ms``: a co-located step carrying a prompt
    chunk, or stalled by a prefill) exceeds it; like the TTFT limit it is applied
    before pruning, so the table is exact for its own limits.

    ``kv_link_gb_per_s`` overrides the KV-transfer link chosen below (a mixed fleet ships KV
    between GPU types over the scale-out network).

    ``features`` (:class:`~planner.class_features.ClassFeatures`) price the class's
    speculative-decoding choices (one row per draft-token count) and prefix cache.

    ``prune=False`` keeps the dominated rows (the whole feasible cloud, e.g. for plots);
    the MIP wants the default. ``precision`` is a precision word or a
    :class:`~planner.specs.QuantizationSpec` (a block-scaled weight format removes the
    layouts whose shards would cut a block). ``derate`` (e.g.
    :func:`planner.queueing.derate_candidates`) rescales the rows meeting the TTFT limit
    before they are pruned (queueing headroom).

    Columns are :data:`COLUMNS`; ``frame.attrs["funnel"]`` holds the :class:`Funnel`
    counts as a dict, and ``frame.attrs`` also records the question (model,
    hardware, precision, phase, ISL, OSL, TTFT limit, GPU budget, KV link).

    Raises :class:`~planner.errors.InfeasibleError` when no row fits in memory, or
    none meets the TTFT limit, with what would make the question feasible.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    kv_link = kv_link_gb_per_s or (
        hardware.scale_up_bandwidth_gb_per_s
        if max_gpus <= hardware.scale_up_domain_gpus
        else hardware.scale_out_bandwidth_gb_per_s
    )
    question = {
        "model": model.name,
        "hardware": hardware.name,
        "precision": resolve(precision).activations,
        "phase": phase,
        "isl_tokens": isl_tokens,
        "osl_tokens": osl_tokens,
        "ttft_ms_max": ttft_ms_max,
        "max_gpus": max_gpus,
        "kv_link_gb_per_s": kv_link,
    }

    def price(budget: int) -> pd.DataFrame:
        return _price(
            model,
            hardware,
            precision,
            phase,
            isl_tokens=isl_tokens,
            osl_tokens=osl_tokens,
            max_gpus=budget,
            kv_link_gb_per_s=kv_link,
            calibration=calibration,
            features=features,
        )

    # The largest instance the grid can produce: a full scale-up domain per stage x the deepest PP.
    largest = hardware.scale_up_domain_gpus * MAX_PP[phase]
    frame = price(max_gpus)
    evaluated = len(frame)
    fits = frame["fits"].to_numpy(dtype=bool)
    if not fits.any():
        raise InfeasibleError(_memory_message(question, largest, price))
    frame = frame[fits]
    if phase != "decode":
        meets = frame["ttft_ms"].to_numpy(dtype=float) <= ttft_ms_max
        if not meets.any():
            raise InfeasibleError(_ttft_message(question, frame, largest, price))
        frame = frame[meets]
    if inter_token_gap_ms_max is not None and phase != "prefill":
        gaps = frame["worst_inter_token_gap_ms"].to_numpy(dtype=float)
        if not (gaps <= inter_token_gap_ms_max).any():
            raise InfeasibleError(
                f"no {phase} layout of {model.name} on {hardware.name} with up to {_gpus(max_gpus)} keeps "
                f"every inter-token gap within slo.inter_token_gap_ms_max = {inter_token_gap_ms_max:g} ms: "
                f"the smallest worst gap is {gaps.min():.2f} ms; raise the limit to at least "
                f"{np.ceil(gaps.min() * 10) / 10:g}"
            )
        frame = frame[gaps <= inter_token_gap_ms_max]
    if derate is not None:
        frame = derate(frame)
        if frame.empty:
            raise InfeasibleError(
                f"no {phase} layout meets slo.ttft_ms_max = {ttft_ms_max:g} ms at its TTFT percentile with "
                "any load; raise slo.ttft_ms_max or lower slo.ttft_percentile"
            )
    meet_ttft = len(frame)

    x, y, gpus = dominance_criteria(frame, phase)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        bad = frame[~(np.isfinite(x) & np.isfinite(y))].iloc[0]
        raise RuntimeError(
            f"planner.perf returned a non-finite rate or latency for a fitting {phase} layout "
            f"(TP{bad.tp} PP{bad.pp} EP{bad.ep} DP{bad.attention_dp} batch {bad.batch}); this is a bug"
        )
    if prune:
        kept = ~dominated_mask(x, y, gpus)
        frame, x, y, gpus = frame[kept], x[kept], y[kept], gpus[kept]
        frame = frame[~exact_tie_mask(frame, x, y, gpus)]

    keys, ascending = _sort_keys(phase)
    frame = frame.sort_values(keys, ascending=ascending, kind="mergesort").reset_index(drop=True)
    frame["candidate_id"] = np.arange(len(frame), dtype=np.int64)
    frame = frame.loc[:, list(COLUMNS)]
    funnel = Funnel(evaluated, int(fits.sum()), meet_ttft, len(frame))
    frame.attrs.update(question)
    frame.attrs["funnel"] = {
        "evaluated": funnel.evaluated,
        "fit_memory": funnel.fit_memory,
        "meet_ttft": funnel.meet_ttft,
        "non_dominated": funnel.non_dominated,
    }
    return frame


# --------------------------------------------------------------------------- infeasibility


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def _memory_message(question: dict, largest: int, price) -> str:
    """No row fits: find the smallest instance in the (unbounded-budget) grid that would."""
    where = (
        f"no {question['phase']} layout of {question['model']} ({question['precision']}) fits in "
        f"memory on {question['hardware']} with up to {_gpus(question['max_gpus'])}"
    )
    if largest > question["max_gpus"]:
        wider = price(largest)
        wider = wider[wider["fits"]]
        if len(wider):
            best = wider.sort_values(["gpus", "memory_per_gpu_gb"], kind="mergesort").iloc[0]
            return (
                f"{where}; the smallest layout that fits needs {int(best.gpus)} GPUs "
                f"(TP{best.tp} PP{best.pp} EP{best.ep} attention-DP{best.attention_dp}, "
                f"{best.memory_per_gpu_gb:.1f} GB per GPU): raise cluster.max_gpus (or max_nodes) "
                f"to at least {int(best.gpus)} GPUs, or use a lower precision"
            )
    return (
        f"{where}, and none would with any budget in the layout grid (up to {largest} GPUs per "
        "instance); use a lower precision or a GPU with more memory"
    )


def _ttft_message(question: dict, fitting: pd.DataFrame, largest: int, price) -> str:
    """Rows fit but none meets the TTFT limit: the smallest reachable TTFT, within and beyond budget."""
    best = fitting.loc[fitting["ttft_ms"].idxmin()]
    limit = question["ttft_ms_max"]
    message = (
        f"no {question['phase']} layout of {question['model']} on {question['hardware']} with up to "
        f"{_gpus(question['max_gpus'])} meets slo.ttft_ms_max = {limit:g} ms: the fastest fitting layout "
        f"(TP{best.tp} PP{best.pp} EP{best.ep} attention-DP{best.attention_dp}, batch {best.batch}) "
        f"takes {best.ttft_ms:.2f} ms; raise slo.ttft_ms_max to at least {np.ceil(best.ttft_ms * 10) / 10:g}"
    )
    if largest > question["max_gpus"]:
        wider = price(largest)
        wider = wider[wider["fits"] & (wider["ttft_ms"] <= limit)]
        if len(wider):
            message += f", or raise cluster.max_gpus to at least {int(wider['gpus'].min())}"
    return message
