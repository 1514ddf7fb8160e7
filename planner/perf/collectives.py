"""Collective communication per fabric: how long an all-reduce, all-gather or reduce-scatter takes.

Every term is a latency plus a bandwidth term, t = steps x latency + bytes on the
busiest GPU's link / (link bandwidth x efficiency), in seconds; message sizes are
bytes, group sizes GPUs, bandwidths bytes/s per GPU and direction. An engine picks
the fastest kernel it has for each message (TensorRT-LLM's ``AUTO`` strategy, NCCL's
tuner), so :func:`all_reduce_s` takes the minimum over the variants the fabric offers:

- **one-shot** (:func:`one_shot_all_reduce_s`): every rank reads all peers' full
  buffers and reduces locally: one latency, (g - 1) x M bytes in per GPU. Best for
  the small messages of decode.
- **two-shot** (:func:`two_shot_all_reduce_s`): reduce-scatter then all-gather: two
  latencies, 2 (g - 1) / g x M bytes. Best for mid-size messages.
- **in-network reduction** (:func:`nvls_all_reduce_s`, NVLink SHARP / NVLS, when
  ``HardwareSpec.scale_up_in_network_reduction``): the NVSwitch reduces, so each GPU
  moves about M bytes whatever g is; one latency of its own (``nvls_latency_us``).
- **ring** and **tree** across scale-up domains (:func:`ring_all_reduce_s`,
  :func:`tree_all_reduce_s`): 2 (n - 1) or 2 log2(n) network latencies and
  2 (n - 1) / n x M or 2 M bytes on the NIC. A group wider than a domain runs
  hierarchically: reduce-scatter inside the domain, all-reduce of the 1/g_in shard
  across the n domains (ring or tree, whichever is faster), all-gather inside.
- **all-gather** and **reduce-scatter** (:func:`all_gather_s`, :func:`reduce_scatter_s`):
  one latency, (g - 1) / g x M bytes (M = the full gathered / unscattered size).

The constants are per GPU generation and live in the calibration block
(``collective_latency_us``, ``nvls_latency_us``, ``collective_efficiency_fraction``,
``scale_out_latency_us``, ``scale_out_efficiency_fraction``). Their defaults are fitted
by :func:`fit_all_reduce_constants` to the published microbenchmarks in
``planner/reference/collectives.csv`` (nccl-tests, SGLang/vLLM/TensorRT-LLM custom
all-reduce tables; every row names its source).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from planner.perf.context import GB, PerfContext

if TYPE_CHECKING:
    import pandas as pd

US = 1e-6

BENCHMARKS_PATH = Path(__file__).parent.parent / "reference" / "collectives.csv"
"""Published collective microbenchmarks the constants are fitted to, one row each with its source."""

ALL_REDUCE_VARIANTS = ("one_shot", "two_shot", "nvls")
"""Intra-domain all-reduce kernels, in the order :func:`intra_domain_all_reduce_s` tries them."""


@dataclass(frozen=True)
class FabricConstants:
    """One generation's collective constants: latencies in seconds, efficiencies as fractions."""

    latency_s: float
    """One step of a custom (one-shot/two-shot) kernel or of an all-gather inside a domain."""
    nvls_latency_s: float
    """One in-switch (NVLS) all-reduce, fixed part."""
    efficiency: float
    """Fraction of the scale-up link bandwidth the kernels reach."""
    scale_out_latency_s: float
    """One step of a collective across the scale-out network."""
    scale_out_efficiency: float
    """Fraction of the NIC bandwidth reached across domains."""

    @classmethod
    def of(cls, ctx: PerfContext) -> FabricConstants:
        """The constants of the context's calibration block."""
        eff = ctx.efficiency
        return cls(
            latency_s=eff.collective_latency_us * US,
            nvls_latency_s=eff.nvls_latency_us * US,
            efficiency=eff.collective_efficiency_fraction,
            scale_out_latency_s=eff.scale_out_latency_us * US,
            scale_out_efficiency=eff.scale_out_efficiency_fraction,
        )


def _group(group: ArrayLike) -> np.ndarray:
    return np.maximum(np.asarray(group, dtype=float), 1.0)


def one_shot_all_reduce_s(message_bytes, group, link_bytes_per_s, latency_s) -> np.ndarray:
    """Every rank pulls the g - 1 peers' full messages and reduces locally: one step."""
    g = _group(group)
    t = latency_s + (g - 1) * np.asarray(message_bytes, dtype=float) / link_bytes_per_s
    return np.where(g > 1, t, 0.0)


def two_shot_all_reduce_s(message_bytes, group, link_bytes_per_s, latency_s) -> np.ndarray:
    """Reduce-scatter then all-gather: two steps, 2 (g - 1) / g of the message on the link."""
    g = _group(group)
    t = 2 * latency_s + 2 * (g - 1) / g * np.asarray(message_bytes, dtype=float) / link_bytes_per_s
    return np.where(g > 1, t, 0.0)


def nvls_all_reduce_s(message_bytes, group, link_bytes_per_s, latency_s) -> np.ndarray:
    """NVLink SHARP: the switch reduces each shard, so each GPU moves about the message once."""
    g = _group(group)
    t = latency_s + np.asarray(message_bytes, dtype=float) / link_bytes_per_s
    return np.where(g > 1, t, 0.0)


def ring_all_reduce_s(message_bytes, group, link_bytes_per_s, step_latency_s) -> np.ndarray:
    """Ring: 2 (g - 1) steps, each moving 1/g of the message: bandwidth-optimal, latency linear in g."""
    g = _group(group)
    t = (
        2 * (g - 1) * step_latency_s
        + 2 * (g - 1) / g * np.asarray(message_bytes, dtype=float) / link_bytes_per_s
    )
    return np.where(g > 1, t, 0.0)


def tree_all_reduce_s(message_bytes, group, link_bytes_per_s, step_latency_s) -> np.ndarray:
    """Double binary tree: reduce up and broadcast down, 2 log2(g) steps, the message twice per link."""
    g = _group(group)
    t = (
        2 * np.ceil(np.log2(g)) * step_latency_s
        + 2 * np.asarray(message_bytes, dtype=float) / link_bytes_per_s
    )
    return np.where(g > 1, t, 0.0)


def all_gather_s(output_bytes, group, link_bytes_per_s, latency_s) -> np.ndarray:
    """All-gather of an ``output_bytes`` result: each GPU receives the (g - 1) / g it lacks."""
    g = _group(group)
    t = latency_s + (g - 1) / g * np.asarray(output_bytes, dtype=float) / link_bytes_per_s
    return np.where(g > 1, t, 0.0)


def reduce_scatter_s(input_bytes, group, link_bytes_per_s, latency_s) -> np.ndarray:
    """Reduce-scatter of an ``input_bytes`` buffer: the mirror of the all-gather, same cost."""
    return all_gather_s(input_bytes, group, link_bytes_per_s, latency_s)


def intra_domain_all_reduce_s(
    message_bytes, group, link_bytes_per_s: float, constants: FabricConstants, *, in_network_reduction: bool
) -> np.ndarray:
    """The fastest all-reduce kernel inside one scale-up domain (what an AUTO strategy picks)."""
    bandwidth = link_bytes_per_s * constants.efficiency
    best = np.minimum(
        one_shot_all_reduce_s(message_bytes, group, bandwidth, constants.latency_s),
        two_shot_all_reduce_s(message_bytes, group, bandwidth, constants.latency_s),
    )
    if in_network_reduction:
        best = np.minimum(best, nvls_all_reduce_s(message_bytes, group, bandwidth, constants.nvls_latency_s))
    return best


def all_reduce_s(ctx: PerfContext, message_bytes, group) -> np.ndarray:
    """All-reduce of ``message_bytes`` per GPU over ``group`` GPUs on the context's hardware, seconds.

    Inside one scale-up domain the fastest kernel; wider groups run hierarchically
    (reduce-scatter in the domain, ring or tree across domains on the 1/g_in shard,
    all-gather in the domain).
    """
    hw = ctx.hardware
    c = FabricConstants.of(ctx)
    g = _group(group)
    message = np.asarray(message_bytes, dtype=float)
    up = hw.scale_up_bandwidth_gb_per_s * GB
    out = hw.scale_out_bandwidth_gb_per_s * GB * c.scale_out_efficiency
    inside = intra_domain_all_reduce_s(
        message, g, up, c, in_network_reduction=hw.scale_up_in_network_reduction
    )
    g_in = np.minimum(g, hw.scale_up_domain_gpus)
    domains = np.ceil(g / g_in)
    shard = message / g_in
    across = np.minimum(
        ring_all_reduce_s(shard, domains, out, c.scale_out_latency_s),
        tree_all_reduce_s(shard, domains, out, c.scale_out_latency_s),
    )
    hierarchical = (
        reduce_scatter_s(message, g_in, up * c.efficiency, c.latency_s)
        + across
        + all_gather_s(message, g_in, up * c.efficiency, c.latency_s)
    )
    return np.where(g > hw.scale_up_domain_gpus, hierarchical, inside)


# --------------------------------------------------------------------------- EP all-to-all

LOW_LATENCY_MAX_TOKENS_PER_RANK = 256.0
"""Most tokens one rank may dispatch with low-latency kernels: DeepEP sizes their buffers for
the decode batch and recommends fewer than 256 tokens per rank (DeepEP V1 docs, legacy.md)."""


def low_latency_all_to_all_s(
    bytes_per_gpu,
    ep,
    domain_gpus,
    up_bytes_per_s,
    out_bytes_per_s,
    scale_up_latency_s,
    scale_out_latency_s,
) -> np.ndarray:
    """Low-latency dispatch or combine: every token-expert copy goes straight to its rank.

    Copies for ranks in the sender's scale-up domain take the scale-up links, the rest
    the NIC, with no forwarding or de-duplication (DeepEP low-latency, IBGDA): latency
    plus the slower of the two link shares. ``bytes_per_gpu`` counts every copy. The
    latency is one scale-up step inside a domain (a one-sided NVLink write, like a
    one-shot all-reduce) and the network's (``ep_low_latency_us``) when EP spans domains.
    """
    ep = _group(ep)
    message = np.asarray(bytes_per_gpu, dtype=float)
    in_domain = np.minimum(ep, domain_gpus)
    up = message * (in_domain - 1) / ep / up_bytes_per_s
    out = message * (1 - in_domain / ep) / out_bytes_per_s
    latency = np.where(ep > domain_gpus, scale_out_latency_s, scale_up_latency_s)
    return np.where(ep > 1, latency + np.maximum(up, out), 0.0)


def normal_all_to_all_s(
    bytes_per_gpu,
    ep,
    remote_domain_copies,
    experts_per_token: int,
    up_bytes_per_s: float,
    out_bytes_per_s: float,
    latency_s: float,
) -> np.ndarray:
    """Normal (high-throughput) dispatch or combine, with per-domain forwarding.

    A token crosses the network once per destination domain and fans out over the
    scale-up links (DeepEP normal kernels).

    ``remote_domain_copies`` is how many other domains one token goes to on average.
    """
    ep = _group(ep)
    message = np.asarray(bytes_per_gpu, dtype=float)
    up = message * (1 - 1 / ep) / up_bytes_per_s
    out = message / experts_per_token * np.asarray(remote_domain_copies, dtype=float) / out_bytes_per_s
    return np.where(ep > 1, latency_s + np.maximum(up, out), 0.0)


def ep_all_to_all_s(ctx: PerfContext, tokens_per_gpu, ep, stage_gpus, bytes_per_element: float) -> np.ndarray:
    """One EP dispatch (fp8, 1 byte) or combine (bf16, 2 bytes) of the tokens a GPU owns, seconds.

    The faster of the two modes an engine offers; low-latency only up to
    :data:`LOW_LATENCY_MAX_TOKENS_PER_RANK` tokens per rank.
    """
    hw, eff, arch = ctx.hardware, ctx.efficiency, ctx.arch
    k = arch.experts_per_token
    tokens = np.asarray(tokens_per_gpu, dtype=float)
    message = tokens * k * arch.model.hidden_dim * bytes_per_element
    up = hw.scale_up_bandwidth_gb_per_s * GB * eff.collective_efficiency_fraction
    out = hw.scale_out_bandwidth_gb_per_s * GB * eff.scale_out_efficiency_fraction
    domains = np.ceil(np.asarray(stage_gpus, dtype=float) / hw.scale_up_domain_gpus)
    remote_domains = np.minimum(k, domains) * (1 - 1 / domains)
    normal = normal_all_to_all_s(message, ep, remote_domains, k, up, out, eff.ep_normal_latency_us * US)
    low = low_latency_all_to_all_s(
        message,
        ep,
        hw.scale_up_domain_gpus,
        up,
        out,
        eff.collective_latency_us * US,
        eff.ep_low_latency_us * US,
    )
    return np.where(tokens <= LOW_LATENCY_MAX_TOKENS_PER_RANK, np.minimum(normal, low), normal)


# --------------------------------------------------------------------------- fitting


FITTED_ALL_REDUCE_CONSTANTS = ("collective_latency_us", "nvls_latency_us", "collective_efficiency_fraction")
"""What :func:`fit_all_reduce_constants` recovers from all-reduce microbenchmarks."""

FITTED_ALL_TO_ALL_CONSTANTS = ("ep_low_latency_us", "scale_out_efficiency_fraction")
"""What :func:`fit_low_latency_all_to_all_constants` recovers from EP dispatch/combine benchmarks
(the scale-up constants come from the generation's all-reduce fit and are held)."""

BOUNDS = {
    "collective_latency_us": (0.5, 200.0),
    "nvls_latency_us": (0.5, 200.0),
    "collective_efficiency_fraction": (0.1, 1.0),
    "ep_low_latency_us": (0.5, 500.0),
    "scale_out_efficiency_fraction": (0.1, 1.0),
}
"""Fit bounds, the same as the calibration block's."""


def predict_all_reduce_us(rows: pd.DataFrame, constants: dict[str, float]) -> np.ndarray:
    """Model time of each all-reduce microbenchmark row, microseconds.

    ``rows`` needs ``algorithm`` (``one_shot``, ``two_shot``, ``nvls`` or ``auto`` =
    the fastest of them; ``auto_no_nvls`` without NVLS), ``group_gpus``,
    ``message_bytes`` and ``link_gb_per_s`` (scale-up bandwidth per GPU and direction).
    """
    bandwidth = rows["link_gb_per_s"].to_numpy(dtype=float) * GB * constants["collective_efficiency_fraction"]
    message = rows["message_bytes"].to_numpy(dtype=float)
    g = rows["group_gpus"].to_numpy(dtype=float)
    latency = constants["collective_latency_us"] * US
    variants = {
        "one_shot": one_shot_all_reduce_s(message, g, bandwidth, latency),
        "two_shot": two_shot_all_reduce_s(message, g, bandwidth, latency),
        "nvls": nvls_all_reduce_s(message, g, bandwidth, constants["nvls_latency_us"] * US),
    }
    variants["auto_no_nvls"] = np.minimum(variants["one_shot"], variants["two_shot"])
    variants["auto"] = np.minimum(variants["auto_no_nvls"], variants["nvls"])
    algorithm = rows["algorithm"].to_numpy()
    unknown = set(algorithm) - set(variants)
    if unknown:
        raise ValueError(f"unknown all-reduce algorithm(s) {sorted(unknown)}; use one of {sorted(variants)}")
    predicted = np.select([algorithm == name for name in variants], list(variants.values()))
    return predicted / US


def predict_low_latency_all_to_all_us(rows: pd.DataFrame, constants: dict[str, float]) -> np.ndarray:
    """Model time of each low-latency dispatch/combine row, microseconds.

    ``rows`` needs ``group_gpus`` (EP), ``message_bytes`` (all token-expert copies one GPU
    sends), ``link_gb_per_s``, ``scale_out_gb_per_s`` and ``domain_gpus``.
    """
    up = rows["link_gb_per_s"].to_numpy(dtype=float) * GB * constants["collective_efficiency_fraction"]
    out = rows["scale_out_gb_per_s"].to_numpy(dtype=float) * GB * constants["scale_out_efficiency_fraction"]
    t = low_latency_all_to_all_s(
        rows["message_bytes"].to_numpy(dtype=float),
        rows["group_gpus"].to_numpy(dtype=float),
        rows["domain_gpus"].to_numpy(dtype=float),
        up,
        out,
        constants["collective_latency_us"] * US,
        constants["ep_low_latency_us"] * US,
    )
    return t / US


def _fit_log(rows: pd.DataFrame, predict, names: list[str], start: dict[str, float]) -> dict[str, float]:
    """Bounded least squares on log(predicted / measured) over ``names``; the rest stay at ``start``."""
    from scipy.optimize import least_squares  # imported when fitting: scipy.optimize is slow to import

    measured = rows["time_us"].to_numpy(dtype=float)

    def residuals(x: np.ndarray) -> np.ndarray:
        constants = {**start, **dict(zip(names, np.exp(x), strict=True))}
        return np.log(predict(rows, constants) / measured)

    lower, upper = (np.log([BOUNDS[n][i] for n in names]) for i in (0, 1))
    x0 = np.clip(np.log([start[n] for n in names]), lower + 1e-9, upper - 1e-9)
    fit = least_squares(residuals, x0, bounds=(lower, upper), method="trf")
    return {**start, **dict(zip(names, (float(v) for v in np.exp(fit.x)), strict=True))}


def fit_all_reduce_constants(rows: pd.DataFrame, start: dict[str, float] | None = None) -> dict[str, float]:
    """Fit latency, NVLS latency and link efficiency to measured all-reduce times.

    Constants the rows cannot identify (no NVLS row: ``nvls_latency_us``) stay at ``start``.
    """
    start = {
        "collective_latency_us": 8.0,
        "nvls_latency_us": 8.0,
        "collective_efficiency_fraction": 0.7,
        **(start or {}),
    }
    has_nvls = bool((rows["algorithm"] == "nvls").any())
    names = [n for n in FITTED_ALL_REDUCE_CONSTANTS if n != "nvls_latency_us" or has_nvls]
    return _fit_log(rows, predict_all_reduce_us, names, start)


def fit_low_latency_all_to_all_constants(
    rows: pd.DataFrame, start: dict[str, float] | None = None
) -> dict[str, float]:
    """Fit the network latency and NIC efficiency of low-latency EP dispatch/combine times.

    ``start`` should carry the generation's fitted ``collective_latency_us`` and
    ``collective_efficiency_fraction`` (the scale-up part of EP inside a domain).
    """
    start = {
        "ep_low_latency_us": 20.0,
        "collective_latency_us": 8.0,
        "collective_efficiency_fraction": 0.7,
        "scale_out_efficiency_fraction": 0.8,
        **(start or {}),
    }
    return _fit_log(rows, predict_low_latency_all_to_all_us, list(FITTED_ALL_TO_ALL_CONSTANTS), start)


def benchmark_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Collective benchmark rows with their hardware's link facts joined (for the fits)."""
    from planner.catalog import load_hardware

    specs = {name: load_hardware(name) for name in frame["hardware"].unique()}
    return frame.assign(
        generation=[specs[h].generation for h in frame["hardware"]],
        link_gb_per_s=[specs[h].scale_up_bandwidth_gb_per_s for h in frame["hardware"]],
        scale_out_gb_per_s=[specs[h].scale_out_bandwidth_gb_per_s for h in frame["hardware"]],
        domain_gpus=[specs[h].scale_up_domain_gpus for h in frame["hardware"]],
    )
