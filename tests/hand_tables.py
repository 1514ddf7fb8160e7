"""Hand-written candidate tables shared by the MIP tests (not a test module)."""

from __future__ import annotations

import pandas as pd

NAN = float("nan")
OSL = 100
"""Output tokens per request of every hand table: tokens/s/GPU = 100 x requests/s per GPU."""


def frame(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    """A candidate table from ``(gpus, requests_per_s, tokens_per_s_per_user)`` rows (one layout each)."""
    return pd.DataFrame(
        [
            {
                "candidate_id": i,
                "tp": g,
                "pp": 1,
                "ep": 1,
                "attention_dp": 1,
                "batch": i + 1,
                "chunked_prefill": False,
                "gpus": g,
                "requests_per_s": r,
                "tokens_per_s_per_user": u,
                "tpot_ms": 1000.0 / u if u == u else NAN,
                "ttft_ms": 100.0,
                "kv_cache_bytes_per_request": 0.0,
                "osl_tokens": OSL,
                "output_tokens_per_s": r * OSL,
            }
            for i, (g, r, u) in enumerate(rows)
        ]
    )
