"""Serving options of a layout that change what a pass costs but not the layout's shape.

Engines that run wide expert parallelism (SGLang, DeepSeek's own) switch on two
things the layout alone does not say:

- **two-batch overlap** (TBO): each forward pass is split into two micro-batches so
  that one's EP dispatch/combine crosses the links while the other computes;
- **EPLB** (expert-parallel load balancing): redundant copies of the hottest experts
  are placed so every GPU gets about the same share of token-expert pairs, which
  removes the static skew of expert popularity (what remains is the spread of
  routing within one batch), and lets EP exceed a divisor of the expert count.

Both are off unless asked for, per layout; the physics lives in
:mod:`~planner.perf.step` and :mod:`~planner.perf.memory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

EPLB_REDUNDANT_EXPERT_FRACTION = 1 / 8
"""Extra expert copies EPLB places, as a fraction of the routed experts.

DeepSeek-V3's deployment and SGLang's EP32/EP72 runs add 32 copies to 256 experts;
the slots are then rounded up so every EP rank holds the same number.
"""


@dataclass(frozen=True)
class ServingOptions:
    """Per-layout switches: every field is a bool array as long as the layouts."""

    two_batch_overlap: np.ndarray
    eplb: np.ndarray

    @classmethod
    def of(cls, n: int, two_batch_overlap: ArrayLike = False, eplb: ArrayLike = False) -> ServingOptions:
        """Broadcast scalars or arrays to ``n`` layouts."""
        tbo, balanced = (
            np.broadcast_to(np.asarray(v, dtype=bool), (n,)).copy() for v in (two_batch_overlap, eplb)
        )
        return cls(tbo, balanced)

    def __len__(self) -> int:
        return int(self.two_batch_overlap.shape[0])


def expert_slots_per_gpu(num_experts: int, ep: ArrayLike, eplb: ArrayLike) -> np.ndarray:
    """Expert copies one EP rank holds per MoE layer.

    E / EP without EPLB; with it, the routed experts plus the redundant copies,
    rounded up to a whole number per rank.
    """
    ep = np.asarray(ep, dtype=float)
    slots = num_experts + math.ceil(num_experts * EPLB_REDUNDANT_EXPERT_FRACTION)
    balanced = np.ceil(slots / ep - 1e-9)
    return np.where(np.asarray(eplb, dtype=bool) & (ep > 1), balanced, num_experts / ep)
