"""Paper-scale sweep benchmark: Llama-3.1-8B/70B/405B and DeepSeek-R1 x six ISL/OSL shapes x NVLink 8 / 72.

Runs the shipped grid ``instances/sweeps/paper-trends.yaml`` (GB200 NVL72, FP4, 72 GPUs, both modes'
exact frontiers, 48 cells) from scratch on the local process pool, or on a Dask cluster with
``--scheduler``, and prints the wall time, the cells and the design points evaluated per second.
Goal: under 10 minutes on a 2-core machine.

    python benchmarks/sweep.py [--workers N] [--scheduler tcp://host:8786] [--out DIR] [--grid FILE]

Without ``--out`` the results go to a temporary folder that is removed afterwards (a fresh run,
nothing resumed); with ``--out`` the folder is kept and a second run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner.grid import load_grid  # noqa: E402
from planner.perf.calibration import load_calibration  # noqa: E402
from planner.sweep import default_workers, resolve_cells, run_sweep  # noqa: E402

GRID = ROOT / "instances" / "sweeps" / "paper-trends.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(GRID), help="grid file (default: the paper-trends grid)")
    parser.add_argument("--workers", type=int, default=None, help="local processes (default: CPUs)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address instead of the pool")
    parser.add_argument("--out", default=None, help="keep the results here (default: a temporary folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()

    grid = load_grid(args.grid)
    calibration = load_calibration()
    cells = resolve_cells(grid, calibration, "highs")
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        result = run_sweep(
            grid,
            out,
            calibration,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.no_progress,
            command=["benchmarks/sweep.py", *sys.argv[1:]],
            cells=cells,
        )
        summary = result.summary
    workers = args.scheduler or f"{args.workers or default_workers()} local workers"
    print(f"grid             {args.grid}")
    print(f"executor         {workers} (os.cpu_count() = {os.cpu_count()})")
    print(
        f"cells            {result.cells} ({result.solved} solved, {result.resumed} resumed, "
        f"{result.failed} with errors)"
    )
    print(f"wall time        {result.wall_time_s:,.1f} s")
    print(f"design points    {result.design_points:,} evaluated this run")
    print(
        f"throughput       {result.design_points / result.wall_time_s:,.0f} design points/s, "
        f"{result.solved / result.wall_time_s * 60:,.1f} cells/min"
    )
    print(f"frontier rows    {len(result.frontiers):,}")
    print(
        f"cell solve time  median {summary['cell_wall_time_s'].median():.1f} s, "
        f"max {summary['cell_wall_time_s'].max():.1f} s"
    )
    print(
        "verdicts         "
        + ", ".join(f"{v or 'error'} {n}" for v, n in summary["verdict"].value_counts().items())
    )
    columns = [
        "model",
        "traffic.isl_tokens",
        "traffic.osl_tokens",
        "hardware.scale_up_domain_gpus",
        "typical_gain",
        "peak_gain",
        "verdict",
        "prefill_decode_gpu_ratio_min",
        "prefill_decode_gpu_ratio_max",
        "cell_wall_time_s",
    ]
    print(summary[[c for c in columns if c in summary]].to_string(index=False, float_format="{:.2f}".format))


if __name__ == "__main__":
    main()
