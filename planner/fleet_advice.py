"""``disagg fleet``: the best mixed-fleet plan per mode at a target, against each GPU type alone.

The comparison answers the question a team with two GPU types asks: does splitting the
pools across types beat running everything on either type, in output tokens per dollar?
Every plan comes from the same persistent MIP per mode (:mod:`planner.optimize.fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.errors import InfeasibleError
from planner.optimize.fleet import MODE_POOLS, FleetOptimizer, FleetPlan
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.specs import LOAD_OBJECTIVES

FLEET_OBJECTIVES = {
    "max_tokens_per_s_per_gpu": "the most output tokens per dollar",
    "max_throughput": "the most requests/s the fleet serves, then the cheapest",
    "min_cost": "the cheapest nodes serving traffic.requests_per_s",
    "min_gpus": "the fewest GPUs serving traffic.requests_per_s",
}
"""What each instance objective asks of a mixed fleet."""


@dataclass
class FleetAnswer:
    """Per mode: the whole-fleet plan and each single-type plan (None where a type alone has none)."""

    problem: Problem
    target_tokens_per_s_per_user: float
    mixed: dict[str, FleetPlan | None]
    single: dict[str, dict[str, FleetPlan | None]]


def fleet_answer(problem: Problem, target: float, calibration: Calibration | None = None) -> FleetAnswer:
    """Solve every mode on the whole fleet and on each type alone; raise only if nothing has a plan."""
    mixed: dict[str, FleetPlan | None] = {}
    single: dict[str, dict[str, FleetPlan | None]] = {}
    for mode in MODE_POOLS:
        try:
            optimizer = FleetOptimizer(problem, mode, calibration)
        except InfeasibleError:
            mixed[mode], single[mode] = None, {}
            continue
        mixed[mode] = _try(optimizer, target, None)
        single[mode] = {t.name: _try(optimizer, target, t.name) for t in optimizer.types}
    if all(plan is None for plan in mixed.values()):
        load = problem.instance.traffic.requests_per_s
        serving = f" serves {load:g} requests/s and" if problem.instance.objective in LOAD_OBJECTIVES else ""
        raise InfeasibleError(
            f"no plan on the fleet{serving} reaches {target:g} tokens/s per user; lower "
            "--min-tokens-per-s-per-user or the load, or add nodes to cluster.fleet"
        )
    return FleetAnswer(problem, target, mixed, single)


def _try(optimizer: FleetOptimizer, target: float, only: str | None) -> FleetPlan | None:
    try:
        return optimizer.solve(target, only=only)
    except InfeasibleError:
        return None


def _plan_lines(plan: FleetPlan) -> list[str]:
    lines = []
    plan_classes = set(",".join(plan.rows["classes"]).split(","))
    for _, r in plan.rows.iterrows():
        drafts = f" MTP{int(r.draft_tokens)}" if int(r.get("draft_tokens", 0)) else ""
        served = f" [{r.classes}]" if len(plan_classes) > 1 else ""
        lines.append(
            f"    {r.pool} on {r.gpu_type}: {int(r.instances)} x TP{r.tp} PP{r.pp} EP{r.ep} "
            f"DP{r.attention_dp} batch {r.batch}{drafts} ({int(r.gpus)} GPUs each){served}"
        )
    nodes = ", ".join(f"{n} {name}" for name, n in plan.nodes.items())
    lines.append(
        f"    {plan.output_tokens_per_usd:,.0f} output tokens per dollar; {plan.output_tokens_per_s:,.0f} "
        f"output tokens/s at {plan.tokens_per_s_per_user:.1f} tokens/s per user; nodes: {nodes}; "
        f"${plan.cost_usd_per_hour:,.2f} per hour"
    )
    return lines


def fleet_text(answer: FleetAnswer) -> str:
    """The plan per mode with its split across types, and how each type alone compares."""
    p = answer.problem
    lines = [
        f"{p.label}: {p.model.name} ({p.instance.precision}), {p.traffic_text}, at >= "
        f"{answer.target_tokens_per_s_per_user:g} tokens/s per user; objective: "
        f"{FLEET_OBJECTIVES[p.instance.objective]} (whole nodes at each type's price)."
    ]
    for mode, plan in answer.mixed.items():
        if plan is None:
            lines.append(f"{mode}: no plan on this fleet")
            continue
        split = "; ".join(
            f"{pool} " + ", ".join(f"{g} GPUs {name}" for name, g in types.items())
            for pool, types in plan.split().items()
        )
        lines.append(f"{mode} on the whole fleet ({split}):")
        lines += _plan_lines(plan)
        for name, alone in answer.single[mode].items():
            if alone is None:
                lines.append(f"  {name} alone: no plan")
            else:
                gain = plan.output_tokens_per_usd / alone.output_tokens_per_usd
                lines.append(
                    f"  {name} alone: {alone.output_tokens_per_usd:,.0f} output tokens per dollar "
                    f"(the fleet plan: {gain:.3f}x), {alone.output_tokens_per_s:,.0f} output tokens/s, "
                    f"${alone.cost_usd_per_hour:,.2f} per hour, {alone.total_gpus} GPUs"
                )
    return "\n".join(lines)


FLEET_PLAN_COLUMNS = (
    *("pool", "gpu_type", "tp", "pp", "ep", "attention_dp", "batch", "draft_tokens", "gpus", "instances"),
    *("tokens_per_s_per_user", "classes"),
)
"""What ``plan --json`` reports of each layout a fleet plan runs (``gpus``: per instance)."""


def fleet_plan_json(plan: FleetPlan) -> dict:
    """One fleet plan as ``plan --json`` reports it: what it delivers, costs and runs where."""
    columns = [c for c in FLEET_PLAN_COLUMNS if c in plan.rows.columns]
    return {
        "output_tokens_per_usd": plan.output_tokens_per_usd,
        "output_tokens_per_s": plan.output_tokens_per_s,
        "requests_per_s": plan.requests_per_s,
        "tokens_per_s_per_user": plan.tokens_per_s_per_user,
        "cost_usd_per_hour": plan.cost_usd_per_hour,
        "total_gpus": plan.total_gpus,
        "nodes": plan.nodes,
        "gpus_by_pool_and_type": plan.split(),
        "layouts": plan.rows[columns].to_dict("records"),
        "solves": plan.solves,
    }


def fleet_json(answer: FleetAnswer) -> dict:
    """The ``fleet`` entry of ``plan --json`` on a mixed-fleet instance (what :func:`fleet_text` prints).

    Per mode: the whole-fleet plan, each GPU type alone, and the fleet plan's output tokens
    per dollar over each type alone (None where either has no plan).
    """
    modes = {}
    for mode, plan in answer.mixed.items():
        alone = answer.single[mode]
        modes[mode] = {
            "fleet": plan and fleet_plan_json(plan),
            "alone": {name: other and fleet_plan_json(other) for name, other in alone.items()},
            "fleet_over_alone": {
                name: plan.output_tokens_per_usd / other.output_tokens_per_usd if plan and other else None
                for name, other in alone.items()
            },
        }
    return {"objective": FLEET_OBJECTIVES[answer.problem.instance.objective], "modes": modes}


def fleet_frontier(problem: Problem, calibration: Calibration | None = None) -> pd.DataFrame:
    """``fleet_frontier.csv``: output tokens per dollar against interactivity on the fleet, exact, both modes.

    Traced like the main frontier: solve at the lowest decode (or aggregated) interactivity,
    then at the smallest one above the interactivity the plan achieved, until none is left;
    rows a more interactive row matches or beats are dropped. One row per Pareto point with
    the GPUs per pool and type (``<pool>_gpus_<type>``) and nodes per type (``nodes_<type>``).
    """
    rows = []
    for mode in MODE_POOLS:
        try:
            optimizer = FleetOptimizer(problem, mode, calibration)
        except InfeasibleError:
            continue
        serving = optimizer.rows[optimizer.rows["pool"] != "prefill"]
        targets = np.unique(serving["tokens_per_s_per_user"].to_numpy(dtype=float))
        points: list[FleetPlan] = []
        target = float(targets[0]) if len(targets) else None
        while target is not None:
            plan = _try(optimizer, target, None)
            if plan is None:
                break
            points.append(plan)
            above = targets[targets > plan.tokens_per_s_per_user * (1 + 1e-12)]
            target = float(above[0]) if len(above) else None
        kept = [
            p
            for k, p in enumerate(points)
            if all(p.output_tokens_per_usd > q.output_tokens_per_usd * (1 + 1e-9) for q in points[k + 1 :])
        ]
        rows += [_frontier_row(plan, optimizer) for plan in kept]
    if not rows:
        raise InfeasibleError("no mode has a plan on this fleet at any interactivity")
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if "_gpus_" in c or c.startswith("nodes_")]
    return frame.fillna(dict.fromkeys(counts, 0)).astype(dict.fromkeys(counts, int))


def _frontier_row(plan: FleetPlan, optimizer: FleetOptimizer) -> dict:
    row = {
        "mode": plan.mode,
        "target_tokens_per_s_per_user": plan.target_tokens_per_s_per_user,
        "tokens_per_s_per_user": plan.tokens_per_s_per_user,
        "output_tokens_per_usd": plan.output_tokens_per_usd,
        "output_tokens_per_s": plan.output_tokens_per_s,
        "requests_per_s": plan.requests_per_s,
        "cost_usd_per_hour": plan.cost_usd_per_hour,
        "total_gpus": plan.total_gpus,
    }
    for gpu in optimizer.types:
        row[f"nodes_{gpu.name}"] = plan.nodes.get(gpu.name, 0)
        for pool in MODE_POOLS[plan.mode]:
            row[f"{pool}_gpus_{gpu.name}"] = plan.split().get(pool, {}).get(gpu.name, 0)
    row["layouts"] = "; ".join(line.strip() for line in _plan_lines(plan)[:-1])
    row["solves"] = plan.solves
    return row
