"""Candidates of one deployment mode: layouts, their rows per request class, and the mode's pools.

What the model (:mod:`planner.optimize.formulation`) is built from. A layout is one
engine configuration (integer instance counts in the MIP); a row is that layout priced
at one class's shape. :meth:`Candidates.at_target` says which rows and layouts can be
optimal at a fixed interactivity target, so a study switches the others off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.optimize.packing import Geometry
from planner.perf.phases import PREFILL_CHUNK_TOKENS
from planner.space import LAYOUT_COLUMNS, skyline
from planner.specs import RequestClass

FIXED_RATIO_TOLERANCE = 0.03
"""A fixed prefill:decode GPU ratio holds within +-3%, the paper's tolerance."""

MODE_POOLS: dict[str, tuple[str, ...]] = {
    "disaggregated": ("prefill", "decode"),
    "aggregated": ("aggregated",),
    "disaggregated_fixed_ratio": ("prefill", "decode"),
}
"""The pools of each deployment mode; the last pool is the one interactivity is judged on."""

LAYOUT_KEY = ("pool", *LAYOUT_COLUMNS)
"""What makes two candidate rows the same physical instance (one engine, any request class)."""

ONE_SHAPE = "all"
"""Class name of one-shape traffic (see :attr:`planner.specs.Traffic.request_classes`)."""


@dataclass(frozen=True)
class Candidates:
    """Every pool's candidates: physical layouts, and their rows per request class.

    A layout is one engine configuration (integer instance counts in the MIP); a
    row is that layout priced at one class's shape (a continuous flow of that
    class's requests). With one class, rows and layouts coincide.
    """

    layouts: pd.DataFrame
    """One row per layout (index = layout id): ``LAYOUT_KEY``, ``gpus``, ``placement``."""
    table: pd.DataFrame
    """One row per (layout, class): the candidate-table columns plus ``pool``, ``layout``,
    ``request_class``, ``class_index``, ``placement``."""
    dropped: pd.DataFrame
    """Rows that cannot be placed in the cluster's nodes, with a ``reason`` column."""
    classes: tuple[RequestClass, ...]
    """The request classes, in ``class_index`` order."""

    @property
    def pools(self) -> np.ndarray:
        """Pool of each row."""
        return self.table["pool"].to_numpy()

    @property
    def gpus(self) -> np.ndarray:
        """GPUs per instance of each row's layout."""
        return self.table["gpus"].to_numpy(dtype=np.int64)

    @property
    def requests_per_s(self) -> np.ndarray:
        """Requests/s of its class one instance serves, per row."""
        return self.table["requests_per_s"].to_numpy(dtype=float)

    @property
    def tokens_per_s_per_user(self) -> np.ndarray:
        """Per-user output tokens/s of each row (prefill rows: not judged)."""
        return self.table["tokens_per_s_per_user"].to_numpy(dtype=float)

    @property
    def layout_of(self) -> np.ndarray:
        """Layout id of each row."""
        return self.table["layout"].to_numpy(dtype=np.int64)

    @property
    def class_of(self) -> np.ndarray:
        """Class index of each row."""
        return self.table["class_index"].to_numpy(dtype=np.int64)

    @property
    def osl_tokens(self) -> np.ndarray:
        """Output tokens per request of each class."""
        return np.array([c.osl_tokens for c in self.classes], dtype=float)

    @property
    def shares(self) -> np.ndarray:
        """Default share of each class."""
        return np.array([c.share_fraction for c in self.classes], dtype=float)

    def at_target(self, judged_pool: str, need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and layouts that can be optimal at a fixed target: ``(allowed_rows, usable_layouts)``.

        ``need[r]`` is the interactivity row ``r`` must reach (its class's floor or the
        target); rows of ``judged_pool`` below it are not allowed. At a fixed target,
        interactivity above it and TTFT below its limit no longer rank rows, only requests/s
        per GPU does: a layout is usable unless one other layout of its pool, on a GPU count
        dividing its own, serves *every* class it is allowed to serve at least as fast per GPU
        (then its instances can be swapped for that layout's copies without a new layout:
        :func:`planner.space.mix_non_dominated`; exact ties keep the least layout id). Beaten
        in each class by a different layout is not enough, under ``layouts_per_pool``.
        """
        allowed = (self.pools != judged_pool) | (self.tokens_per_s_per_user >= need)
        n = len(self.layouts)
        per_gpu = np.zeros((n, len(self.classes)))  # 0: the class is not served (rates are positive)
        rows = np.flatnonzero(allowed)
        per_gpu[self.layout_of[rows], self.class_of[rows]] = self.requests_per_s[rows] / self.gpus[rows]
        serves = per_gpu.max(axis=1) > 0
        usable = np.zeros(n, dtype=bool)
        layout_gpus = self.layouts["gpus"].to_numpy(dtype=np.int64)
        layout_pools = self.layouts["pool"].to_numpy()
        for pool in np.unique(layout_pools):
            members = np.flatnonzero((layout_pools == pool) & serves)
            if len(members):
                usable[members[skyline(per_gpu[members], layout_gpus[members])]] = True
        return allowed, usable

    def usable_somewhere(self, judged_pool: str) -> Candidates:
        """Without the layouts no target can use: the other pools' layouts :meth:`at_target` drops.

        Rows of the pools not judged on interactivity are allowed at every target, so which of
        their layouts :meth:`at_target` keeps never changes; the rest never enter a plan, and a
        model built without them is smaller and has the same optimum everywhere (a prefill row
        of worse rate per GPU kept in the table for its lower TTFT is one of them).
        """
        _, usable = self.at_target(judged_pool, np.full(len(self.table), np.inf))
        keep = usable | (self.layouts["pool"].to_numpy() == judged_pool)
        return self.restrict(np.ones(len(self.table), dtype=bool), keep)

    def restrict(self, rows: np.ndarray, layouts: np.ndarray) -> Candidates:
        """Only these rows of these layouts (boolean masks), renumbered: a smaller model at a fixed target."""
        keep = rows & layouts[self.layout_of]
        ids = np.cumsum(layouts) - 1
        table = self.table[keep].assign(layout=ids[self.layout_of[keep]]).reset_index(drop=True)
        return Candidates(self.layouts[layouts].reset_index(drop=True), table, self.dropped, self.classes)


def combine(
    tables: dict[str, pd.DataFrame],
    geometry: Geometry,
    classes: tuple[RequestClass, ...] | None = None,
) -> Candidates:
    """Candidates of one-shape traffic: pool -> candidate table (``classes`` names its one shape)."""
    shape = classes or (RequestClass(name=ONE_SHAPE, isl_tokens=1, osl_tokens=_osl(tables)),)
    return combine_classes({shape[0].name: tables}, geometry, shape)


def _osl(tables: dict[str, pd.DataFrame]) -> int:
    values = {int(v) for t in tables.values() for v in t["osl_tokens"]}
    if len(values) != 1:
        raise ValueError("one-shape candidate tables must share one osl_tokens")
    return values.pop()


def combine_classes(
    tables: dict[str, dict[str, pd.DataFrame]],
    geometry: Geometry,
    classes: tuple[RequestClass, ...],
) -> Candidates:
    """Merge per-class candidate tables (class -> pool -> table) into layouts and rows.

    Layouts are matched on :data:`LAYOUT_KEY`; sizes the cluster cannot place are set aside.
    """
    frames = []
    for k, cls in enumerate(classes):
        for pool, frame in tables[cls.name].items():
            frames.append(frame.assign(pool=pool, request_class=cls.name, class_index=k))
    rows = pd.concat(frames, ignore_index=True)
    for option in ("two_batch_overlap", "eplb"):  # hand-made tables (tests, notebooks) may omit them
        if option not in rows:
            rows[option] = False
    if "prefill_chunk_tokens" not in rows:  # hand-made tables (tests, notebooks) may omit it
        rows["prefill_chunk_tokens"] = PREFILL_CHUNK_TOKENS
    if "draft_tokens" not in rows:  # hand-made tables (tests, notebooks) may omit it
        rows["draft_tokens"] = 0
    if "kv_transfer_bytes_per_request" not in rows:  # hand-made tables (tests, notebooks) may omit it
        rows["kv_transfer_bytes_per_request"] = rows.get("kv_cache_bytes_per_request", 0.0)
    placement = rows["gpus"].map(geometry.placement)
    ok = placement.isin(["sub_node", "whole_nodes", "whole_domains"])
    dropped = rows[~ok].assign(reason=placement[~ok]).reset_index(drop=True)
    rows = rows[ok].assign(placement=placement[ok]).reset_index(drop=True)
    layouts = rows.drop_duplicates(list(LAYOUT_KEY)).loc[:, [*LAYOUT_KEY, "gpus", "placement"]]
    layouts = layouts.reset_index(drop=True)
    ids = layouts.reset_index().rename(columns={"index": "layout"})[[*LAYOUT_KEY, "layout"]]
    rows = rows.merge(ids, on=list(LAYOUT_KEY), how="left", sort=False)
    return Candidates(layouts, rows, dropped, tuple(classes))


def sub_node_groups(layouts: pd.DataFrame, geometry: Geometry, exclusive_nodes: bool) -> dict[str, list[int]]:
    """Sub-node layouts grouped by what may share a node: all, per pool, per size, or both.

    Keys are labels (``shared``, ``prefill``, ``shared/2gpu``, ...) so the model reads well when printed.
    """
    groups: dict[str, list[int]] = {}
    for c, row in layouts.iterrows():
        if row["placement"] != "sub_node":
            continue
        parts = [row["pool"]] if exclusive_nodes else ["shared"]
        if not (geometry.sub_node_chain or geometry.sub_node_patterns):
            parts.append(f"{int(row['gpus'])}gpu")
        groups.setdefault("/".join(parts), []).append(int(c))
    return groups
