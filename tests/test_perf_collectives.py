"""Collectives per fabric: each term against hand arithmetic, the fits against known constants,
and the shipped constants against the published microbenchmarks they were fitted to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.catalog import load_hardware, load_model
from planner.perf import Calibration, EfficiencyBlock
from planner.perf.calibration import load_calibration
from planner.perf.collectives import (
    BENCHMARKS_PATH,
    all_gather_s,
    all_reduce_s,
    benchmark_rows,
    fit_all_reduce_constants,
    fit_low_latency_all_to_all_constants,
    low_latency_all_to_all_s,
    normal_all_to_all_s,
    nvls_all_reduce_s,
    one_shot_all_reduce_s,
    predict_all_reduce_us,
    predict_low_latency_all_to_all_us,
    reduce_scatter_s,
    ring_all_reduce_s,
    tree_all_reduce_s,
    two_shot_all_reduce_s,
)
from planner.perf.context import PerfContext

MB = 1_000_000
BW = 100e9  # 100 GB/s, a round link for hand arithmetic
LAT = 10e-6  # 10 us


def test_one_shot_two_shot_nvls_by_hand() -> None:
    # 1 MB over 8 GPUs at 100 GB/s: one-shot pulls 7 MB (70 us), two-shot 2 x 7/8 MB (17.5 us).
    assert float(one_shot_all_reduce_s(MB, 8, BW, LAT)) == pytest.approx(10e-6 + 70e-6)
    assert float(two_shot_all_reduce_s(MB, 8, BW, LAT)) == pytest.approx(20e-6 + 17.5e-6)
    # The switch reduces: 1 MB once per GPU, whatever the group (10 us).
    assert float(nvls_all_reduce_s(MB, 8, BW, LAT)) == pytest.approx(10e-6 + 10e-6)
    assert float(nvls_all_reduce_s(MB, 64, BW, LAT)) == pytest.approx(10e-6 + 10e-6)
    # One GPU needs no collective.
    for term in (one_shot_all_reduce_s, two_shot_all_reduce_s, nvls_all_reduce_s):
        assert float(term(MB, 1, BW, LAT)) == 0.0


def test_ring_tree_gather_scatter_by_hand() -> None:
    # Ring over 4: 6 steps, 2 x 3/4 MB = 1.5 MB (15 us).
    assert float(ring_all_reduce_s(MB, 4, BW, LAT)) == pytest.approx(6 * 10e-6 + 15e-6)
    # Tree over 4: 2 x log2(4) = 4 steps, 2 MB (20 us); over 5 the depth rounds up to 3.
    assert float(tree_all_reduce_s(MB, 4, BW, LAT)) == pytest.approx(4 * 10e-6 + 20e-6)
    assert float(tree_all_reduce_s(MB, 5, BW, LAT)) == pytest.approx(6 * 10e-6 + 20e-6)
    # All-gather of a 1 MB result over 4: each GPU receives 3/4 MB.
    assert float(all_gather_s(MB, 4, BW, LAT)) == pytest.approx(10e-6 + 7.5e-6)
    assert float(reduce_scatter_s(MB, 4, BW, LAT)) == pytest.approx(10e-6 + 7.5e-6)


def _ctx(hardware: str, **block: float) -> PerfContext:
    calibration = Calibration(source="hand check", default=EfficiencyBlock(**block), blocks={})
    return PerfContext.build(load_model("llama-3.1-70b"), load_hardware(hardware), "fp8", calibration)


def test_all_reduce_takes_the_fastest_kernel_of_the_fabric() -> None:
    constants = dict(
        collective_latency_us=5.0,
        nvls_latency_us=12.0,
        collective_efficiency_fraction=0.5,
        scale_out_latency_us=20.0,
        scale_out_efficiency_fraction=0.8,
    )
    h100 = _ctx("h100-sxm", **constants)  # 450 GB/s x 0.5 = 225 GB/s, NVLS available
    # Decode-sized message (16 KB = 1 token x 8192 x 2 bytes) at TP8: one-shot, 5 us + 7 x 16 KB / 225 GB/s.
    small = 16384.0
    assert float(all_reduce_s(h100, small, 8)) == pytest.approx(5e-6 + 7 * small / 225e9)
    # 16 MB at TP8: NVLS, 12 us + 16 MB / 225 GB/s, below two-shot's 10 us + 14 MB / 225 GB/s.
    big = 16e6
    assert float(all_reduce_s(h100, big, 8)) == pytest.approx(12e-6 + big / 225e9)
    # Without in-network reduction (MI300X-like fabric flag off) the same message takes two-shot.
    mi300 = _ctx("mi300x", **constants)  # 448 GB/s x 0.5 = 224 GB/s
    assert float(all_reduce_s(mi300, big, 8)) == pytest.approx(10e-6 + 2 * 7 / 8 * big / 224e9)


def test_all_reduce_across_domains_is_hierarchical() -> None:
    """TP16 on 8-GPU nodes: reduce-scatter in the node, ring/tree over 2 nodes, all-gather in the node."""
    ctx = _ctx(
        "h100-sxm",
        collective_latency_us=5.0,
        collective_efficiency_fraction=0.5,
        scale_out_latency_us=20.0,
        scale_out_efficiency_fraction=0.8,
    )
    message = 8e6
    inside = 2 * (5e-6 + 7 / 8 * message / 225e9)  # reduce-scatter + all-gather over 8 at 225 GB/s
    shard = message / 8
    nic = 50e9 * 0.8
    ring = 2 * 20e-6 + 2 * 1 / 2 * shard / nic  # 2 domains: 2 steps, half the shard twice
    tree = 2 * 20e-6 + 2 * shard / nic
    assert float(all_reduce_s(ctx, message, 16)) == pytest.approx(inside + min(ring, tree))


def test_low_latency_and_normal_all_to_all_by_hand() -> None:
    up, out = 200e9, 40e9
    # EP8 inside one 8-GPU domain: 7/8 of the copies over NVLink, one scale-up latency.
    assert float(low_latency_all_to_all_s(8 * MB, 8, 8, up, out, 5e-6, 30e-6)) == pytest.approx(
        5e-6 + 7 * MB / up
    )
    # EP32 over four domains: 7/32 of the copies over NVLink, 24/32 over the NIC (slower), network latency.
    assert float(low_latency_all_to_all_s(8 * MB, 32, 8, up, out, 5e-6, 30e-6)) == pytest.approx(
        30e-6 + 8 * MB * 24 / 32 / out
    )
    # Normal mode, top-8 tokens to 2 other domains on average: 1/8 of the copies' bytes x 2 cross the NIC.
    assert float(normal_all_to_all_s(8 * MB, 32, 2.0, 8, up, out, 60e-6)) == pytest.approx(
        60e-6 + max(8 * MB * 31 / 32 / up, MB * 2 / out)
    )


# --------------------------------------------------------------------------- fits


def _synthetic_all_reduce(constants: dict[str, float]) -> pd.DataFrame:
    rows = [
        {"algorithm": alg, "group_gpus": g, "message_bytes": m, "link_gb_per_s": 450.0}
        for alg in ("one_shot", "two_shot", "nvls")
        for g in (2, 4, 8)
        for m in (1e3, 1e5, 1e6, 1e7)
    ]
    frame = pd.DataFrame(rows)
    return frame.assign(time_us=predict_all_reduce_us(frame, constants))


def test_all_reduce_fit_recovers_known_constants() -> None:
    truth = {"collective_latency_us": 6.5, "nvls_latency_us": 14.0, "collective_efficiency_fraction": 0.62}
    fitted = fit_all_reduce_constants(_synthetic_all_reduce(truth))
    for name, value in truth.items():
        assert fitted[name] == pytest.approx(value, rel=1e-4)


def test_all_to_all_fit_recovers_known_constants() -> None:
    truth = {
        "ep_low_latency_us": 27.0,
        "scale_out_efficiency_fraction": 0.71,
        "collective_latency_us": 5.0,
        "collective_efficiency_fraction": 0.55,
    }
    frame = pd.DataFrame(
        [
            {
                "group_gpus": ep,
                "message_bytes": m,
                "link_gb_per_s": 200.0,
                "scale_out_gb_per_s": 50.0,
                "domain_gpus": 8,
            }
            for ep in (8, 16, 32, 64, 128)
            for m in (1e6, 7e6, 14e6)
        ]
    )
    frame["time_us"] = predict_low_latency_all_to_all_us(frame, truth)
    start = {"collective_latency_us": 5.0, "collective_efficiency_fraction": 0.55}
    fitted = fit_low_latency_all_to_all_constants(frame, start)
    assert fitted["ep_low_latency_us"] == pytest.approx(27.0, rel=1e-4)
    assert fitted["scale_out_efficiency_fraction"] == pytest.approx(0.71, rel=1e-4)


def _published() -> pd.DataFrame:
    return benchmark_rows(pd.read_csv(BENCHMARKS_PATH))


def test_every_collective_row_names_its_source() -> None:
    frame = pd.read_csv(BENCHMARKS_PATH)
    assert frame["source"].str.len().min() > 20
    assert frame["id"].is_unique
    assert {"h100-sxm", "b200", "gb200-nvl72", "h800"} <= set(frame["hardware"])


@pytest.mark.parametrize(("generation", "block"), [("hopper", "hopper/fp8"), ("blackwell", "blackwell/fp4")])
def test_shipped_collective_constants_are_the_fit_to_the_published_rows(generation: str, block: str) -> None:
    rows = _published()
    all_reduce = rows[(rows["collective"] == "all_reduce") & (rows["generation"] == generation)]
    fitted = fit_all_reduce_constants(all_reduce)
    shipped = load_calibration().blocks[block]
    for name in ("collective_latency_us", "nvls_latency_us", "collective_efficiency_fraction"):
        assert getattr(shipped, name) == pytest.approx(fitted[name], rel=0.01), name
    errors = predict_all_reduce_us(all_reduce, fitted) / all_reduce["time_us"].to_numpy() - 1
    assert np.median(np.abs(errors)) < 0.25


def test_network_constant_defaults_are_the_fit_to_deepep() -> None:
    """The fields' defaults are the microbenchmark fit; shipped blocks may differ until refitted."""
    rows = _published()
    hopper = load_calibration().blocks["hopper/fp8"]
    defaults = EfficiencyBlock()
    ep_rows = rows[rows["collective"].str.startswith("all_to_all")]
    start = {
        "collective_latency_us": hopper.collective_latency_us,
        "collective_efficiency_fraction": hopper.collective_efficiency_fraction,
    }
    fitted = fit_low_latency_all_to_all_constants(ep_rows, start)
    assert defaults.ep_low_latency_us == pytest.approx(fitted["ep_low_latency_us"], rel=0.01)
    assert defaults.scale_out_efficiency_fraction == pytest.approx(
        fitted["scale_out_efficiency_fraction"], rel=0.01
    )
    errors = predict_low_latency_all_to_all_us(ep_rows, fitted) / ep_rows["time_us"].to_numpy() - 1
    assert np.median(np.abs(errors)) < 0.05
