"""Numbers as a person reads them: plurals, byte sizes with their unit, GPU memory in GB and GiB.

Spec and CSV values keep their SI units in their names (``hbm_capacity_gb`` is 1e9
bytes); these helpers only shape the text the terminal shows.
"""

from __future__ import annotations

GB = 1e9
"""Bytes per GB (SI), the unit of every ``*_gb`` field."""
GIB = 2**30
"""Bytes per GiB, the unit GPU datasheets round their capacities in."""

_SI_BYTES = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``1 GPU``, ``2 GPUs``, ``1 solve``, ``0 solves`` (counts with thousands separators)."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"


def bytes_text(count: float) -> str:
    """``2_621_440`` -> ``2.62 MB`` (SI units, as every ``*_gb`` column); below 1 kB in bytes."""
    for scale, unit in _SI_BYTES:
        if abs(count) >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def memory_text(capacity_gb: float) -> str:
    """GPU memory both ways, e.g. H100's 85.5 GB (1e9 B) -> ``79.6 GiB (85.5 GB)``.

    Datasheets quote GiB-based capacities ("80 GB" for H100); the specs store SI GB
    (85.5 for H100, see its hardware YAML) so that every ``*_gb`` value in the planner
    means the same thing.
    """
    return f"{capacity_gb * GB / GIB:.1f} GiB ({capacity_gb:.1f} GB)"
