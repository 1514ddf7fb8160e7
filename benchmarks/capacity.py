"""Capacity-table benchmark: one persistent model per mode re-solved per cell, against a fresh plan per cell.

The issue-11 question (Llama-3.1-70B FP8 on four 8-GPU H100 nodes, 16k prompts, 1k answers, TTFT under
2 s) as a 6-load x 3-target table, both modes. Prints CPU and wall seconds of ``capacity_table`` and of
the same cells answered one by one with ``advise`` (each building its candidate tables and models
again), and checks that both give the same GPUs.

    python benchmarks/capacity.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.advise import advise  # noqa: E402
from planner.capacity import capacity_table  # noqa: E402
from planner.errors import InfeasibleError  # noqa: E402
from planner.problem import resolve  # noqa: E402

INSTANCE = "llama-3.1-70b-h100-8k-1k"
CASE = {"traffic.isl_tokens": 16384, "slo.ttft_ms_max": 2000}
LOADS = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
TARGETS = [30.0, 45.0, 60.0]


def timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def one_by_one() -> dict[tuple[float, float, str], int]:
    gpus = {}
    for target in TARGETS:
        for load in LOADS:
            problem = resolve(
                INSTANCE, overrides={**CASE, "objective": "min_gpus", "traffic.requests_per_s": load}
            )
            try:
                answer = advise(problem, target)
            except InfeasibleError:
                continue
            for mode, plan in answer.plans.items():
                if plan is not None:
                    gpus[(load, target, mode)] = plan.total_gpus
    return gpus


def main() -> None:
    problem = resolve(INSTANCE, overrides=CASE)
    table, wall, cpu = timed(lambda: capacity_table(problem, LOADS, TARGETS))
    cells = len(LOADS) * len(TARGETS)
    print(
        f"capacity_table: {cells} cells x 2 modes, {int(table['feasible'].sum())} feasible: "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU"
    )
    reference, wall_ref, cpu_ref = timed(one_by_one)
    print(
        f"one plan per cell: {wall_ref:.2f} s wall, {cpu_ref:.2f} s CPU "
        f"({cpu_ref / max(cpu, 1e-9):.1f}x the CPU)"
    )
    feasible = table[table["feasible"]]
    mine = {
        (r.offered_requests_per_s, r.target_tokens_per_s_per_user, r.mode): int(r.total_gpus)
        for r in feasible.itertuples()
    }
    print(f"same GPUs in every cell both answered: {mine == reference} ({len(mine)} cells)")


if __name__ == "__main__":
    main()
