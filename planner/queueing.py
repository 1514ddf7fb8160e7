"""Headroom from queueing: how busy an instance may run and still meet a TTFT percentile.

Why it exists
    The MIP sizes pools by rate matching: a prefill pool of ``n`` instances of ``rho``
    requests/s each serves up to ``n x rho``. At that load a real service with random
    arrivals builds a queue without bound, and the no-queue TTFT of the candidate table
    is a lie for every request that waits. A TTFT SLO is a percentile (p99 below 2 s),
    so each prefill (and co-located) candidate's capacity is *derated* to the largest
    utilisation at which its queueing wait at that percentile plus its own TTFT still fits
    the limit. The MIP
    stays linear: only the candidates' requests/s change.

Model (the assumptions, stated)
    - Arrivals: Poisson (independent users), at the rate the pool serves.
    - Routing: each request goes to one prefill instance of the pool chosen uniformly at
      random (a Bernoulli split of a Poisson stream is Poisson), so every instance is an
      independent queue with utilisation ``rho_u = lambda_i / rho``.
    - Service: one instance works its queue first come, first served, one request after
      another, each taking the deterministic time ``D = 1 / rho`` (its throughput; prompts of
      one class have one length, so the work is deterministic). A request's first token
      comes its no-queue TTFT (``ttft_ms`` of the candidate, prefill plus KV transfer)
      after it leaves the queue. That is an M/D/1 queue per instance:
      ``TTFT_p = W_p + ttft_ms``.
    - The wait percentile ``W_p`` uses the M/D/1 waiting-time tail
      ``P(W > t) ~ C exp(-theta t)``, exact as ``t`` grows and within a few percent at
      p90 and beyond: ``theta`` solves ``lambda (exp(theta D) - 1) = theta`` and
      ``C = (1 - rho_u) / (lambda D exp(theta D) - 1)`` (the dominant pole of the
      Pollaczek-Khinchine transform of the M/G/1 waiting time; Kleinrock, *Queueing
      Systems* vol. 1, sec. 5.7, and Abate, Choudhury & Whitt, "Exponential approximations
      for tail probabilities in queues", Operations Research 42(5), 1994). With
      ``x = theta D`` the root equation is ``rho_u (e^x - 1) = x``.
    - Co-located instances: a request waits for one of the ``batch / attention_dp`` slots of
      the rank it is routed to (random routing again), and holds it for its whole life,
      ``D = batch / rho`` (decode at the planned TPOT): an M/D/c queue per rank. Its wait
      percentile uses the exponential approximation ``P(W > t) = C exp(-t / m)`` with ``C``
      Erlang's C (the M/M/c waiting probability) and ``m`` the mean wait of those who wait,
      ``D / (2 c (1 - rho))`` times Cosmetatos' M/D/c correction
      ``1 + (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)`` (G. P. Cosmetatos, "Some approximate
      equilibrium results for the multi-server queue (M/G/r)", Operational Research Quarterly
      27, 1976; the exponential form as in H. C. Tijms, *A First Course in Stochastic Models*,
      Wiley 2003, ch. 5). Against the simulation its p99 wait is 3-9% high at utilisations
      0.8-0.95 with 8 slots, and from 16% low to 25% high over 2-64 slots at 0.3-0.95.
    - Decode instances of a disaggregated plan: a request waits for a decode slot after its
      first token, which delays the second token, not the first; they are capped at
      ``cluster.target_utilization_fraction`` only (slack for bursts), as every pool is.

``tests/test_queueing.py`` checks ``TTFT_p`` against :func:`simulate_ttft_s`, a
discrete-event simulation of the same pool (Poisson arrivals, random routing, FIFO
deterministic service on one or ``c`` servers per instance), at three loads each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BISECTION_STEPS = 80
"""Halvings of the bracket in the root and utilisation searches (2^-80: exact to float precision)."""

RATE_COLUMNS = (
    "requests_per_s",
    "requests_per_s_per_gpu",
    "output_tokens_per_s",
    "output_tokens_per_s_per_gpu",
    "input_tokens_per_s",
    "input_tokens_per_s_per_gpu",
)
"""Candidate-table columns that scale with an instance's served rate."""


def _tail_exponent(utilization) -> np.ndarray:
    """``x = theta D``: the positive root of ``rho (e^x - 1) = x`` for 0 < rho < 1 (bisection)."""
    rho = np.asarray(utilization, dtype=float)
    low = np.zeros_like(rho)
    # e^x - 1 >= x + x^2 / 2, so the root is at most 2 (1 - rho) / rho (capped below overflow).
    high = np.minimum(2.0 * (1.0 - rho) / rho, 700.0)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        above = rho * np.expm1(mid) - mid > 0
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    return 0.5 * (low + high)


def erlang_c_fraction(utilization, servers) -> np.ndarray:
    """Erlang's C: the probability an arrival waits in an M/M/c queue.

    From Erlang's B, ``B = P(N = c) / P(N <= c)`` for ``N ~ Poisson(c rho)`` (computed in log space,
    stable for thousands of servers), and ``C = B / (1 - rho (1 - B))``.
    """
    from scipy.stats import poisson

    rho = np.asarray(utilization, dtype=float)
    c = np.broadcast_to(np.asarray(servers, dtype=float), rho.shape)
    blocking = np.exp(poisson.logpmf(c, c * rho) - poisson.logcdf(c, c * rho))
    return blocking / (1.0 - rho * (1.0 - blocking))


def md1_wait_quantile_s(utilization, service_s, quantile_fraction: float) -> np.ndarray:
    """The ``quantile_fraction`` quantile of an M/D/1 queue's waiting time, seconds (0 at no load)."""
    return mdc_wait_quantile_s(utilization, 1, service_s, quantile_fraction)


def mdc_wait_quantile_s(utilization, servers, service_s, quantile_fraction: float) -> np.ndarray:
    """The ``quantile_fraction`` quantile of an M/D/c queue's waiting time, seconds (0 at no load).

    ``utilization`` is ``lambda x service_s / servers`` (below 1); ``service_s`` the deterministic
    service time. Both forms are ``P(W > t) = C exp(-t / m)``: one server, the M/D/1 tail
    (``C = (1 - rho) / (rho + x - 1)``, ``m = D / x``); more, Erlang's C and the mean wait of
    those who wait with Cosmetatos' M/D/c correction (the module docstring has the sources).
    """
    raw = np.asarray(utilization, dtype=float)
    rho = np.clip(raw, 1e-12, 1 - 1e-12)
    c = np.broadcast_to(np.asarray(servers, dtype=np.int64), rho.shape).astype(float)
    service = np.asarray(service_s, dtype=float)
    x = _tail_exponent(rho)
    cosmetatos = 1 + (1 - rho) * (c - 1) * (np.sqrt(4 + 5 * c) - 2) / (16 * rho * c)
    scale = np.where(c == 1, (1.0 - rho) / (rho + x - 1.0), erlang_c_fraction(rho, c))
    mean_s = np.where(c == 1, service / x, service / (2 * c * (1 - rho)) * cosmetatos)
    tail = 1.0 - quantile_fraction
    wait = np.where(scale > tail, np.log(np.maximum(scale, tail) / tail) * mean_s, 0.0)
    return np.where(raw > 0, wait, 0.0)


def max_utilization_fraction(
    service_s,
    base_ttft_s,
    ttft_limit_s: float,
    quantile_fraction: float | None,
    cap_fraction: float = 1.0,
    servers=1,
) -> np.ndarray:
    """Largest utilisation (<= ``cap_fraction``) whose percentile wait plus base TTFT fits the limit.

    ``quantile_fraction`` None means no percentile SLO: the cap alone. Rows whose base TTFT
    already exceeds the limit get 0.
    """
    service = np.asarray(service_s, dtype=float)
    base = np.asarray(base_ttft_s, dtype=float)
    if quantile_fraction is None:
        return np.where(base <= ttft_limit_s, cap_fraction, 0.0) * np.ones_like(service)
    cap = min(cap_fraction, 1.0 - 1e-9)
    low = np.zeros_like(service)
    high = np.full_like(service, cap)

    def fits(rho: np.ndarray) -> np.ndarray:
        return mdc_wait_quantile_s(rho, servers, service, quantile_fraction) + base <= ttft_limit_s

    done = fits(high)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        ok = fits(mid)
        low = np.where(ok, mid, low)
        high = np.where(ok, high, mid)
    return np.where(done, cap, low) * (base <= ttft_limit_s)


def derate_candidates(
    frame: pd.DataFrame,
    *,
    ttft_ms_max: float,
    ttft_percentile: float | None,
    target_utilization_fraction: float,
) -> pd.DataFrame:
    """Scale each row's rates to the utilisation it may run at (the TTFT percentile: prefill, co-located).

    With no percentile and a target of 1 the frame is returned unchanged. Rows left
    with no capacity are dropped.
    """
    if ttft_percentile is None and target_utilization_fraction >= 1.0:
        return frame
    frame = frame.copy()
    rate = frame["requests_per_s"].to_numpy(dtype=float)
    phase = frame["phase"].to_numpy()
    # Prefill: one server working at the instance's rate. Co-located: batch / DP slots per rank,
    # each holding a request for batch / rate seconds (its whole decode).
    slots = np.maximum(
        1, frame["batch"].to_numpy(dtype=np.int64) // frame["attention_dp"].to_numpy(dtype=np.int64)
    )
    servers = np.where(phase == "aggregated", slots, 1)
    service_s = np.where(phase == "aggregated", frame["batch"].to_numpy(dtype=float) / rate, 1.0 / rate)
    factor = max_utilization_fraction(
        service_s,
        frame["ttft_ms"].to_numpy(dtype=float) / 1e3,
        ttft_ms_max / 1e3,
        None if ttft_percentile is None else ttft_percentile / 100.0,
        target_utilization_fraction,
        servers,
    )
    factor = np.where(phase == "decode", target_utilization_fraction, factor)
    for column in RATE_COLUMNS:
        frame[column] = frame[column].to_numpy(dtype=float) * factor
    return frame[factor > 0]


def simulate_ttft_s(
    arrival_requests_per_s: float,
    instances: int,
    service_s: float,
    base_ttft_s: float,
    *,
    servers: int = 1,
    requests: int = 1_000_000,
    seed: int = 0,
    warmup_fraction: float = 0.05,
) -> np.ndarray:
    """First-token times of a simulated pool (discrete events, exact FIFO recursion).

    Poisson arrivals at ``arrival_requests_per_s``, each routed to one of ``instances`` chosen
    uniformly at random; each instance serves its queue in order on ``servers`` servers,
    ``service_s`` per request; a request's TTFT is its wait plus ``base_ttft_s``. The first
    ``warmup_fraction`` of requests (an empty system) are dropped. With identical
    deterministic service and FIFO, request ``k`` of an instance starts when request
    ``k - servers`` ends: ``s_k = max(a_k, s_{k-c} + D)``, i.e. per residue class of ``k``
    modulo ``c``, ``s_k = max_j (a_j + (steps from j to k) D)``, a running maximum.
    """
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / arrival_requests_per_s, requests))
    route = rng.integers(0, instances, requests)
    waits = np.empty(requests)
    for instance in range(instances):
        mine = np.flatnonzero(route == instance)
        for residue in range(servers):
            chain = mine[residue::servers]
            a = arrivals[chain]
            k = np.arange(len(a)) * service_s
            waits[chain] = np.maximum.accumulate(a - k) + k - a
    return waits[int(warmup_fraction * requests) :] + base_ttft_s
