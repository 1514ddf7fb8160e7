"""What a request class changes in how its instances are priced: speculative decoding and prefix caching.

Why it exists
    Both depend on the traffic, not on the layout: how often a class's draft tokens
    are accepted (code more than chat) and how much of its prompts a prefix cache
    already holds. The candidate table prices each class with its own features; the
    draft-token count is a layout choice the optimizer makes, so decode and
    aggregated rows are priced once per count in ``speculation.draft_tokens``
    (only the count 0 for a class without an acceptance rate).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.perf.prefix_cache import resident_prefix_tokens
from planner.perf.speculative import Speculation
from planner.specs import Instance, Phase, RequestClass


@dataclass(frozen=True)
class ClassFeatures:
    """Speculative-decoding choices and prefix cache of one request class."""

    draft_tokens: tuple[int, ...] = (0,)
    """Draft-token counts a decode layout may use (0 = no speculation)."""
    acceptance_fraction: float | None = None
    """Chance each draft token is accepted; None: the class does not speculate."""
    num_draft_layers: int = 1
    """Layers one draft token runs through."""
    prefix_cache_hit_fraction: float = 0.0
    """Share of each prompt served from the prefix cache."""
    prefix_cache_tokens: float = 0.0
    """Cached prefix tokens every instance serving the class holds."""

    @classmethod
    def of(cls, instance: Instance, request_class: RequestClass) -> ClassFeatures:
        """The features an instance gives one of its request classes."""
        alpha = request_class.draft_acceptance_fraction
        hit = request_class.prefix_cache_hit_fraction
        return cls(
            draft_tokens=tuple(instance.speculation.draft_tokens) if alpha is not None else (0,),
            acceptance_fraction=alpha,
            num_draft_layers=instance.speculation.num_draft_layers,
            prefix_cache_hit_fraction=hit,
            prefix_cache_tokens=resident_prefix_tokens(
                request_class.isl_tokens, hit, request_class.prefix_cache_tokens
            ),
        )

    def speculations(self, phase: Phase) -> tuple[Speculation | None, ...]:
        """One entry per way a layout of ``phase`` is priced (None: without speculation)."""
        if phase == "prefill" or self.acceptance_fraction is None:
            return (None,)
        return tuple(
            None if k == 0 else Speculation(k, self.acceptance_fraction, self.num_draft_layers)
            for k in self.draft_tokens
        )
