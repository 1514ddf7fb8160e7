"""``disagg capacity``: offered load x interactivity target -> what to deploy and what it costs.

Why it exists
    A capacity planner fills a spreadsheet: for each load they may face and each
    interactivity they may promise, how many GPUs and nodes, which layouts, what per
    hour, per million tokens and in kilowatts. Each cell is a ``min_gpus`` (or, for a
    ``min_cost`` instance, ``min_cost``) question on the same budget, so each mode's MIP
    is built once and re-solved with only the load and the target changed (the persistent
    solver keeps its model; ``tests/test_capacity.py`` checks it is built once per mode).

Rows
    One per load x target x mode (``disaggregated``, ``aggregated``), with ``recommended``
    marking the mode with fewer GPUs (then fewer nodes; disaggregated on a tie), and
    ``max_requests_per_s_on_budget``: the most the whole budget serves at that target, so
    an infeasible cell says how far off it is. Cost and power count the whole nodes a plan
    occupies and price the offered load's tokens (the capacity beyond it is headroom);
    see :mod:`planner.economics`.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd

from planner.economics import COLUMNS as ECONOMICS_COLUMNS
from planner.economics import counted_gpus, economics
from planner.errors import InfeasibleError, SpecError
from planner.frontier import MODES, mode_optimizer, mode_tables
from planner.optimize.plan import Plan
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.specs import LOAD_OBJECTIVES

COLUMNS = (
    "offered_requests_per_s",
    "target_tokens_per_s_per_user",
    "mode",
    "recommended",
    "feasible",
    "total_gpus",
    "nodes",
    "prefill_gpus",
    "decode_gpus",
    "aggregated_gpus",
    "prefill_layouts",
    "decode_layouts",
    "aggregated_layouts",
    "capacity_requests_per_s",
    "tokens_per_s_per_user",
    "ttft_ms",
    "offered_output_tokens_per_s",
    "billed_gpus",
    *ECONOMICS_COLUMNS,
    "max_requests_per_s_on_budget",
)
"""Columns of capacity.csv (README documents each with its unit)."""


def capacity_problem(problem: Problem, first_load: float) -> Problem:
    """The problem as a load question: its own min_gpus/min_cost objective, else min_gpus."""
    objective = problem.instance.objective if problem.instance.objective in LOAD_OBJECTIVES else "min_gpus"
    instance = problem.instance.update({"objective": objective, "traffic.requests_per_s": first_load})
    return dataclasses.replace(problem, instance=instance)


def capacity_table(
    problem: Problem,
    loads_requests_per_s: list[float],
    targets_tokens_per_s_per_user: list[float],
    calibration: Calibration | None = None,
    *,
    solver: str = "highs",
    time_limit_s: float = 60.0,
) -> pd.DataFrame:
    """Every load x target x mode, each mode's model built once and re-solved (see the module docstring)."""
    if not loads_requests_per_s or not targets_tokens_per_s_per_user:
        raise SpecError("give at least one load (--load) and one target (--min-tokens-per-s-per-user)")
    question = capacity_problem(problem, loads_requests_per_s[0])
    osl = float(sum(c.share_fraction * c.osl_tokens for c in question.request_classes))
    rows = []
    reasons = {}
    for mode in MODES:
        try:
            optimizer = mode_optimizer(
                question,
                mode,
                mode_tables(question, mode, calibration),
                solver=solver,
                time_limit_s=time_limit_s,
            )
        except InfeasibleError as err:
            reasons[mode] = str(err)
            continue
        for target in targets_tokens_per_s_per_user:
            ceiling = optimizer.max_requests_per_s(target)
            for load in loads_requests_per_s:
                optimizer.controls.set_load(load)
                plan = optimizer.best_at(target) if ceiling is not None and ceiling >= load else None
                rows.append(_row(question, mode, load, target, plan, osl, ceiling))
    if not rows:
        raise InfeasibleError("; and ".join(f"{mode}: {why}" for mode, why in reasons.items()))
    frame = pd.DataFrame(rows)
    frame["recommended"] = _recommended(frame)
    return frame.loc[:, list(COLUMNS)]


def _row(
    problem: Problem, mode: str, load: float, target: float, plan: Plan | None, osl: float, ceiling
) -> dict:
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(
        offered_requests_per_s=load,
        target_tokens_per_s_per_user=target,
        mode=mode,
        feasible=plan is not None,
        max_requests_per_s_on_budget=np.nan if ceiling is None else ceiling,
        offered_output_tokens_per_s=load * osl,
    )
    for pool in ("prefill", "decode", "aggregated"):
        row[f"{pool}_layouts"] = ""
    if plan is None:
        return row
    for name, pool in plan.pools.items():
        row[f"{name}_gpus"] = pool.gpus
        row[f"{name}_layouts"] = pool.layout_text()
    billed = counted_gpus(plan.nodes, plan.gpus_per_node)
    row.update(
        total_gpus=plan.total_gpus,
        nodes=plan.nodes,
        capacity_requests_per_s=plan.requests_per_s,
        tokens_per_s_per_user=plan.tokens_per_s_per_user,
        ttft_ms=plan.ttft_ms,
        billed_gpus=int(billed),
        **{k: float(v) for k, v in economics(billed, load * osl, problem.hardware).items()},
    )
    return row


def _recommended(frame: pd.DataFrame) -> pd.Series:
    """Per load x target, the feasible mode with the fewest GPUs (then nodes; disaggregated first)."""
    ranked = frame.assign(_tie=(frame["mode"] != "disaggregated").astype(int))
    ranked = ranked[ranked["feasible"]].sort_values(["total_gpus", "nodes", "_tie"], kind="mergesort")
    best = ranked.groupby(["offered_requests_per_s", "target_tokens_per_s_per_user"]).head(1).index
    return frame.index.isin(best)


def render_capacity(frame: pd.DataFrame, *, xlsx: bool) -> dict[str, bytes]:
    """capacity.csv (and capacity.xlsx: the table, and GPUs of the recommended plan per load x target)."""
    files = {"capacity.csv": frame.to_csv(index=False).encode()}
    if xlsx:
        best = frame[frame["recommended"]]
        grid = best.pivot_table(
            index="offered_requests_per_s", columns="target_tokens_per_s_per_user", values="total_gpus"
        )
        book = io.BytesIO()
        with pd.ExcelWriter(book, engine="openpyxl") as writer:
            frame.to_excel(writer, sheet_name="capacity", index=False)
            grid.to_excel(writer, sheet_name="gpus_recommended")
        files["capacity.xlsx"] = book.getvalue()
    return files
