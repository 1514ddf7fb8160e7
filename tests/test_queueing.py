"""Queueing headroom: the M/D/1 percentile against a discrete-event simulation of the same pool."""

from __future__ import annotations

import numpy as np
import pytest

from planner.problem import resolve
from planner.queueing import (
    _tail_exponent,
    derate_candidates,
    erlang_c_fraction,
    max_utilization_fraction,
    md1_wait_quantile_s,
    mdc_wait_quantile_s,
    simulate_ttft_s,
)
from planner.space import LAYOUT_COLUMNS

# A prefill pool like the case: 6 instances of TP2 batch 1, 1.775 s per 16k prompt.
SERVICE_S = 1.775
BASE_TTFT_S = 1.775
INSTANCES = 6


@pytest.mark.parametrize("utilization", [0.5, 0.7, 0.9])
def test_p99_ttft_within_10_percent_of_simulation(utilization):
    simulated = np.percentile(
        simulate_ttft_s(utilization * INSTANCES / SERVICE_S, INSTANCES, SERVICE_S, BASE_TTFT_S), 99
    )
    predicted = md1_wait_quantile_s(utilization, SERVICE_S, 0.99) + BASE_TTFT_S
    assert predicted == pytest.approx(simulated, rel=0.10)
    # The wait alone, not only the TTFT that includes the base, is close too.
    assert predicted - BASE_TTFT_S == pytest.approx(simulated - BASE_TTFT_S, rel=0.10)


def test_tail_exponent_solves_its_equation():
    rho = np.array([0.1, 0.5, 0.9, 0.99])
    x = _tail_exponent(rho)
    np.testing.assert_allclose(rho * np.expm1(x), x, rtol=1e-9)
    # Heavy traffic: x -> 2 (1 - rho) / rho from below.
    assert x[-1] == pytest.approx(2 * 0.01 / 0.99, rel=0.01)
    assert (x < 2 * (1 - rho) / rho).all()


def test_wait_grows_with_load_and_percentile():
    loads = np.array([0.2, 0.5, 0.8, 0.95])
    waits = md1_wait_quantile_s(loads, 1.0, 0.99)
    assert (np.diff(waits) > 0).all()
    assert md1_wait_quantile_s(0.8, 1.0, 0.999) > md1_wait_quantile_s(0.8, 1.0, 0.99)
    assert md1_wait_quantile_s(0.0, 1.0, 0.99) == 0.0


def test_derated_pool_meets_its_limit_in_simulation():
    limit_s = 6.0
    rho = float(max_utilization_fraction(SERVICE_S, BASE_TTFT_S, limit_s, 0.99))
    assert 0.3 < rho < 0.95
    pool = simulate_ttft_s(rho * INSTANCES / SERVICE_S, INSTANCES, SERVICE_S, BASE_TTFT_S)
    simulated = np.percentile(pool, 99)
    assert simulated == pytest.approx(limit_s, rel=0.10)
    # A tighter limit or a target utilisation lowers the headroom; a base TTFT over the limit leaves none.
    assert max_utilization_fraction(SERVICE_S, BASE_TTFT_S, 4.0, 0.99) < rho
    assert float(max_utilization_fraction(SERVICE_S, BASE_TTFT_S, limit_s, 0.99, 0.2)) == pytest.approx(0.2)
    assert float(max_utilization_fraction(SERVICE_S, 7.0, limit_s, 0.99)) == 0.0


def _case(**overrides):
    base = {"traffic.isl_tokens": 16384, "slo.ttft_ms_max": 2000}
    return resolve("llama-3.1-70b-h100-8k-1k", overrides={**base, **overrides})


def test_prefill_candidates_are_derated_by_their_own_percentile_wait():
    plain = _case().candidate_table("prefill", prune=False)
    derated = _case(**{"slo.ttft_percentile": 99}).candidate_table("prefill", prune=False)
    keys = list(LAYOUT_COLUMNS)
    merged = plain.merge(derated, on=keys, suffixes=("", "_p99"))
    assert len(merged) > 0
    factor = merged["requests_per_s_p99"] / merged["requests_per_s"]
    expected = max_utilization_fraction(
        1 / merged["requests_per_s"].to_numpy(), merged["ttft_ms"].to_numpy() / 1e3, 2.0, 0.99
    )
    np.testing.assert_allclose(factor, expected, rtol=1e-9)
    assert (factor < 1).all()
    assert (factor > 0).all()
    # Every rate column moves together, the latencies do not.
    np.testing.assert_allclose(merged["output_tokens_per_s_p99"] / merged["output_tokens_per_s"], factor)
    np.testing.assert_allclose(merged["ttft_ms_p99"], merged["ttft_ms"])


def test_target_utilization_caps_every_pool_and_defaults_change_nothing():
    plain = _case().candidate_table("decode", prune=False)
    frame = derate_candidates(plain, ttft_ms_max=2000, ttft_percentile=None, target_utilization_fraction=1.0)
    assert frame is plain
    capped = _case(**{"cluster.target_utilization_fraction": 0.8}).candidate_table("decode", prune=False)
    np.testing.assert_allclose(capped["requests_per_s"], 0.8 * plain["requests_per_s"])


# --------------------------------------------------------------------------- co-located: M/D/c slots

SLOTS = 8
HOLD_S = 15.0  # a slot held for 1024 tokens at ~15 ms each
AGG_BASE_S = 1.08


@pytest.mark.parametrize("utilization", [0.8, 0.9, 0.95])
def test_slot_queue_p99_ttft_within_10_percent_of_simulation(utilization):
    rate = utilization * 2 * SLOTS / HOLD_S
    pool = simulate_ttft_s(rate, 2, HOLD_S, AGG_BASE_S, servers=SLOTS, requests=2_000_000)
    simulated = np.percentile(pool, 99)
    predicted = mdc_wait_quantile_s(utilization, SLOTS, HOLD_S, 0.99) + AGG_BASE_S
    assert predicted == pytest.approx(simulated, rel=0.10)


def test_erlang_c_matches_its_recursion():
    # Erlang B by its textbook recursion, then C = B / (1 - rho (1 - B)).
    for servers, rho in ((4, 0.5), (16, 0.8), (64, 0.95)):
        blocking = 1.0
        for k in range(1, servers + 1):
            blocking = servers * rho * blocking / (k + servers * rho * blocking)
        expected = blocking / (1 - rho * (1 - blocking))
        assert float(erlang_c_fraction(rho, servers)) == pytest.approx(expected, rel=1e-9)
    # One server: a request waits exactly when the server is busy.
    assert float(erlang_c_fraction(0.6, 1)) == pytest.approx(0.6)


@pytest.mark.parametrize(("limit_s", "servers"), [(2.0, 8), (6.0, 8), (3.0, 64)])
def test_derated_slot_pool_meets_its_limit_in_simulation(limit_s, servers):
    rho = float(max_utilization_fraction(HOLD_S, AGG_BASE_S, limit_s, 0.99, servers=servers))
    assert 0.1 < rho < 0.95
    pool = simulate_ttft_s(
        rho * 4 * servers / HOLD_S, 4, HOLD_S, AGG_BASE_S, servers=servers, requests=600_000
    )
    assert np.percentile(pool, 99) == pytest.approx(limit_s, rel=0.10)


def test_aggregated_candidates_are_derated_by_their_slot_queue():
    plain = _case().candidate_table("aggregated", prune=False)
    derated = _case(**{"slo.ttft_percentile": 99}).candidate_table("aggregated", prune=False)
    keys = list(LAYOUT_COLUMNS)
    merged = plain.merge(derated, on=keys, suffixes=("", "_p99"))
    assert len(merged) > 0
    rate = merged["requests_per_s"].to_numpy()
    expected = max_utilization_fraction(
        merged["batch"].to_numpy() / rate,
        merged["ttft_ms"].to_numpy() / 1e3,
        2.0,
        0.99,
        servers=np.maximum(1, merged["batch"].to_numpy() // merged["attention_dp"].to_numpy()),
    )
    np.testing.assert_allclose(merged["requests_per_s_p99"] / rate, expected, rtol=1e-9)
    # Decode rows of a disaggregated plan wait for a slot after their first token: untouched.
    decode = _case(**{"slo.ttft_percentile": 99}).candidate_table("decode", prune=False)
    np.testing.assert_allclose(
        decode["requests_per_s"], _case().candidate_table("decode", prune=False)["requests_per_s"]
    )
