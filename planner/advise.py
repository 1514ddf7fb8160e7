"""``disagg plan``: the best deployment at one interactivity target, and what co-location would give.

A capacity planner's question is concrete ("we promise 50 tokens/s per user:
what do we deploy?"), so this module solves both modes at that one target and
explains the answer: pools, layouts, instance counts, nodes, GPUs, predicted
metrics, KV bandwidth, and the gap to the best aggregated alternative. When no
plan exists it says which constraint binds and what would make it feasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from planner.economics import counted_gpus, economics, fleet_gpus
from planner.errors import InfeasibleError
from planner.frontier import MODES, lp_path, mode_optimizer, mode_tables, why_no_plan
from planner.humanize import plural
from planner.optimize.optimizer import DEFAULT_NODE_LIMIT
from planner.optimize.plan import LAYOUT_FIELDS, Plan, prompt_chunk_tokens
from planner.perf.calibration import Calibration
from planner.problem import Problem


@dataclass(frozen=True)
class Advice:
    """Both modes' best plans at one target (None where a mode has none, with the reason)."""

    problem: Problem
    target_tokens_per_s_per_user: float
    plans: dict[str, Plan | None]
    reasons: dict[str, str]
    solver: str

    @property
    def recommended(self) -> Plan:
        """The plan to deploy: the better of the two modes by the instance's objective."""
        feasible = [p for p in self.plans.values() if p is not None]
        objective = self.problem.instance.objective
        if objective == "max_tokens_per_s_per_gpu":
            return max(feasible, key=lambda p: (p.tokens_per_s_per_gpu, p.mode == "disaggregated"))
        if objective == "max_throughput":
            return max(feasible, key=lambda p: (p.output_tokens_per_s, -p.total_gpus, p.mode != "aggregated"))
        if objective == "min_gpus":
            return min(feasible, key=lambda p: (p.total_gpus, p.mode != "disaggregated"))
        return min(feasible, key=lambda p: (p.nodes, p.mode != "disaggregated"))

    @property
    def alternative(self) -> Plan | None:
        """The best plan of the other mode, if any."""
        other = [p for p in self.plans.values() if p is not None and p.mode != self.recommended.mode]
        return other[0] if other else None

    @property
    def disaggregated_over_aggregated(self) -> float | None:
        """Tokens/s per GPU of the disaggregated plan over the aggregated one (None if either is missing)."""
        dis, agg = self.plans.get("disaggregated"), self.plans.get("aggregated")
        if dis is None or agg is None:
            return None
        return dis.tokens_per_s_per_gpu / agg.tokens_per_s_per_gpu


def advise(
    problem: Problem,
    min_tokens_per_s_per_user: float,
    calibration: Calibration | None = None,
    *,
    solver: str = "highs",
    time_limit_s: float = 60.0,
    write_lp: Path | None = None,
    node_limit: int | None = DEFAULT_NODE_LIMIT,
) -> Advice:
    """Solve both modes at the target; raise InfeasibleError (with the fix) when neither has a plan.

    ``write_lp``: also write each mode's model at the target (``planner.frontier.lp_path``).
    """
    plans: dict[str, Plan | None] = {}
    reasons: dict[str, str] = {}
    for mode in MODES:
        try:
            tables = mode_tables(problem, mode, calibration)
            optimizer = mode_optimizer(
                problem, mode, tables, solver=solver, time_limit_s=time_limit_s, node_limit=node_limit
            )
        except InfeasibleError as err:
            plans[mode], reasons[mode] = None, str(err)
            continue
        if write_lp is not None:
            optimizer.write_lp(lp_path(write_lp, mode), min_tokens_per_s_per_user)
        plan = optimizer.best_at(min_tokens_per_s_per_user)
        plans[mode] = plan
        if plan is None:
            reasons[mode] = _why(problem, optimizer, min_tokens_per_s_per_user)
    if all(p is None for p in plans.values()):
        raise InfeasibleError("; and ".join(f"{mode}: {why}" for mode, why in reasons.items()))
    return Advice(problem, min_tokens_per_s_per_user, plans, reasons, solver)


def _why(problem: Problem, optimizer, target: float) -> str:
    """Interactivity out of reach, or (below the fastest layout) the budget/load reasons."""
    table = optimizer.candidates.table
    judged = table[table["pool"] == optimizer.pools[-1]]
    fastest = judged.loc[judged["tokens_per_s_per_user"].idxmax()]
    if target > fastest.tokens_per_s_per_user:
        return (
            f"no {fastest.pool} layout reaches {target:g} tokens/s per user on {problem.hardware.name}; "
            f"the fastest (TP{fastest.tp} PP{fastest.pp} EP{fastest.ep} attention-DP{fastest.attention_dp}, "
            f"batch {fastest.batch}) reaches {fastest.tokens_per_s_per_user:.1f}: lower "
            f"--min-tokens-per-s-per-user to at most {int(fastest.tokens_per_s_per_user * 10) / 10:g}"
        )
    return why_no_plan(problem, optimizer, target)


# --------------------------------------------------------------------------- rendering


def _layout(row) -> str:
    chunk = ", chunked prefill" if row.get("chunked_prefill", False) and row["pool"] == "aggregated" else ""
    tokens = prompt_chunk_tokens(row["pool"], row)
    chunk += f", prompt chunks of {tokens} tokens" if tokens is not None else ""
    chunk += ", two-batch overlap + EPLB" if row.get("two_batch_overlap", False) else ""
    drafts = int(row.get("draft_tokens", 0) or 0)
    chunk += f", speculative decoding with {drafts} draft tokens" if drafts else ""
    return (
        f"TP{row.tp} PP{row.pp} EP{row.ep} attention-DP{row.attention_dp}, batch {row.batch}{chunk} "
        f"({plural(int(row.gpus), 'GPU')} each)"
    )


def plan_economics(plan: Plan, problem: Problem) -> dict[str, float]:
    """A plan's GPUs billed (whole nodes, or the owned fleet) and its :data:`planner.economics.COLUMNS`."""
    billed = counted_gpus(plan.nodes, plan.gpus_per_node, fleet_gpus(problem))
    values = economics(billed, plan.output_tokens_per_s, problem.hardware)
    return {"billed_gpus": int(billed), **{k: float(v) for k, v in values.items()}}


def plan_text(plan: Plan, problem: Problem) -> list[str]:
    """A plan as indented lines a person can act on."""
    lines = []
    for pool in plan.pools.values():
        lines.append(
            f"  {pool.pool} pool: {plural(pool.instances, 'instance')}, {plural(pool.gpus, 'GPU')}, "
            f"{plural(pool.nodes(plan.gpus_per_node), 'node')} if on its own nodes, "
            f"{pool.capacity_requests_per_s:,.2f} requests/s capacity"
        )
        for _, row in pool.rows.iterrows():
            detail = (
                f"TTFT {row.ttft_ms:,.0f} ms"
                if pool.pool == "prefill"
                else f"{row.tokens_per_s_per_user:,.1f} tokens/s per user (TPOT {row.tpot_ms:,.1f} ms)"
            )
            serves = f" [serves {row.classes.replace(',', ', ')}]" if len(plan.classes) > 1 else ""
            lines.append(f"    {int(row.instances)} x {_layout(row)}: {detail}{serves}")
    ratio = ""
    if plan.mode != "aggregated":
        prefill, decode = plan.pools["prefill"].gpus, plan.pools["decode"].gpus
        ratio = f"; prefill:decode GPUs {prefill}:{decode} = {prefill / decode:.2f}"
    lines.append(f"  total: {plural(plan.total_gpus, 'GPU')} on {plural(plan.nodes, 'node')}{ratio}")
    lines.append(
        f"  predicted: {plan.tokens_per_s_per_gpu:,.1f} output tokens/s per GPU, "
        f"{plan.output_tokens_per_s:,.0f} output tokens/s, {plan.requests_per_s:,.2f} requests/s, "
        f"{plan.tokens_per_s_per_user:,.1f} tokens/s per user, TTFT <= {plan.ttft_ms:,.0f} ms, "
        f"worst inter-token gap {plan.worst_inter_token_gap_ms:,.1f} ms"
    )
    if plan.mode != "aggregated":
        lines.append(
            f"  KV transfer: {plan.kv_transfer_gb_per_s:,.2f} GB/s in total, "
            f"{plan.kv_transfer_gb_per_s_per_gpu:,.2f} GB/s per prefill GPU"
        )
    money = plan_economics(plan, problem)
    what = "the owned fleet" if fleet_gpus(problem) is not None else "whole nodes"
    if problem.hardware.price_usd_per_gpu_hour is not None:
        lines.append(
            f"  cost: ${money['cost_usd_per_h']:,.2f} per hour for {what} ({money['billed_gpus']} GPUs), "
            f"${money['cost_usd_per_million_output_tokens']:,.3f} per million output tokens"
        )
    if problem.hardware.power_w is not None:
        lines.append(
            f"  power: {money['power_kw']:,.1f} kW of GPU board power for {what}, "
            f"{money['output_tokens_per_joule']:,.3f} output tokens per joule"
        )
    return lines


def objective_question(problem: Problem) -> str:
    """Which question the instance's objective answers, in words (plan and frontier output)."""
    inst = problem.instance
    return {
        "max_tokens_per_s_per_gpu": "the most output tokens/s per GPU used (efficiency: pay only for "
        "the GPUs a plan uses)",
        "max_throughput": f"the most requests/s the whole budget of {problem.max_gpus} GPUs serves (an "
        "owned fleet: idle GPUs still cost)",
        "min_gpus": f"the fewest GPUs serving {inst.traffic.requests_per_s} requests/s",
        "min_cost": f"the cheapest whole nodes serving {inst.traffic.requests_per_s} requests/s",
    }[inst.objective]


def headroom_text(problem: Problem) -> str | None:
    """How the pools were sized for queueing (``slo.ttft_percentile``, target utilisation), if at all."""
    slo, cluster = problem.instance.slo, problem.instance.cluster
    parts = []
    if slo.ttft_percentile is not None:
        parts.append(
            f"prefill and co-located capacity derated so the p{slo.ttft_percentile:g} TTFT, queueing "
            f"included, fits {slo.ttft_ms_max:g} ms (Poisson arrivals, random routing; M/D/1 prefill "
            "instances, M/D/c co-located batch slots)"
        )
    if cluster.target_utilization_fraction < 1:
        parts.append(f"every instance loaded to at most {cluster.target_utilization_fraction:.0%}")
    return "Headroom: " + "; ".join(parts) + "." if parts else None


def advice_text(advice: Advice) -> str:
    """The answer of ``disagg plan`` for a terminal."""
    problem, inst = advice.problem, advice.problem.instance
    best = advice.recommended
    goal = objective_question(problem)
    lines = [
        f"{problem.label}: {problem.question_text}, at "
        f">= {advice.target_tokens_per_s_per_user:g} tokens/s per user; objective: {goal}.",
        *filter(None, [headroom_text(problem)]),
        f"Deploy {best.mode}:",
        *plan_text(best, problem),
    ]
    other = advice.alternative
    if other is not None:
        lines.append(f"Best {other.mode} alternative:")
        lines.extend(plan_text(other, problem))
    for mode, why in advice.reasons.items():
        lines.append(f"No {mode} plan: {why}")
    gain = advice.disaggregated_over_aggregated
    dis, agg = advice.plans.get("disaggregated"), advice.plans.get("aggregated")
    if inst.objective == "max_throughput" and dis is not None and agg is not None:
        total = dis.output_tokens_per_s / agg.output_tokens_per_s
        lines.append(
            f"Disaggregated / aggregated output tokens/s on the fleet: {total:.3f} "
            f"({(total - 1) * 100:+.1f}%)."
        )
    elif gain is not None:
        lines.append(f"Disaggregated / aggregated tokens/s per GPU: {gain:.3f} ({(gain - 1) * 100:+.1f}%).")
    lines.append(
        f"Solver {advice.solver}: {best.termination}, gap {best.mip_gap:.1e}, "
        f"{plural(best.solves, 'solve')} in {best.solve_time_s:.2f} s."
    )
    return "\n".join(lines)


def plan_json(plan: Plan, problem: Problem) -> dict:
    """A plan as plain data: metrics, cost and power, and each pool's layouts with instance counts."""
    row = {k: v for k, v in plan.row().items() if not k.endswith("_layouts")}
    chunk = row["prefill_chunk_tokens"]
    row["prefill_chunk_tokens"] = None if math.isnan(chunk) else int(chunk)  # a token count, not a float
    row.update(plan_economics(plan, problem))
    row["pools"] = {
        pool.pool: {
            "instances": pool.instances,
            "gpus": pool.gpus,
            "capacity_requests_per_s": pool.capacity_requests_per_s,
            "served_requests_per_s": pool.served_requests_per_s,
            "layouts": [
                {
                    **{name: int(r[name]) for name in LAYOUT_FIELDS},
                    "instances": int(r.instances),
                    "gpus_per_instance": int(r.gpus),
                    "ttft_ms": float(r.ttft_ms),
                    "tokens_per_s_per_user": float(r.tokens_per_s_per_user),
                    "worst_inter_token_gap_ms": float(r.worst_inter_token_gap_ms),
                    "requests_per_s_per_instance": float(r.requests_per_s),
                    "served_requests_per_s": float(r.served_requests_per_s),
                    "request_classes": str(r.classes).split(","),
                    "chunked_prefill": bool(r.chunked_prefill),
                    "prefill_chunk_tokens": prompt_chunk_tokens(pool.pool, r),
                    "two_batch_overlap": bool(r.two_batch_overlap),
                    "draft_tokens": int(getattr(r, "draft_tokens", 0)),
                    "eplb": bool(r.eplb),
                }
                for _, r in pool.rows.iterrows()
            ],
        }
        for pool in plan.pools.values()
    }
    return row


def advice_json(advice: Advice) -> dict:
    """``disagg plan --json``."""
    return {
        "instance": advice.problem.instance.name,
        "scenario": advice.problem.scenario,
        "objective": advice.problem.instance.objective,
        "target_tokens_per_s_per_user": advice.target_tokens_per_s_per_user,
        "model": advice.problem.model.name,
        "model_source": advice.problem.model.source,
        "hardware": advice.problem.hardware.name,
        "gpus_per_node": advice.problem.hardware.gpus_per_node,
        "precision": advice.problem.instance.precision,
        "request_classes": [
            {
                "name": c.name,
                "isl_tokens": c.isl_tokens,
                "osl_tokens": c.osl_tokens,
                "share_fraction": c.share_fraction,
            }
            for c in advice.problem.request_classes
        ],
        "recommended_mode": advice.recommended.mode,
        "plans": {mode: p and plan_json(p, advice.problem) for mode, p in advice.plans.items()},
        "no_plan_reasons": advice.reasons,
        "disaggregated_over_aggregated": advice.disaggregated_over_aggregated,
        "solver": advice.solver,
    }
