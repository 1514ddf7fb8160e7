"""CPU seconds of the exact planner at datacenter scale, beside the planner before issue 12, in one run.

    python benchmarks/scale.py [--only frontier scale elastic mix] [--baseline-rev REV | --no-baseline]
                               [--cap-s 180]

The figures of issue 12's "Done when", each measured twice in the same run: "now" (this
checkout) and "before" (``--baseline-rev``, default the commit the issue's branch started
from, extracted with ``git archive`` into a temporary folder). Every measurement runs in its
own Python process and reports ``time.process_time()`` of the call (HiGHS runs in that
thread, so it is included) and, separately, the CPU spent inside the HiGHS solves; a
measurement past ``--cap-s`` CPU seconds is stopped (RLIMIT_CPU) and shown as ``> cap``. The
"work + imports" column splits "now" into the planning itself and the fixed cost of importing
the planner (pyomo, pandas, highspy), which every process pays once.

- ``frontier``: every shipped instance's frontier, both modes (``solve_frontier``);
- ``scale``: DeepSeek-R1 on GB200 NVL72 at 576, 2,304 and 9,216 GPUs (``--set
  cluster.max_gpus=N`` on the shipped instance), with the brute-force referee's Pareto set
  compared to the frontier up to 2,304 GPUs (the sizes it can reach; now only);
- ``elastic``: the DeepSeek-R1 day (24 periods, the shipped trace, load x8) and a week (168
  periods: the day repeated, weekends at 70% load), all strategies, with each strategy's
  termination and gap;
- ``mix``: a 5-class traffic mix on the DeepSeek-R1 72-GPU rack.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFEREE_MAX_GPUS = 2304
"""The referee enumerates every plan; past this budget its grid outgrows memory and minutes."""
BASELINE_REV = "ccb366a"
"""The planner before issue 12 (the commit its branch started from)."""

FIVE_CLASSES = [
    {
        "name": "chat",
        "isl_tokens": 2048,
        "osl_tokens": 512,
        "share_fraction": 0.3,
        "tokens_per_s_per_user_min": 30,
    },
    {
        "name": "rag",
        "isl_tokens": 16384,
        "osl_tokens": 512,
        "share_fraction": 0.2,
        "tokens_per_s_per_user_min": 20,
    },
    {
        "name": "reasoning",
        "isl_tokens": 1024,
        "osl_tokens": 8192,
        "share_fraction": 0.2,
        "tokens_per_s_per_user_min": 20,
    },
    {
        "name": "code",
        "isl_tokens": 8192,
        "osl_tokens": 1024,
        "share_fraction": 0.2,
        "tokens_per_s_per_user_min": 40,
    },
    {
        "name": "summarize",
        "isl_tokens": 32768,
        "osl_tokens": 256,
        "share_fraction": 0.1,
        "tokens_per_s_per_user_min": 20,
    },
]

# The child: measures one task with the planner found on sys.path, prints one JSON line.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    task = json.loads(sys.argv[1])
    start = time.process_time()
    from planner.optimize import backends
    solver_cpu = [0.0]
    original = backends.HighsBackend.solve
    def timed(self, *args, **kwargs):
        t = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            solver_cpu[0] += time.process_time() - t
    backends.HighsBackend.solve = timed
    from planner.problem import resolve
    from planner.frontier import solve_frontier
    from planner.elastic import plan_elastic
    from planner.trace import load_trace
    out = {"imports_cpu_s": time.process_time() - start}
    if task["kind"] in ("frontier", "scale", "mix"):
        problem = resolve(task["instance"], overrides=task.get("overrides") or {})
        frontier = solve_frontier(problem, time_limit_s=1e6)
        plans = [p for mode in frontier.plans.values() for p in mode]
        out["points"] = {m: len(v) for m, v in frontier.plans.items()}
        out["solves"] = sum(p.solves for p in plans)
        out["unproven"] = sum(str(p.termination) != "optimal" for p in plans)
        out["best"] = {m: max(p.tokens_per_s_per_gpu for p in v) for m, v in frontier.plans.items()}
    else:
        problem = resolve(task["instance"])
        trace = load_trace(task["trace"], list(problem.request_classes))
        result = plan_elastic(problem, trace, load_scale=task["load_scale"], time_limit_s=1e6)
        out["strategies"] = {
            name: [round(s.gpu_hours, 3), str(s.termination), s.mip_gap, s.solves]
            for name, s in result.strategies.items()
        }
    out["cpu_s"] = time.process_time() - start
    out["solver_cpu_s"] = solver_cpu[0]
    if task.get("referee"):
        from planner.frontier import mode_optimizer, mode_tables, trace
        from planner.optimize.brute_force import BruteForce
        agree = True
        for mode in ("disaggregated", "aggregated"):
            optimizer = mode_optimizer(problem, mode, mode_tables(problem, mode, None))
            mine = trace(optimizer, problem.instance.objective)
            theirs = BruteForce.of(problem, optimizer).pareto()
            agree &= len(mine) == len(theirs) and all(
                abs(a.tokens_per_s_per_gpu / b.tokens_per_s_per_gpu - 1) <= 1e-7
                and abs(a.tokens_per_s_per_user / b.tokens_per_s_per_user - 1) <= 1e-9
                for a, b in zip(mine, theirs)
            )
        out["referee"] = "agrees" if agree else "DISAGREES"
    print(json.dumps(out))
    """
)


def week_trace(day: Path, out: Path) -> Path:
    """168 hourly periods: the shipped day seven times, Saturday and Sunday at 70% of the load."""
    lines = day.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    body = []
    for d in range(7):
        factor = 0.7 if d >= 5 else 1.0
        for row in rows:
            cells = row.split(",")
            hour = cells[0][11:]
            cells[0] = f"2026-01-{5 + d:02d}T{hour}"
            cells[2] = f"{float(cells[2]) * factor:.3f}"
            body.append(",".join(cells))
    out.write_text("\n".join([header, *body]) + "\n")
    return out


def tasks(only: set[str], week: Path) -> list[tuple[str, str, dict]]:
    """``(group, label, task)`` for every figure of issue 12's Done-when list."""
    sys.path.insert(0, str(REPO))
    from planner.catalog import names

    found = []
    if "frontier" in only:
        for name in names("instances"):
            found.append(("frontier", name, {"kind": "frontier", "instance": name}))
    if "scale" in only:
        for gpus in (576, 2304, 9216):
            task = {
                "kind": "scale",
                "instance": "deepseek-r1-gb200-16k-2k",
                "overrides": {"cluster.max_gpus": gpus},
            }
            found.append(("scale", f"DeepSeek-R1 GB200 {gpus:,} GPUs", task))
    if "elastic" in only:
        day = str(REPO / "instances/traces/diurnal-24h.csv")
        for periods, trace in ((24, day), (168, str(week))):
            task = {
                "kind": "elastic",
                "instance": "deepseek-r1-gb200-diurnal",
                "trace": trace,
                "load_scale": 8,
            }
            found.append(("elastic", f"DeepSeek-R1 elastic, {periods} periods", task))
    if "mix" in only:
        task = {
            "kind": "mix",
            "instance": "deepseek-r1-gb200-diurnal",
            "overrides": {"traffic": FIVE_CLASSES},
        }
        found.append(("mix", "5-class mix, 72 GPUs", task))
    return found


def run(code: Path, task: dict, cap_s: float) -> dict:
    """One measurement in a fresh process with ``code`` first on the path, at most ``cap_s`` CPU seconds."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cap_s), int(cap_s) + 5))

    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(task)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        check=False,
    )
    if done.returncode != 0:
        killed = done.returncode in (-9, -24) or "CPU time limit" in done.stderr
        return {"error": f"> {cap_s:g} s" if killed else done.stderr.strip().splitlines()[-1][:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(rev: str, into: Path) -> Path:
    """The planner at ``rev`` (``git archive``), to measure "before" in the same run."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def seconds(result: dict | None) -> str:
    if result is None:
        return "-"
    if "error" in result:
        # An instance added after the baseline revision has no "before".
        return "(no instance)" if "unknown instance" in result["error"] else result["error"][:16]
    return f"{result['cpu_s']:.1f} s ({result['solver_cpu_s']:.1f})"


def work_seconds(result: dict | None) -> str:
    """CPU seconds after the imports (the planning itself), with the imports beside them."""
    if result is None or "error" in result:
        return "-"
    work = result["cpu_s"] - result["imports_cpu_s"]
    return f"{work:.2f} + {result['imports_cpu_s']:.1f}"


def outcome(result: dict) -> str:
    if "error" in result:
        return result["error"]
    if "strategies" in result:
        return "; ".join(
            f"{name} {hours:g} GPU-h {term}{'' if term == 'optimal' else f' gap {gap:.2%}'}"
            for name, (hours, term, gap, _) in result["strategies"].items()
        )
    points = "+".join(str(n) for n in result["points"].values())
    proof = "exact" if not result["unproven"] else f"{result['unproven']} unproven"
    referee = f", referee {result['referee']}" if "referee" in result else ""
    return f"{points} points, {result['solves']} solves, {proof}{referee}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", default=["frontier", "scale", "elastic", "mix"])
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--cap-s", type=float, default=180.0, help="CPU seconds per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        week = week_trace(REPO / "instances/traces/diurnal-24h.csv", Path(tmp) / "week-168h.csv")
        old = None if args.no_baseline else baseline_tree(args.baseline_rev, Path(tmp) / "baseline")
        print(
            f"CPU seconds (HiGHS CPU in brackets); before = {args.baseline_rev}, cap {args.cap_s:g} s each; "
            "'now: work + imports' splits now's CPU into the planning and the imports"
        )
        print(f"{'figure':42s} {'before':>16s} {'now':>16s} {'now: work + imports':>20s}  result now")
        for _group, label, task in tasks(set(args.only), week):
            if task["kind"] == "scale" and task["overrides"]["cluster.max_gpus"] <= REFEREE_MAX_GPUS:
                task = dict(task, referee=True)
            now = run(REPO, task, args.cap_s)
            before = (
                None
                if old is None
                else run(old, {k: v for k, v in task.items() if k != "referee"}, args.cap_s)
            )
            cells = f"{seconds(before):>16s} {seconds(now):>16s} {work_seconds(now):>20s}"
            print(f"{label:42s} {cells}  {outcome(now)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
