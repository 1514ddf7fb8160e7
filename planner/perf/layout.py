"""Parallel layouts of one serving instance, as arrays, and the rules that make them runnable.

Convention (docs/DESIGN.md §2): GPUs per instance = TP x PP x attention-DP. Attention
data-parallel ranks each hold their own requests; a MoE layer spreads its
experts over EP of the TP x attention-DP GPUs of a pipeline stage, and splits
each expert over the remaining (TP x attention-DP) / EP GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from planner.errors import LayoutError
from planner.perf.quantization import block_problems
from planner.specs import HardwareSpec, ModelSpec, QuantizationSpec


@dataclass(frozen=True)
class Layouts:
    """N layouts side by side: every field is an int array of the same length."""

    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    attention_dp: np.ndarray
    batch: np.ndarray

    @classmethod
    def of(
        cls,
        tp: ArrayLike = 1,
        pp: ArrayLike = 1,
        ep: ArrayLike = 1,
        attention_dp: ArrayLike = 1,
        batch: ArrayLike = 1,
    ) -> Layouts:
        """Broadcast scalars or arrays into one set of layouts."""
        arrays = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in (tp, pp, ep, attention_dp, batch))
        )
        return cls(*(np.ascontiguousarray(a) for a in arrays))

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @property
    def gpus_per_stage(self) -> np.ndarray:
        """GPUs in one pipeline stage (TP x attention-DP)."""
        return self.tp * self.attention_dp

    @property
    def gpus(self) -> np.ndarray:
        """GPUs in one instance (TP x PP x attention-DP)."""
        return self.tp * self.pp * self.attention_dp

    @property
    def expert_tp(self) -> np.ndarray:
        """How many GPUs share one expert's weights within a stage ((TP x DP) / EP)."""
        return self.gpus_per_stage // self.ep


def layout_problems(
    model: ModelSpec,
    hardware: HardwareSpec,
    layouts: Layouts,
    *,
    eplb: ArrayLike = False,
    quantization: QuantizationSpec | None = None,
) -> list[str | None]:
    """Why each layout cannot run (one message with its fix), or None where it can.

    With ``eplb`` (per layout) EP need not divide the experts: redundant copies fill
    every rank's share (:func:`~planner.perf.serving.expert_slots_per_gpu`). With a
    block-scaled weight format (``quantization``) every shard must hold whole blocks
    (:func:`~planner.perf.quantization.block_problems`).
    Vectorized checks are evaluated once; the message is built only for rows that fail.
    """
    heads = model.num_attention_heads
    kv_heads = model.num_kv_heads
    experts = model.moe.num_routed_experts if model.moe else 1
    tp, pp, ep, dp, batch = layouts.tp, layouts.pp, layouts.ep, layouts.attention_dp, layouts.batch
    stage = layouts.gpus_per_stage
    balanced = np.broadcast_to(np.asarray(eplb, dtype=bool), tp.shape)
    checks: list[tuple[np.ndarray, object]] = [
        (
            (tp < 1) | (pp < 1) | (ep < 1) | (dp < 1) | (batch < 1),
            lambda i: "TP, PP, EP, attention-DP and batch must all be at least 1",
        ),
        (
            heads % np.maximum(tp, 1) != 0,
            lambda i: (
                f"TP={tp[i]} does not divide the {heads} attention heads of {model.name}; "
                f"use TP in {_divisors(heads)}"
            ),
        ),
        (
            (model.attention == "gqa")
            & (np.maximum(tp, 1) % kv_heads != 0)
            & (kv_heads % np.maximum(tp, 1) != 0),
            lambda i: (
                f"TP={tp[i]} and the {kv_heads} KV heads of {model.name} do not divide one "
                f"another; use TP in {_divisors(heads)} that divides or is a multiple of {kv_heads}"
            ),
        ),
        (
            pp > model.num_layers,
            lambda i: f"PP={pp[i]} exceeds the {model.num_layers} layers of {model.name}; lower PP",
        ),
        (
            (model.moe is None) & (ep != 1),
            lambda i: f"EP={ep[i]} needs a mixture-of-experts model, and {model.name} is dense; use EP=1",
        ),
        (
            (experts % np.maximum(ep, 1) != 0) & ~balanced,
            lambda i: (
                f"EP={ep[i]} does not divide the {experts} experts of {model.name}; "
                f"use EP in {_divisors(experts)}, or EPLB (redundant experts fill every rank)"
            ),
        ),
        (
            (ep > stage) | (stage % np.maximum(ep, 1) != 0),
            lambda i: (
                f"EP={ep[i]} must divide TP x attention-DP = {stage[i]} GPUs of a stage "
                "(the expert group is larger than the instance); raise TP or attention-DP, or lower EP"
            ),
        ),
        (
            batch < dp,
            lambda i: (
                f"batch={batch[i]} leaves attention-DP ranks idle (DP={dp[i]}); "
                "use a batch of at least attention-DP"
            ),
        ),
    ]
    if quantization is not None:
        cuts, reasons = block_problems(model, quantization, tp, np.maximum(stage // np.maximum(ep, 1), 1))
        checks.append((cuts, lambda i: reasons[i]))
    problems: list[str | None] = [None] * len(layouts)
    for failed, message in checks:
        for i in np.flatnonzero(failed):
            if problems[i] is None:
                problems[i] = message(i)  # type: ignore[operator]
    _ = hardware  # groups wider than the scale-up domain are legal: they pay scale-out bandwidth
    return problems


def check_layout(
    model: ModelSpec,
    hardware: HardwareSpec,
    layouts: Layouts,
    *,
    eplb: ArrayLike = False,
    quantization: QuantizationSpec | None = None,
) -> None:
    """Raise a LayoutError for the first layout that cannot run."""
    for problem in layout_problems(model, hardware, layouts, eplb=eplb, quantization=quantization):
        if problem:
            raise LayoutError(problem, field="layout")


def _divisors(n: int) -> str:
    small = [d for d in range(1, min(n, 512) + 1) if n % d == 0]
    return "{" + ", ".join(str(d) for d in small) + "}"
