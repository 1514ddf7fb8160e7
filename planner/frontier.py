"""The exact Pareto frontier of throughput per GPU against interactivity, both modes (docs/DESIGN.md §4-5).

Why it is exact with one solve per point
    The best plan at target ``T`` may use only decode-like candidates with
    ``tokens_per_s_per_user >= T``, so the optimum is a step function of ``T`` that
    can change only at those candidates' interactivities. Solve at the lowest
    one; the plan found achieves some interactivity ``u >= T`` and is optimal for
    every target up to ``u`` (its feasible set only shrinks as ``T`` grows, and the
    plan stays feasible). So jump straight to the smallest candidate value above
    ``u`` and repeat until nothing is left. Each solve yields one row, and no
    target between two rows has a better plan. Rows that a later (more
    interactive) row matches or beats are dropped, leaving the Pareto set.

Both modes are traced from the same performance model, budget and SLOs, so the
disaggregated / aggregated comparison is like for like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from planner.compare import FIXED_RATIO_MODE, step_comparison
from planner.economics import fleet_gpus, step_economics, with_economics
from planner.errors import InfeasibleError
from planner.optimize.model import MODE_POOLS, combine_classes
from planner.optimize.optimizer import DEFAULT_NODE_LIMIT, ModeOptimizer
from planner.optimize.packing import geometry
from planner.optimize.plan import Plan
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.space import mix_non_dominated
from planner.specs import LOAD_OBJECTIVES

log = logging.getLogger(__name__)

MODES = ("disaggregated", "aggregated")
"""The two deployment modes every frontier compares (``--fixed-ratio`` adds :data:`FIXED_RATIO_MODE`)."""
SAME_VALUE = 1e-9
"""Relative tolerance under which two objective values count as equal."""


@dataclass
class Frontier:
    """Every mode's Pareto-optimal plans, the candidate counts, and why a mode has none."""

    problem: Problem
    plans: dict[str, list[Plan]]
    infeasible: dict[str, str] = field(default_factory=dict)
    funnels: dict[str, dict] = field(default_factory=dict)
    solver: str = "highs"
    solver_version: str = ""

    def frame(self) -> pd.DataFrame:
        """frontier.csv: one row per Pareto point and mode, interactivity ascending."""
        rows = [plan.row() for mode in (*MODES, FIXED_RATIO_MODE) for plan in self.plans.get(mode, [])]
        return with_economics(pd.DataFrame(rows), self.problem.hardware, fleet_gpus(self.problem))

    def comparison(self) -> pd.DataFrame:
        """comparison.csv: every frontier as a step function, the gain and the ratios, at every breakpoint.

        The gain (:mod:`planner.compare`) reads tokens/s per GPU, or total output tokens/s on an
        owned fleet (objective ``max_throughput``).
        """
        frame = self.frame()
        fleet = self.problem.instance.objective == "max_throughput"
        by = "output_tokens_per_s" if fleet else "tokens_per_s_per_gpu"
        modes = tuple(dict.fromkeys((*MODES, *self.modes)))
        return step_economics(step_comparison(frame, by), frame, modes, by)

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes that were traced (feasible or not)."""
        return tuple(m for m in (*MODES, FIXED_RATIO_MODE) if m in self.plans or m in self.infeasible)


def score(plan: Plan, objective: str) -> float:
    """Higher is better: tokens/s per GPU, total tokens/s, or fewer GPUs, or lower cost (whole nodes)."""
    if objective == "max_tokens_per_s_per_gpu":
        return plan.tokens_per_s_per_gpu
    if objective == "max_throughput":
        return plan.output_tokens_per_s
    if objective == "min_gpus":
        return -plan.total_gpus
    return -plan.nodes


def pareto(plans: list[Plan], objective: str, same_value: float = SAME_VALUE) -> list[Plan]:
    """Drop plans a more interactive plan matches or beats (plans sorted by interactivity).

    ``same_value``: relative difference under which two values match (a mix's ratios are
    optimal only to :data:`~planner.optimize.optimizer.MIX_RATIO_TOLERANCE`).
    """
    kept: list[Plan] = []
    best_after = -np.inf
    for plan in sorted(plans, key=lambda p: p.tokens_per_s_per_user, reverse=True):
        value = score(plan, objective)
        if value > best_after + same_value * max(abs(best_after), 1.0) or not kept:
            kept.append(plan)
            best_after = max(best_after, value)
    return kept[::-1]


def trace(optimizer: ModeOptimizer, objective: str) -> list[Plan]:
    """The exact frontier of one mode: one solve per breakpoint actually reached."""
    points = np.array(optimizer.breakpoints)
    plans = []
    target = float(points[0])
    while True:
        plan = optimizer.best_at(target)
        if plan is None:
            break
        plans.append(plan)
        log.info(
            "%s: point %d: %s tokens/s per GPU at %.1f tokens/s per user",
            optimizer.mode,
            len(plans),
            f"{plan.tokens_per_s_per_gpu:,.1f}",
            plan.tokens_per_s_per_user,
        )
        # Strictly past the target too, so the trace always moves on (it ends where no plan is left).
        above = points[points > max(plan.tokens_per_s_per_user, target)]
        if not len(above):
            break
        target = float(above[0])
    return pareto(plans, objective, optimizer.ratio_tolerance)


Tables = dict[str, dict[str, pd.DataFrame]]
"""Candidate tables of a mode: request class -> pool -> table."""


def mode_tables(
    problem: Problem, mode: str, calibration: Calibration | None, *, prune: bool = True
) -> Tables:
    """The candidate tables of a mode's pools for every request class.

    One-shape traffic gets each pool's pruned table. For a mix, every layout is priced
    for every class (an instance may serve several classes) and a layout is dropped only
    when one other layout is at least as good for every class
    (:func:`planner.space.mix_non_dominated`); rows a class cannot run (memory, its TTFT)
    are absent for that class. Raises InfeasibleError when a pool has no candidate for
    some class.
    """
    pools = MODE_POOLS[mode]
    classes = problem.request_classes
    if len(classes) == 1:
        return {
            classes[0].name: {pool: problem.candidate_table(pool, calibration, prune=prune) for pool in pools}
        }
    tables: Tables = {c.name: {} for c in classes}
    for pool in pools:
        full = []
        for cls in classes:
            try:
                full.append(problem.candidate_table(pool, calibration, prune=False, request_class=cls.name))
            except InfeasibleError as err:
                raise InfeasibleError(f"request class '{cls.name}': {err}") from None
        kept = mix_non_dominated(full, pool) if prune else full
        for cls, frame in zip(classes, kept, strict=True):
            tables[cls.name][pool] = frame.reset_index(drop=True)
    return tables


def mode_optimizer(
    problem: Problem,
    mode: str,
    tables: Tables,
    *,
    solver: str = "highs",
    fixed_ratio: float | None = None,
    time_limit_s: float = 60.0,
    node_limit: int | None = DEFAULT_NODE_LIMIT,
) -> ModeOptimizer:
    """Build one mode's model and persistent solver from its candidate tables."""
    inst = problem.instance
    sizes = {int(g) for pools in tables.values() for t in pools.values() for g in t["gpus"]}
    geo = geometry(problem.hardware, problem.max_gpus, sizes)
    classes = tuple(problem.request_classes)
    candidates = combine_classes(tables, geo, classes).usable_somewhere(MODE_POOLS[mode][-1])
    geo = geometry(problem.hardware, problem.max_gpus, {int(g) for g in candidates.layouts["gpus"]})
    for pool in MODE_POOLS[mode]:
        if not (candidates.table["pool"] == pool).any():
            reasons = "; ".join(sorted(set(candidates.dropped["reason"])))
            raise InfeasibleError(
                f"no {pool} candidate can be placed in {problem.hardware.gpus_per_node}-GPU nodes "
                f"({reasons}); change hardware.gpus_per_node or the budget"
            )
    floors = np.array([c.tokens_per_s_per_user_min or 0.0 for c in classes])
    return ModeOptimizer(
        mode,
        candidates,
        geo,
        layouts_per_pool=inst.layouts_per_pool,
        exclusive_nodes=inst.cluster.exclusive_nodes,
        objective=inst.objective,
        load_requests_per_s=inst.traffic.requests_per_s,
        price_usd_per_gpu_hour=problem.hardware.price_usd_per_gpu_hour,
        fixed_ratio=fixed_ratio,
        class_floors=floors if floors.any() else None,
        solver=solver,
        time_limit_s=time_limit_s,
        node_limit=node_limit,
    )


def why_no_plan(problem: Problem, optimizer: ModeOptimizer, target: float | None = None) -> str:
    """Explain an empty mode: the budget cannot hold one instance per pool, or the load is too high.

    ``target`` is the interactivity asked (default: the lowest any layout offers).
    """
    table = optimizer.candidates.table
    smallest = {pool: int(table.loc[table["pool"] == pool, "gpus"].min()) for pool in optimizer.pools}
    need = sum(smallest.values())
    where = f"no {optimizer.mode} plan of {problem.label} fits"
    if need > problem.max_gpus:
        parts = " + ".join(f"{g} ({pool})" for pool, g in smallest.items())
        return (
            f"{where}: the smallest instances need {parts} = {need} GPUs but the budget is "
            f"{problem.max_gpus}; raise cluster.max_gpus (or max_nodes) to at least {need}"
        )
    load = problem.instance.traffic.requests_per_s
    cluster = problem.instance.cluster
    budget = " or ".join(f"cluster.{f}" for f in ("max_gpus", "max_nodes") if getattr(cluster, f) is not None)
    if problem.instance.objective in LOAD_OBJECTIVES and load is not None:
        at = optimizer.breakpoints[0] if target is None else target
        capacity = optimizer.max_requests_per_s(at)
        if capacity is not None and capacity < load:
            return (
                f"{where}: traffic.requests_per_s = {load:g} exceeds the most this budget can serve at "
                f"{at:g} tokens/s per user, {capacity:.4g} requests/s; lower the load, or raise {budget} "
                "(objective max_throughput answers how much the budget serves)"
            )
    fixes = [f"raise {budget}"] + (["set cluster.exclusive_nodes: false"] if cluster.exclusive_nodes else [])
    return f"{where} within the budget and packing rules; {' or '.join(fixes)}"


def lp_path(path: Path, mode: str) -> Path:
    """Where ``--write-lp FILE`` puts one mode's model: ``FILE`` with ``_<mode>`` before its suffix."""
    return path.with_name(f"{path.stem}_{mode}{path.suffix or '.lp'}")


def solve_frontier(
    problem: Problem,
    calibration: Calibration | None = None,
    *,
    solver: str = "highs",
    modes: tuple[str, ...] = MODES,
    fixed_ratio: float | None = None,
    time_limit_s: float = 60.0,
    write_lp: Path | None = None,
    node_limit: int | None = DEFAULT_NODE_LIMIT,
) -> Frontier:
    """Trace the exact frontier of every mode; raise InfeasibleError only if no mode has a plan.

    ``write_lp``: also write each mode's model, as set for its first solve, to :func:`lp_path`.
    """
    plans: dict[str, list[Plan]] = {}
    infeasible: dict[str, str] = {}
    funnels: dict[str, dict] = {}
    version = ""
    if fixed_ratio is not None:
        modes = (*modes, FIXED_RATIO_MODE)
    for mode in modes:
        log.info("%s: pricing the candidate layouts of %s", mode, problem.label)
        try:
            tables = mode_tables(problem, mode, calibration)
            single = len(tables) == 1
            for cls, pools in tables.items():
                for pool, t in pools.items():
                    funnels[pool if single else f"{cls}/{pool}"] = t.attrs.get("funnel", {})
            optimizer = mode_optimizer(
                problem,
                mode,
                tables,
                solver=solver,
                fixed_ratio=fixed_ratio if mode == FIXED_RATIO_MODE else None,
                time_limit_s=time_limit_s,
                node_limit=node_limit,
            )
        except InfeasibleError as err:
            infeasible[mode] = str(err)
            continue
        version = optimizer.backend.version
        if write_lp is not None:
            optimizer.write_lp(lp_path(write_lp, mode), optimizer.breakpoints[0])
        log.info(
            "%s: %d candidates, %d interactivity breakpoints; tracing the exact frontier",
            mode,
            len(optimizer.candidates.table),
            len(optimizer.breakpoints),
        )
        found = trace(optimizer, problem.instance.objective)
        if found:
            plans[mode] = found
        else:
            infeasible[mode] = why_no_plan(problem, optimizer)
    if not any(mode in plans for mode in MODES):
        raise InfeasibleError("; and ".join(f"{mode}: {why}" for mode, why in infeasible.items()))
    return Frontier(problem, plans, infeasible, funnels, solver, version)
