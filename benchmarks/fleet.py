"""Mixed-fleet benchmark: the persistent fleet MIP against the brute-force referee, per mode and target.

The shipped ``llama-3.1-70b-h100-h200-fleet`` (2 H100 + 2 H200 nodes). Prints the build time of each
mode's model, then per target the MIP's seconds and Dinkelbach solves, the brute force's seconds, and
both optima (output tokens per dollar), which must agree.

    python benchmarks/fleet.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.optimize.fleet import FleetOptimizer, brute_force_tokens_per_usd  # noqa: E402
from planner.problem import resolve  # noqa: E402

INSTANCE = "llama-3.1-70b-h100-h200-fleet"
TARGETS = [10.0, 30.0, 60.0, 100.0]


def main() -> None:
    problem = resolve(INSTANCE)
    for mode in ("disaggregated", "aggregated"):
        start = time.perf_counter()
        optimizer = FleetOptimizer(problem, mode)
        print(
            f"{mode}: {len(optimizer.rows)} candidate rows, "
            f"model built in {time.perf_counter() - start:.2f} s"
        )
        for target in TARGETS:
            start = time.perf_counter()
            plan = optimizer.solve(target)
            mip_s = time.perf_counter() - start
            start = time.perf_counter()
            referee = brute_force_tokens_per_usd(optimizer, target)
            brute_s = time.perf_counter() - start
            agree = abs(plan.output_tokens_per_usd / referee - 1) < 1e-9
            print(
                f"  {target:6.1f} tokens/s/user: MIP {plan.output_tokens_per_usd:12,.0f} tokens/$ "
                f"in {mip_s:.2f} s "
                f"({plan.solves} solves); brute force {referee:12,.0f} in {brute_s:.2f} s; agree: {agree}"
            )


if __name__ == "__main__":
    main()
