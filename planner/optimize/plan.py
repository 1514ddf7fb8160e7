"""A deployment plan read back from a solved model, with its metrics computed from the candidates.

Metrics follow the issue's contract, computed from the chosen layouts, counts and
flows rather than trusted from solver variables where an exact value exists:

- served rate: one-shape traffic ``lambda = min over pools of sum(requests_per_s x
  instances)`` (exact, from the counts); a mix, the rate the flows serve in every
  class's share (the MIP's ``served_requests_per_s``);
- output tokens/s ``lambda x sum_k share_k OSL_k`` (``lambda x OSL`` for one shape);
  tokens/s/GPU divides by every GPU in the plan;
- interactivity: the slowest decode-like instance over the classes it serves; TTFT:
  the slowest first token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from planner.specs import RequestClass

LAYOUT_FIELDS = ("tp", "pp", "ep", "attention_dp", "batch")


def prompt_chunk_tokens(pool: str, row) -> int | None:
    """The prompt chunk a layout of ``pool`` runs at, or None where prompts never run in chunks.

    Prompts are chunked by a prefill or aggregated pipeline (PP > 1: chunked pipeline
    prefill) and by aggregated chunked-prefill piggybacking; a decode pool takes no prompts.
    """
    if pool == "decode" or "prefill_chunk_tokens" not in row:
        return None
    chunked = pool == "aggregated" and bool(row.get("chunked_prefill", False))
    if int(row["pp"]) > 1 or chunked:
        return int(row["prefill_chunk_tokens"])
    return None


@dataclass(frozen=True)
class PoolPlan:
    """One pool: which layouts run, how many instances of each, and what they serve."""

    pool: str
    rows: pd.DataFrame
    """One row per used layout, most instances first: layout fields, ``gpus``, ``instances``,
    ``requests_per_s`` (per instance; NaN for a layout serving several classes),
    ``served_requests_per_s``, the worst ``tokens_per_s_per_user``/``tpot_ms``/``ttft_ms``/
    ``worst_inter_token_gap_ms`` over the classes it serves, ``prefill_chunk_tokens``,
    ``kv_transfer_bytes_per_request`` (unique KV shipped, flow-weighted) and ``classes``."""

    @cached_property
    def instances(self) -> int:
        """Instances in the pool."""
        return int(self.rows["instances"].to_numpy().sum())

    @cached_property
    def gpus(self) -> int:
        """GPUs in the pool."""
        return int((self.rows["instances"].to_numpy() * self.rows["gpus"].to_numpy()).sum())

    @property
    def capacity_requests_per_s(self) -> float:
        """Requests/s the pool can serve (one-shape traffic; a mix: what it serves)."""
        per_instance = self.rows["requests_per_s"]
        if per_instance.isna().any():
            return self.served_requests_per_s
        return float((self.rows["instances"] * per_instance).sum())

    @cached_property
    def served_requests_per_s(self) -> float:
        """Requests/s the plan routes through this pool."""
        return float(self.rows["served_requests_per_s"].to_numpy().sum())

    def nodes(self, gpus_per_node: int) -> int:
        """Nodes this pool touches if it had its nodes to itself (whole-node instances, then packed rest)."""
        whole = self.rows["gpus"] >= gpus_per_node
        nodes = int((self.rows.loc[whole, "gpus"] // gpus_per_node * self.rows.loc[whole, "instances"]).sum())
        rest = int((self.rows.loc[~whole, "gpus"] * self.rows.loc[~whole, "instances"]).sum())
        return nodes + math.ceil(rest / gpus_per_node)

    def layout_text(self) -> str:
        """``2 x TP4 PP1 EP1 DP1 batch 8; 1 x ...`` (with the classes served, for a mix)."""
        parts = []
        for _, r in self.rows.iterrows():
            chunk = " chunked" if self.pool == "aggregated" and bool(r.get("chunked_prefill", False)) else ""
            tokens = prompt_chunk_tokens(self.pool, r)
            chunk += f" chunk {tokens}" if tokens is not None else ""
            chunk += " TBO+EPLB" if bool(r.get("two_batch_overlap", False)) else ""
            chunk += f" MTP{int(r.draft_tokens)}" if int(r.get("draft_tokens", 0)) else ""
            served = f" [{r.classes}]" if "," in str(r.classes) else ""
            parts.append(
                f"{int(r.instances)} x TP{r.tp} PP{r.pp} EP{r.ep} DP{r.attention_dp} batch {r.batch}{chunk}"
                f"{served}"
            )
        return "; ".join(parts)


@dataclass(frozen=True)
class Plan:
    """The best deployment of one mode at one interactivity target (one period)."""

    mode: str
    target_tokens_per_s_per_user: float
    pools: dict[str, PoolPlan]
    classes: tuple[RequestClass, ...]
    shares: np.ndarray
    """Share of each class in this plan's traffic."""
    requests_per_s: float
    """Served rate (see the module docstring)."""
    nodes: int
    gpus_per_node: int
    termination: str
    mip_gap: float
    solve_time_s: float
    solves: int

    @property
    def decode_pool(self) -> PoolPlan:
        """The pool that emits tokens (``decode`` or ``aggregated``)."""
        return self.pools["decode"] if "decode" in self.pools else self.pools["aggregated"]

    @property
    def first_token_pool(self) -> PoolPlan:
        """The pool that makes first tokens (``prefill`` or ``aggregated``)."""
        return self.pools["prefill"] if "prefill" in self.pools else self.pools["aggregated"]

    @cached_property
    def total_gpus(self) -> int:
        """GPUs in all pools."""
        return sum(p.gpus for p in self.pools.values())

    @property
    def osl_tokens(self) -> float:
        """Mean output tokens per request of the traffic mix."""
        return float(sum(s * c.osl_tokens for s, c in zip(self.shares, self.classes, strict=True)))

    @property
    def output_tokens_per_s(self) -> float:
        """Served requests/s x mean OSL."""
        return self.requests_per_s * self.osl_tokens

    @property
    def tokens_per_s_per_gpu(self) -> float:
        """Output tokens/s over every GPU in the plan."""
        return self.output_tokens_per_s / self.total_gpus

    @cached_property
    def tokens_per_s_per_user(self) -> float:
        """Interactivity: the slowest decode-like instance."""
        return float(self.decode_pool.rows["tokens_per_s_per_user"].to_numpy().min())

    @property
    def tpot_ms(self) -> float:
        """Time per output token of the slowest decode-like instance, ms."""
        return float(self.decode_pool.rows["tpot_ms"].max())

    @property
    def worst_inter_token_gap_ms(self) -> float:
        """Longest gap between two tokens of a request in the slowest decode-like instance, ms."""
        return float(self.decode_pool.rows["worst_inter_token_gap_ms"].max())

    @property
    def prefill_chunk_tokens(self) -> float:
        """Prompt chunk of the first-token pool's main instance (NaN where prompts run whole)."""
        pool = self.first_token_pool
        tokens = prompt_chunk_tokens(pool.pool, pool.rows.iloc[0])
        return float("nan") if tokens is None else float(tokens)

    @property
    def ttft_ms(self) -> float:
        """The slowest first token (prefill plus KV transfer), ms."""
        return float(self.first_token_pool.rows["ttft_ms"].max())

    @property
    def kv_transfer_gb_per_s(self) -> float:
        """KV cache shipped from prefill to decode, GB/s (0 when co-located)."""
        if "prefill" not in self.pools:
            return 0.0
        rows = self.pools["prefill"].rows
        return float((rows["served_requests_per_s"] * rows["kv_transfer_bytes_per_request"]).sum()) / 1e9

    @property
    def kv_transfer_gb_per_s_per_gpu(self) -> float:
        """KV bandwidth each prefill GPU must send, GB/s (the link the transfer loads)."""
        if "prefill" not in self.pools:
            return 0.0
        return self.kv_transfer_gb_per_s / self.pools["prefill"].gpus

    def row(self) -> dict:
        """One frontier.csv row (README documents every column)."""
        gpus = {pool: p.gpus for pool, p in self.pools.items()}
        prefill, decode = gpus.get("prefill", 0), gpus.get("decode", 0)
        row = {
            "mode": self.mode,
            "target_tokens_per_s_per_user": self.target_tokens_per_s_per_user,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "output_tokens_per_s": self.output_tokens_per_s,
            "requests_per_s": self.requests_per_s,
            "ttft_ms": self.ttft_ms,
            "tpot_ms": self.tpot_ms,
            "worst_inter_token_gap_ms": self.worst_inter_token_gap_ms,
            "total_gpus": self.total_gpus,
            "prefill_gpus": prefill,
            "decode_gpus": decode,
            "prefill_decode_gpu_ratio": prefill / decode if decode else float("nan"),
        }
        for pool in ("prefill", "decode"):
            plan = self.pools.get(pool) or self.pools.get("aggregated")
            row[f"{pool}_instances"] = plan.instances if pool in self.pools else 0
            lead = plan.rows.iloc[0]
            for name in LAYOUT_FIELDS:
                row[f"{pool}_{name}"] = int(lead[name])
            row[f"{pool}_layouts"] = plan.layout_text()
        if self.mode == "aggregated":
            row["aggregated_instances"] = self.pools["aggregated"].instances
            row["chunked_prefill"] = bool(self.pools["aggregated"].rows.iloc[0]["chunked_prefill"])
        else:
            row["aggregated_instances"] = 0
            row["chunked_prefill"] = False
        row["prefill_chunk_tokens"] = self.prefill_chunk_tokens
        row.update(
            {
                "nodes": self.nodes,
                "kv_transfer_gb_per_s": self.kv_transfer_gb_per_s,
                "kv_transfer_gb_per_s_per_gpu": self.kv_transfer_gb_per_s_per_gpu,
                "termination": str(self.termination),
                "mip_gap": self.mip_gap,
                "solve_time_s": self.solve_time_s,
                "solves": self.solves,
            }
        )
        return row
