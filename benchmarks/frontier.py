"""Time the exact frontier (the MIP) against the brute-force referee on every shipped instance.

    python benchmarks/frontier.py [--instances NAME ...] [--solver highs|ortools]

For each instance: ``planner.frontier.solve_frontier(resolve(name))`` (candidate
tables, model build and trace of both modes) is timed in CPU seconds as "MIP s", and the CPU
inside the MIP solves as "solver s" (``benchmarks/scale.py --only frontier`` shows the same
figures beside the planner before issue 12). The referee
(:mod:`planner.optimize.brute_force`) then answers the same question from the same
candidate rows: it enumerates every plan, answers the best plan at every target the
frontier solved at, and builds the Pareto set ("brute-force s"; the candidate
tables, ~0.01 s a mode, are counted on the MIP side only). "agree" checks that the
MIP equals the referee at every visited target (tokens/s/GPU and output tokens/s to
1e-7) and that the frontier is exactly the referee's Pareto set. Exit status 1 if
any instance disagrees. Instances the referee cannot answer (a traffic mix, or more
than one layout per pool) are listed as skipped, without timing the MIP.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.catalog import names  # noqa: E402
from planner.frontier import MODES, solve_frontier  # noqa: E402
from planner.optimize import brute_force  # noqa: E402
from planner.optimize.brute_force import BruteForce  # noqa: E402
from planner.optimize.optimizer import ModeOptimizer  # noqa: E402
from planner.optimize.plan import Plan  # noqa: E402
from planner.problem import resolve  # noqa: E402

AGREE = 1e-7


@dataclass
class ModeLog:
    """What the frontier of one mode did: its optimizer, the targets it solved at, its solves."""

    optimizer: ModeOptimizer
    targets: list[float] = field(default_factory=list)
    solves: int = 0
    solver_cpu_s: float = 0.0


@contextmanager
def recording():
    """Record every ``best_at`` target and every MIP solve that ``solve_frontier`` makes, per mode."""
    log: dict[str, ModeLog] = {}
    best_at, solve = ModeOptimizer.best_at, ModeOptimizer._solve

    def logged_best_at(self, target):
        log.setdefault(self.mode, ModeLog(self)).targets.append(target)
        return best_at(self, target)

    def counted_solve(self, **options):
        entry = log.setdefault(self.mode, ModeLog(self))
        entry.solves += 1
        start = time.process_time()
        try:
            return solve(self, **options)
        finally:
            entry.solver_cpu_s += time.process_time() - start

    ModeOptimizer.best_at, ModeOptimizer._solve = logged_best_at, counted_solve
    try:
        yield log
    finally:
        ModeOptimizer.best_at, ModeOptimizer._solve = best_at, solve


def value(plan, objective: str) -> float:
    """Higher is better, for MIP plans (``total_gpus``) and referee plans (``gpus``) alike."""
    if objective == "max_tokens_per_s_per_gpu":
        return plan.tokens_per_s_per_gpu
    gpus = plan.total_gpus if isinstance(plan, Plan) else plan.gpus
    return -(gpus if objective == "min_gpus" else plan.nodes)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=AGREE, abs_tol=1e-12)


def referee_of(problem, optimizer: ModeOptimizer) -> BruteForce:
    return BruteForce.of(problem, optimizer)


def check_mode(problem, entry: ModeLog, frontier: list, problems: list[str]) -> tuple[float, int]:
    """Brute-force one mode at every target the MIP visited; return (seconds, plans scored)."""
    objective = problem.instance.objective
    brute_force.fill.cache_clear()  # time it cold: no packings remembered from another mode or instance
    brute_force._nodes_for.cache_clear()
    start = time.process_time()
    referee = referee_of(problem, entry.optimizer)
    answers = {target: referee.best_at(target) for target in entry.targets}
    pareto = referee.pareto()
    seconds = time.process_time() - start

    by_target = {plan.target_tokens_per_s_per_user: plan for plan in frontier}
    for target, best in answers.items():
        plan = by_target.get(target)
        if plan is None:
            continue  # a dominated or infeasible step: checked through the Pareto set below
        if best is None:
            problems.append(f"{entry.optimizer.mode} @ {target:.4g}: referee has no plan, MIP does")
        elif not (
            close(value(plan, objective), value(best, objective))
            and close(plan.output_tokens_per_s, best.output_tokens_per_s)
        ):
            problems.append(
                f"{entry.optimizer.mode} @ {target:.4g}: MIP {value(plan, objective):.6g} / "
                f"{plan.output_tokens_per_s:.6g} tok/s, referee {value(best, objective):.6g} / "
                f"{best.output_tokens_per_s:.6g} tok/s"
            )
    got = [(p.tokens_per_s_per_user, value(p, objective)) for p in frontier]
    want = [(p.tokens_per_s_per_user, value(p, objective)) for p in pareto]
    if len(got) != len(want) or not all(
        close(a, c) and close(b, d) for (a, b), (c, d) in zip(got, want, strict=False)
    ):
        problems.append(f"{entry.optimizer.mode}: frontier {len(got)} points, referee Pareto set {len(want)}")
    return seconds, referee.plans_scored


def unrefereed(problem) -> str:
    """Why the referee cannot answer an instance ('' if it can): one request shape, one layout a pool."""
    if len(problem.instance.traffic.request_classes) > 1:
        return "skipped: traffic mix"
    if problem.instance.layouts_per_pool > 1:
        return "skipped: layouts_per_pool > 1"
    return ""


def run(name: str, solver: str) -> dict:
    problem = resolve(name)
    if why := unrefereed(problem):
        return {"instance": name, "skipped": why}
    with recording() as log:
        start = time.process_time()
        frontier = solve_frontier(problem, solver=solver)
        mip_s = time.process_time() - start
    problems: list[str] = []
    brute_s, scored, points, solves, solver_s = 0.0, 0, [], 0, 0.0
    for mode in MODES:
        entry = log.get(mode)
        plans = frontier.plans.get(mode, [])
        points.append(str(len(plans)))
        if entry is None:
            continue
        solves += entry.solves
        solver_s += entry.solver_cpu_s
        seconds, n = check_mode(problem, entry, plans, problems)
        brute_s += seconds
        scored += n
    return {
        "instance": name,
        "points": "+".join(points),
        "targets": sum(len(e.targets) for e in log.values()),
        "solves": solves,
        "mip_s": mip_s,
        "solver_s": solver_s,
        "brute_s": brute_s,
        "scored": scored,
        "problems": problems,
        "skipped": "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", nargs="+", default=names("instances"), help="instance names")
    parser.add_argument("--solver", default="highs", choices=["highs", "ortools"])
    args = parser.parse_args()

    header = (
        f"{'instance':30s} {'frontier points':>15s} {'targets':>7s} {'MIP solves':>10s} {'MIP s':>7s} "
        f"{'solver s':>8s} "
        f"{'brute-force s':>13s} {'MIP/BF':>7s} {'plans scored':>12s}  agree"
    )
    print(f"exact frontier ({args.solver}) vs brute-force referee; points = disaggregated+aggregated")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.instances:
        row = run(name, args.solver)
        rows.append(row)
        if row["skipped"]:
            print(f"{name:30s} {row['skipped']} (the referee plans one request shape, one layout a pool)")
            continue
        ratio = row["mip_s"] / row["brute_s"] if row["brute_s"] > 0 else float("nan")
        agree = "yes" if not row["problems"] else "NO"
        print(
            f"{name:30s} {row['points']:>15s} {row['targets']:>7d} {row['solves']:>10d} {row['mip_s']:>7.2f} "
            f"{row['solver_s']:>8.2f} {row['brute_s']:>13.2f} {ratio:>7.1f} {row['scored']:>12,d}  {agree}",
            flush=True,
        )
    rows = [r for r in rows if not r["skipped"]]
    mip = sum(r["mip_s"] for r in rows)
    brute = sum(r["brute_s"] for r in rows)
    print("-" * len(header))
    targets, solves = sum(r["targets"] for r in rows), sum(r["solves"] for r in rows)
    print(
        f"{'total (compared)':30s} {'':>15s} {targets:>7d} {solves:>10d} {mip:>7.2f} "
        f"{sum(r['solver_s'] for r in rows):>8.2f} {brute:>13.2f} "
        f"{mip / brute if brute else float('nan'):>7.1f} {sum(r['scored'] for r in rows):>12,d}"
    )
    print(
        "CPU seconds (time.process_time; HiGHS runs in this thread). MIP s: solve_frontier (candidate "
        "tables + model build + trace); solver s: inside the MIP solves. Today's figures beside these: "
        "python benchmarks/scale.py --only frontier.\nbrute-force s: enumerate every "
        "plan,\nthe best plan at every target the MIP solved at, and the Pareto set (packing caches cleared "
        "first).\n'plans scored': (layout pair x instance counts) grid cells; packability is monotone in the "
        "counts,\nso a cached staircase of exact packings settles them."
    )
    bad = [(r["instance"], p) for r in rows for p in r["problems"]]
    for name, problem in bad:
        print(f"DISAGREE {name}: {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
