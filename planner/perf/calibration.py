"""The calibration block: every achievable-fraction constant of the performance model, in one place.

Datasheet peaks live in :class:`~planner.specs.HardwareSpec`; what real
software achieves of them lives here, one :class:`EfficiencyBlock` per hardware
generation and precision (``hopper/fp8``). The shipped defaults
(``calibration_defaults.yaml`` beside this module) are fitted to
``reference/measurements.csv`` by ``disagg calibrate``; users pass their own
file with ``--calibration``. Bounds are the physically meaningful ranges the
fit is held to.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator

from planner.catalog import load_spec
from planner.specs import HardwareSpec, Precision, SpecModel

DEFAULTS_PATH = Path(__file__).with_name("calibration_defaults.yaml")


class EfficiencyBlock(SpecModel):
    """Achieved fractions of peak and fixed costs for one hardware generation at one precision."""

    gemm_efficiency_fraction: float = Field(default=0.7, ge=0.1, le=1.0)
    """Fraction of peak tensor FLOP/s reached by large GEMMs."""
    gemm_half_saturation_tokens: float = Field(default=128.0, ge=1.0, le=16384.0)
    """GEMM rows (tokens) at which efficiency reaches half of its large-GEMM value."""
    attention_efficiency_fraction: float = Field(default=0.5, ge=0.05, le=1.0)
    """Fraction of peak FLOP/s reached by attention kernels (prefill scores and values)."""
    memory_efficiency_fraction: float = Field(default=0.8, ge=0.3, le=1.0)
    """Fraction of peak HBM bandwidth reached by weight and KV-cache streaming."""
    collective_efficiency_fraction: float = Field(default=0.7, ge=0.1, le=1.0)
    """Fraction of link bandwidth reached by all-reduce, all-to-all and point-to-point transfers."""
    collective_latency_us: float = Field(default=8.0, ge=0.5, le=200.0)
    """Fixed latency of one step of a one-shot/two-shot all-reduce or an all-gather inside a
    scale-up domain, microseconds (:mod:`~planner.perf.collectives`; fitted per generation to
    ``reference/collectives.csv``)."""
    nvls_latency_us: float = Field(default=8.0, ge=0.5, le=200.0)
    """Fixed latency of one in-switch (NVLink SHARP) all-reduce, microseconds; fitted to the
    NVLS rows of ``reference/collectives.csv`` (vLLM symm_mem_multimem on H100 and B200)."""
    scale_out_latency_us: float = Field(default=25.0, ge=1.0, le=500.0)
    """Fixed latency of one collective step across the scale-out network, microseconds."""
    scale_out_efficiency_fraction: float = Field(default=0.878, ge=0.1, le=1.0)
    """Fraction of the NIC bandwidth reached by transfers across scale-up domains; default: the
    fit to DeepEP's low-latency all-to-all on H800 + CX7 400 Gb/s, EP8-EP256
    (``reference/collectives.csv``)."""
    ep_low_latency_us: float = Field(default=31.6, ge=0.5, le=500.0)
    """Fixed latency of one low-latency EP dispatch or combine across scale-up domains (DeepEP
    low-latency kernels: direct RDMA sends), microseconds; default: the fit to DeepEP's H800
    table in ``reference/collectives.csv``. Inside one domain the scale-up step latency applies."""
    ep_normal_latency_us: float = Field(default=25.0, ge=0.5, le=2000.0)
    """Fixed latency of one normal (high-throughput) EP dispatch or combine, which waits on the
    CPU for the received counts and forwards across domains once per node, microseconds;
    default: one scale-out step (``scale_out_latency_us``), not fitted (no public timing)."""
    step_overhead_ms: float = Field(default=3.0, ge=0.0, le=100.0)
    """Fixed cost of one forward step (scheduling, launches, sampling), milliseconds."""
    layer_overhead_us: float = Field(default=0.0, ge=0.0, le=1000.0)
    """Fixed time per transformer layer per forward pass (kernel launch gaps and minimum kernel
    durations that no roofline sees), microseconds; what keeps batch-1 decode of a deep model
    above its bytes over bandwidth. Default 0 (not modelled); ``disagg calibrate`` fits it, and a
    latency row (TPOT at small batch) identifies it."""
    ep_normal_compute_slowdown_ratio: float = Field(default=132 / (132 - 24), ge=1.0, le=4.0)
    """How much longer compute takes while normal-mode EP kernels run beside it under two-batch
    overlap, because they occupy SMs; default: DeepEP's example reserves 24 of an H800's 132 SMs
    for them (132 / 108). Low-latency kernels receive through hooks and occupy none."""
    grouped_gemm_efficiency_fraction: float = Field(default=0.7, ge=0.1, le=1.0)
    """Fraction of peak FLOP/s a grouped (per-expert) GEMM reaches with many rows per expert;
    default: the dense GEMM default, until ``disagg calibrate`` fits it to MoE rows."""
    grouped_gemm_half_saturation_tokens: float = Field(default=128.0, ge=1.0, le=16384.0)
    """Rows per active expert at which the grouped GEMM reaches half its large-GEMM efficiency;
    default: the dense GEMM default, until fitted."""
    moe_load_imbalance_ratio: float = Field(default=1.3, ge=1.0, le=4.0)
    """Busiest GPU's expert load over the mean from uneven expert popularity, without EPLB
    (1 = equally popular experts); the model adds the sampling spread of small batches."""
    attention_dp_balance_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """How evenly co-located prefill work is spread over attention-DP ranks (1 = perfectly)."""
    usable_memory_fraction: float = Field(default=0.9, ge=0.5, le=0.99)
    """Fraction of HBM the serving engine may fill with weights, KV cache and workspace."""
    workspace_gb: float = Field(default=3.0, ge=0.0, le=64.0)
    """Fixed per-GPU memory for runtime, CUDA graphs and communication buffers, GB."""


class Calibration(SpecModel):
    """Efficiency blocks keyed ``generation/precision``, with a fallback for unlisted combinations."""

    source: str = Field(min_length=1)
    """How these values were obtained (fit and data set, or the user's benchmark)."""
    default: EfficiencyBlock = EfficiencyBlock()
    """Block used when neither ``generation/precision`` nor the generation has one."""
    blocks: dict[str, EfficiencyBlock] = Field(default_factory=dict)
    """Blocks per ``generation/precision`` key, e.g. ``hopper/fp8``."""
    rows_per_block: dict[str, int] = Field(default_factory=dict)
    """Measured rows each block was fitted on (written by ``disagg calibrate``); absent = none."""

    @model_validator(mode="after")
    def _keys_well_formed(self) -> Calibration:
        for key in self.blocks:
            generation, _, precision = key.partition("/")
            if not generation or precision not in ("bf16", "fp8", "fp4"):
                raise ValueError(
                    f"block key '{key}' must read 'generation/precision' with precision bf16, fp8 or fp4"
                )
        return self

    def block_key(self, hardware: HardwareSpec, precision: Precision) -> str:
        """Which block applies: exact key, else the generation's or its family's block, else ``default``.

        The family of ``blackwell_ultra`` is ``blackwell``; the same precision is preferred.
        """
        exact = f"{hardware.generation}/{precision}"
        if exact in self.blocks:
            return exact
        family = hardware.generation.split("_")[0]
        for prefix in (f"{hardware.generation}/", family):
            related = sorted(k for k in self.blocks if k.startswith(prefix))
            exact_precision = [k for k in related if k.endswith(f"/{precision}")]
            if related:
                return (exact_precision or related)[0]
        return "default"

    def block_for(self, hardware: HardwareSpec, precision: Precision) -> EfficiencyBlock:
        """The efficiency block for one GPU type and precision."""
        key = self.block_key(hardware, precision)
        return self.default if key == "default" else self.blocks[key]


def ideal_block() -> EfficiencyBlock:
    """Every fraction at its physical limit and every overhead at its floor: the roofline ceiling."""
    bounds = {name: (field.metadata, field.default) for name, field in EfficiencyBlock.model_fields.items()}
    values = {}
    for name, (metadata, _) in bounds.items():
        lower = next((getattr(m, "ge", None) for m in metadata if getattr(m, "ge", None) is not None), None)
        upper = next((getattr(m, "le", None) for m in metadata if getattr(m, "le", None) is not None), None)
        floor_is_best = name.endswith(("_us", "_ms", "_gb", "_ratio", "_tokens"))
        values[name] = lower if floor_is_best else upper
    return EfficiencyBlock(**values)


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The shipped defaults, or a user's calibration file.

    A run prices several tables with one file: it is parsed once per content version
    (path, modification time and size), since a :class:`Calibration` is frozen.
    """
    path = path or DEFAULTS_PATH
    try:
        stat = Path(path).stat()
    except OSError:
        return load_spec(path, Calibration)  # which reports the missing file
    return _load_calibration(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_calibration(path: str, _mtime_ns: int, _size: int) -> Calibration:
    return load_spec(path, Calibration)
