"""The exported model (``--write-lp``) against golden files: the formulation does not drift unnoticed.

A change to a ``define_*`` builder changes these LP files; when the change is meant,
regenerate them with ``UPDATE_GOLDEN=1 python -m pytest tests/test_formulation.py`` and
review the diff like code. The exported file is also read back by HiGHS and solved,
so it is the very model the planner solves, not a printout of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import highspy
import pytest
from hand_tables import frame

from planner.catalog import load_hardware
from planner.optimize.model import combine
from planner.optimize.optimizer import ModeOptimizer
from planner.optimize.packing import geometry

GOLDEN = Path(__file__).parent / "golden"
NAN = float("nan")


CASES = {
    # name: (prefill rows, decode rows, gpus per node, domain GPUs, budget)
    "one_bin": ([(1, 3.0, NAN), (2, 4.0, NAN)], [(1, 1.0, 20.0), (2, 1.5, 40.0)], 4, 4, 8),
    "domains": ([(16, 4.0, NAN), (8, 1.5, NAN)], [(64, 100.0, 20.0), (4, 2.0, 30.0)], 4, 72, 144),
}


def _optimizer(name: str) -> ModeOptimizer:
    prefill, decode, node, domain, budget = CASES[name]
    hardware = load_hardware("h100-sxm").update({"gpus_per_node": node, "scale_up_domain_gpus": domain})
    tables = {"prefill": frame(prefill), "decode": frame(decode)}
    geo = geometry(hardware, budget, {int(g) for t in tables.values() for g in t["gpus"]})
    return ModeOptimizer(
        "disaggregated", combine(tables, geo), geo, layouts_per_pool=1, exclusive_nodes=False
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_lp_matches_golden(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.lp"
    _optimizer(name).write_lp(path, 20.0)
    text = path.read_text()
    golden = GOLDEN / f"{name}.lp"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"the formulation changed; review and regenerate {golden}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_lp_solves_to_the_models_optimum(name: str, tmp_path: Path) -> None:
    # The first Dinkelbach step at target 20 (theta = 0: most output tokens/s in the budget), solved
    # from the file by HiGHS alone, equals the in-memory model's value at that step.
    optimizer = _optimizer(name)
    path = tmp_path / f"{name}.lp"
    optimizer.write_lp(path, 20.0)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.readModel(str(path))
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    result = optimizer.backend.solve()
    assert highs.getInfo().objective_function_value == pytest.approx(result.objective, rel=1e-9)
    assert result.objective > 0
