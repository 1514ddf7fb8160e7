"""Analytic, vectorized roofline model of one serving instance (docs/DESIGN.md §2).

Entry point: :func:`evaluate` prices N layouts of one model on one GPU type in
one numpy call and returns a tidy frame, one row per layout. The parts:
:mod:`~planner.perf.architecture` (parameters, FLOPs, KV bytes of a model),
:mod:`~planner.perf.layout` (TP/PP/EP/attention-DP layouts and their rules),
:mod:`~planner.perf.calibration` (achievable fractions of peak),
:mod:`~planner.perf.step` (one forward pass), :mod:`~planner.perf.memory`
(feasibility), :mod:`~planner.perf.serving` (two-batch overlap, EPLB) and
:mod:`~planner.perf.phases` (prefill, decode, aggregated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.architecture import Architecture
from planner.perf.calibration import Calibration, EfficiencyBlock, load_calibration
from planner.perf.context import PerfContext
from planner.perf.layout import Layouts, check_layout, layout_problems
from planner.perf.phases import PREFILL_CHUNK_TOKENS, PhaseMetrics, aggregated, decode, prefill
from planner.perf.prefix_cache import cached_prompt_tokens
from planner.perf.serving import ServingOptions
from planner.perf.speculative import Speculation
from planner.specs import HardwareSpec, ModelSpec, Phase, Precision, QuantizationSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Architecture",
    "Calibration",
    "EfficiencyBlock",
    "Layouts",
    "PerfContext",
    "PhaseMetrics",
    "ServingOptions",
    "Speculation",
    "aggregated",
    "check_layout",
    "decode",
    "evaluate",
    "layout_problems",
    "load_calibration",
    "prefill",
]


def evaluate(
    model: ModelSpec,
    hardware: HardwareSpec,
    precision: Precision | QuantizationSpec,
    phase: Phase,
    layouts: Layouts,
    isl_tokens: ArrayLike,
    osl_tokens: ArrayLike,
    *,
    calibration: Calibration | None = None,
    chunked_prefill: bool = True,
    kv_link_gb_per_s: float | None = None,
    two_batch_overlap: ArrayLike = False,
    eplb: ArrayLike = False,
    prefill_chunk_tokens: ArrayLike = PREFILL_CHUNK_TOKENS,
    speculation: Speculation | None = None,
    prefix_cache_hit_fraction: float = 0.0,
    prefix_cache_tokens: float = 0.0,
) -> pd.DataFrame:
    """Predict what one instance of each layout does; one row per layout.

    ``precision`` is a precision word (its default formats) or a
    :class:`~planner.specs.QuantizationSpec` (weight format, GEMM precision, KV dtype).
    ``two_batch_overlap`` and ``eplb`` (scalars or one per layout, off by default) are
    the serving options of :mod:`~planner.perf.serving`. ``prefill_chunk_tokens`` (scalar
    or one per layout) is the prompt chunk: per pipeline pass in chunked pipeline prefill
    (prefill with PP > 1), per rank and step when co-located serving piggybacks prompts.
    ``speculation`` (decode and aggregated) drafts tokens per step
    (:mod:`~planner.perf.speculative`); a prefix-cache hit rate skips that share of each
    prompt, whose cache holds ``prefix_cache_tokens`` on every instance
    (:mod:`~planner.perf.prefix_cache`).
    Layouts that break a model or hardware rule raise :class:`~planner.errors.LayoutError`;
    layouts that run out of memory are kept with ``fits = False``.
    """
    ctx = PerfContext.build(model, hardware, precision, calibration)
    options = ServingOptions.of(len(layouts), two_batch_overlap, eplb)
    check_layout(model, hardware, layouts, eplb=options.eplb, quantization=ctx.quantization)
    cached = cached_prompt_tokens(isl_tokens, prefix_cache_hit_fraction)
    cache = {"prefix_cache_tokens": prefix_cache_tokens}
    if phase == "prefill":
        link = kv_link_gb_per_s * 1e9 if kv_link_gb_per_s else None
        metrics = prefill(
            ctx,
            layouts,
            isl_tokens,
            osl_tokens,
            kv_link_bytes_per_s=link,
            chunk_tokens=prefill_chunk_tokens,
            options=options,
            cached_tokens=cached,
            **cache,
        )
    elif phase == "decode":
        metrics = decode(
            ctx, layouts, isl_tokens, osl_tokens, options=options, speculation=speculation, **cache
        )
    else:
        metrics = aggregated(
            ctx,
            layouts,
            isl_tokens,
            osl_tokens,
            chunked_prefill=chunked_prefill,
            options=options,
            chunk_tokens=prefill_chunk_tokens,
            speculation=speculation,
            cached_tokens=cached,
            **cache,
        )
    import pandas as pd  # imported when used: listing models and --help stay light

    frame = pd.DataFrame(
        {
            "tp": layouts.tp,
            "pp": layouts.pp,
            "ep": layouts.ep,
            "attention_dp": layouts.attention_dp,
            "batch": layouts.batch,
            "isl_tokens": np.broadcast_to(np.asarray(isl_tokens), (len(layouts),)),
            "osl_tokens": np.broadcast_to(np.asarray(osl_tokens), (len(layouts),)),
            "prefill_chunk_tokens": np.broadcast_to(np.asarray(prefill_chunk_tokens), (len(layouts),)),
            **metrics.as_dict(),
        }
    )
    frame["gpus"] = frame["gpus"].astype(int)
    frame["draft_tokens"] = 0 if speculation is None or phase == "prefill" else speculation.draft_tokens
    frame["calibration_block"] = ctx.calibration_key
    return frame
