"""Everything the phase models need about one (model, hardware, precision, calibration) combination.

Built once per question and shared by the prefill, decode and aggregated models,
so hardware peaks and efficiency fractions are turned into per-second rates in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.catalog import check_precision_supported
from planner.perf.architecture import Architecture
from planner.perf.calibration import Calibration, EfficiencyBlock, load_calibration
from planner.specs import HardwareSpec, ModelSpec, Precision, QuantizationSpec

GB = 1e9
TFLOP = 1e12


@dataclass(frozen=True)
class PerfContext:
    """A model on a GPU type at a precision, with the efficiency block that applies."""

    arch: Architecture
    hardware: HardwareSpec
    precision: Precision
    efficiency: EfficiencyBlock
    calibration_key: str

    @classmethod
    def build(
        cls,
        model: ModelSpec,
        hardware: HardwareSpec,
        precision: Precision | QuantizationSpec,
        calibration: Calibration | None = None,
    ) -> PerfContext:
        """Check the GEMM precision is supported and pick the calibration block.

        ``precision`` is a precision word (its default formats) or a full
        :class:`~planner.specs.QuantizationSpec`; the GEMM precision keys the block.
        """
        arch = Architecture.from_spec(model, precision)
        precision = arch.precision
        check_precision_supported(hardware, precision)
        calibration = calibration or load_calibration()
        return cls(
            arch=arch,
            hardware=hardware,
            precision=precision,
            efficiency=calibration.block_for(hardware, precision),
            calibration_key=calibration.block_key(hardware, precision),
        )

    @property
    def quantization(self) -> QuantizationSpec:
        """Weight format, GEMM precision and KV-cache dtype, every field resolved."""
        return self.arch.quantization

    @property
    def model(self) -> ModelSpec:
        """The model spec."""
        return self.arch.model

    @property
    def peak_flops_per_s(self) -> float:
        """Datasheet dense GEMM throughput at the deployment precision, FLOP/s."""
        return float(self.hardware.peak_tflops_per_s(self.precision)) * TFLOP

    @property
    def attention_peak_flops_per_s(self) -> float:
        """Peak for attention math: bf16 kernels with a bf16 cache, fp8 otherwise, FLOP/s."""
        kernel_precision = "bf16" if self.arch.quantization.kv_cache == "bf16" else "fp8"
        peak = self.hardware.peak_tflops_per_s(kernel_precision) or self.hardware.bf16_dense_tflops_per_s
        return float(peak) * TFLOP

    @property
    def hbm_bytes_per_s(self) -> float:
        """Datasheet HBM bandwidth, bytes/s."""
        return self.hardware.hbm_bandwidth_gb_per_s * GB

    @property
    def usable_memory_bytes(self) -> float:
        """HBM the engine may fill, bytes."""
        return self.hardware.hbm_capacity_gb * GB * self.efficiency.usable_memory_fraction

    def link_bytes_per_s(self, span_gpus: np.ndarray) -> np.ndarray:
        """Per-GPU link bandwidth for a group spanning that many GPUs: scale-up inside a domain."""
        hw = self.hardware
        inside = np.asarray(span_gpus) <= hw.scale_up_domain_gpus
        return np.where(inside, hw.scale_up_bandwidth_gb_per_s, hw.scale_out_bandwidth_gb_per_s) * GB

    def link_latency_s(self, span_gpus: np.ndarray) -> np.ndarray:
        """Fixed latency of one collective step for a group spanning that many GPUs, seconds."""
        inside = np.asarray(span_gpus) <= self.hardware.scale_up_domain_gpus
        eff = self.efficiency
        return np.where(inside, eff.collective_latency_us, eff.scale_out_latency_us) * 1e-6
