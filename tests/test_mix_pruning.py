"""A mix keeps every layout no one other layout beats in every class (planner.space.mix_non_dominated)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from planner.frontier import mode_optimizer, mode_tables, trace
from planner.optimize.model import Candidates, combine_classes
from planner.optimize.packing import Geometry
from planner.problem import resolve
from planner.space import LAYOUT_COLUMNS, _row_ids, dominance_criteria, mix_non_dominated, skyline
from planner.specs import RequestClass

MIX = "llama-3.1-70b-h100-diurnal"


def _decode_rows(tp_rows: dict[int, tuple[float, float, int]]) -> pd.DataFrame:
    """Decode rows keyed by TP: (tokens/s per user, output tokens/s per GPU, GPUs)."""
    rows = []
    for tp, (user, per_gpu, gpus) in tp_rows.items():
        layout = dict.fromkeys(LAYOUT_COLUMNS, 1) | {"tp": tp, "chunked_prefill": False}
        rows.append(
            layout
            | {"tokens_per_s_per_user": user, "output_tokens_per_s_per_gpu": per_gpu, "gpus": gpus}
            | {"ttft_ms": np.nan}
        )
    return pd.DataFrame(rows)


def _kept_tp(frames: list[pd.DataFrame]) -> list[list[int]]:
    return [sorted(f["tp"].tolist()) for f in mix_non_dominated(frames, "decode")]


def test_a_layout_beaten_in_each_class_by_a_different_layout_is_kept() -> None:
    # TP2 is beaten in class A by TP4 and in class B by TP8, but no single layout beats it in
    # both: with one layout per pool it can be the only one serving both classes well.
    class_a = _decode_rows({2: (50, 100, 2), 4: (60, 110, 2), 8: (40, 50, 2)})
    class_b = _decode_rows({2: (50, 100, 2), 4: (40, 50, 2), 8: (60, 110, 2)})
    assert _kept_tp([class_a, class_b]) == [[2, 4, 8], [2, 4, 8]]


def test_a_layout_one_layout_beats_in_every_class_is_dropped() -> None:
    # TP4 beats TP2 in both classes on 2 GPUs; TP16 is beaten per GPU by TP4 on 4 GPUs (2 divides 4).
    class_a = _decode_rows({2: (50, 100, 2), 4: (60, 110, 2), 16: (55, 90, 4)})
    class_b = _decode_rows({2: (50, 100, 2), 4: (50, 101, 2), 16: (50, 100, 4)})
    assert _kept_tp([class_a, class_b]) == [[4], [4]]


def test_a_layout_serving_a_class_the_other_cannot_is_kept() -> None:
    # TP4 beats TP2 where both run, but only TP2 serves class B.
    class_a = _decode_rows({2: (50, 100, 2), 4: (60, 110, 2)})
    class_b = _decode_rows({2: (50, 100, 2)})
    assert _kept_tp([class_a, class_b]) == [[2, 4], [2]]


def test_exact_ties_in_every_class_keep_one_layout() -> None:
    class_a = _decode_rows({2: (50, 100, 2), 4: (50, 100, 2)})
    class_b = _decode_rows({2: (70, 80, 2), 4: (70, 80, 2)})
    assert _kept_tp([class_a, class_b]) == [[2], [2]]


def _signatures(frames: list[pd.DataFrame], phase: str) -> dict[tuple, list]:
    """Per layout: its (criterion x, criterion y, GPUs) in every class, None where it has no row."""
    out: dict[tuple, list] = {}
    for k, frame in enumerate(frames):
        x, y, g = dominance_criteria(frame, phase)
        for key, *values in zip(frame[list(LAYOUT_COLUMNS)].itertuples(index=False), x, y, g, strict=True):
            out.setdefault(tuple(key), [None] * len(frames))[k] = tuple(values)
    return out


def _brute_kept(signatures: dict[tuple, list]) -> set[tuple]:
    """Layouts no other layout weakly beats in every class it serves (gpus dividing, strictly somewhere)."""
    keys = list(signatures)
    classes = len(next(iter(signatures.values())))
    crit = np.full((len(keys), 2 * classes), -np.inf)
    gpus = np.zeros(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        for k, value in enumerate(signatures[key]):
            if value is not None:
                crit[i, 2 * k], crit[i, 2 * k + 1], gpus[i] = value
    weakly = (crit[:, None, :] >= crit[None, :, :]).all(axis=2) & (gpus[None, :] % gpus[:, None] == 0)
    strictly = (crit[:, None, :] > crit[None, :, :]).any(axis=2) | (gpus[:, None] < gpus[None, :])
    beaten = (weakly & strictly).any(axis=0)  # [a, b]: a beats b
    return {key for i, key in enumerate(keys) if not beaten[i]}


@pytest.mark.parametrize("pool", ["prefill", "decode", "aggregated"])
def test_the_skyline_keeps_exactly_the_brute_force_layouts_up_to_ties(pool: str) -> None:
    problem = resolve(MIX, overrides={"cluster.max_gpus": 16})
    full = [problem.candidate_table(pool, prune=False, request_class=c.name) for c in problem.request_classes]
    signatures = _signatures(full, pool)
    kept = set(_signatures(mix_non_dominated(full, pool), pool))
    brute = _brute_kept(signatures)
    # Every kept layout is undominated; an undominated one is missing only as an exact twin of a kept one.
    assert kept <= brute
    assert len(kept) < len(signatures)
    for missing in brute - kept:
        assert any(signatures[key] == signatures[missing] for key in kept), missing


@pytest.mark.parametrize("seed", range(4))
def test_the_skyline_is_the_brute_force_skyline_with_its_tie_rule(seed: int) -> None:
    """Many blocks, coarse criteria (many exact ties), GPU counts that do and do not divide."""
    rng = np.random.default_rng(seed)
    n, m = 1500, 4
    criteria = rng.integers(0, 6, size=(n, m)).astype(float)
    criteria[rng.random((n, m)) < 0.05] = -np.inf  # a class the layout cannot serve
    gpus = rng.choice([1, 2, 3, 4, 6, 8], size=n)
    tie = rng.integers(0, 3, size=n).astype(float)
    weakly = (criteria[:, None, :] >= criteria[None, :, :]).all(axis=2) & (gpus[None, :] % gpus[:, None] == 0)
    strictly = (criteria[:, None, :] > criteria[None, :, :]).any(axis=2) | (gpus[:, None] < gpus[None, :])
    index = np.arange(n)
    first = (tie[:, None] < tie[None, :]) | (
        (tie[:, None] == tie[None, :]) & (index[:, None] < index[None, :])
    )
    beaten = (weakly & (strictly | first)).any(axis=0)  # [a, b]: a beats b; an exact twin by the tie rule
    np.testing.assert_array_equal(skyline(criteria, gpus, tie_breaks=(tie,)), ~beaten)
    assert 0 < (~beaten).sum() < n // 2


def _frontier(problem, mode: str, tables) -> list[tuple[float, float]]:
    """(tokens/s per user, tokens/s per GPU) of every point of one mode's frontier from these tables."""
    plans = trace(mode_optimizer(problem, mode, tables), problem.instance.objective)
    return [(p.tokens_per_s_per_user, p.tokens_per_s_per_gpu) for p in plans]


def test_mix_pruning_never_changes_the_frontier_with_one_layout_per_pool() -> None:
    problem = resolve(MIX, overrides={"cluster.max_gpus": 16, "layouts_per_pool": 1})
    for mode in ("disaggregated", "aggregated"):
        answers = []
        for prune in (True, False):
            answers.append(_frontier(problem, mode, mode_tables(problem, mode, None, prune=prune)))
        pruned, full = answers
        assert len(pruned) == len(full) > 1
        # A mix's served rate is a continuous solver value (row feasibility tolerance 1e-6), so the
        # two models agree to that, not to the one-shape frontier's 1e-9; a pruning error moves whole plans.
        np.testing.assert_allclose(np.array(pruned), np.array(full), rtol=1e-5)


def _hand_candidates() -> Candidates:
    """One decode pool, two classes, three 2-GPU layouts: TP 2 is second-best for both classes."""
    tables = {}
    for name, rates in (("a", {2: 10.0, 4: 12.0, 8: 1.0}), ("b", {2: 10.0, 4: 1.0, 8: 12.0})):
        rows = _decode_rows({tp: (50.0, 1.0, 2) for tp in rates}).assign(
            requests_per_s=list(rates.values()), osl_tokens=100, isl_tokens=100
        )
        tables[name] = {"decode": rows}
    classes = tuple(RequestClass(name=n, isl_tokens=100, osl_tokens=100, share_fraction=0.5) for n in "ab")
    return combine_classes(tables, Geometry(8, 8, 8, (1,), False, True), classes)


def test_at_a_target_a_layout_beaten_in_each_class_by_a_different_layout_stays_usable() -> None:
    candidates = _hand_candidates()
    tp = candidates.layouts["tp"].to_numpy()
    _, usable = candidates.at_target("decode", np.zeros(len(candidates.table)))
    assert sorted(tp[usable].tolist()) == [2, 4, 8]
    # Forbid TP 8's rows: TP 2 now beats it in every class it may serve (none), and TP 4 beats
    # TP 2 in class a but not in class b, so TP 2 stays and TP 8 goes.
    need = np.where(candidates.table["tp"].to_numpy() == 8, 1e9, 0.0)
    _, usable = candidates.at_target("decode", need)
    assert sorted(tp[usable].tolist()) == [2, 4]


def test_per_target_pruning_never_changes_a_mix_frontier(monkeypatch: pytest.MonkeyPatch) -> None:
    # Aggregated llama mix on its shipped 4 nodes, two layouts per pool: the per-class rule this
    # replaced dropped layouts that serve every class well and lost up to 12% tokens/s per GPU.
    problem = resolve(MIX)
    pruning = Candidates.at_target
    answers = []
    for prune in (True, False):
        if not prune:
            keep_all = lambda self, pool, need: (  # noqa: E731 - the allowed rows, every layout
                pruning(self, pool, need)[0],
                np.ones(len(self.layouts), dtype=bool),
            )
            monkeypatch.setattr(Candidates, "at_target", keep_all)
        answers.append(_frontier(problem, "aggregated", mode_tables(problem, "aggregated", None)))
    pruned, full = answers
    assert len(pruned) == len(full) > 10
    np.testing.assert_allclose(np.array(pruned), np.array(full), rtol=1e-5)


def test_row_ids_number_distinct_rows_in_lexicographic_order() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 5)))
        # Half small ranges (one integer key), half ranges whose product overflows it (lexsort).
        span = 4 if trial % 2 else 2**40
        rows = rng.integers(-span + 1, span, size=shape)
        rows[rng.random(shape[0]) < 0.3] = rows[0]  # repeated rows
        _, inverse = np.unique(rows, axis=0, return_inverse=True)
        np.testing.assert_array_equal(_row_ids(rows), inverse.reshape(-1))


def test_a_plan_reports_each_layout_at_its_worst_over_the_classes_it_serves() -> None:
    """``Solution.pool_plans`` against the contract stated row by row, on random counts and flows.

    A used layout's metrics are the worst over its rows that carry flow (all its rows when
    none does), its KV bytes the flow-weighted mean of those rows, its served rate the sum.
    """
    problem = resolve("llama-3.1-70b-h100-diurnal")
    optimizer = mode_optimizer(problem, "disaggregated", mode_tables(problem, "disaggregated", None))
    m, solution = optimizer.model, optimizer.solution
    c = solution.candidates
    table = c.table.reset_index(drop=True)
    rng = np.random.default_rng(7)
    for _ in range(6):
        for var in [*m.copies.values(), *m.spanning_copies.values()]:
            var.set_value(0)
        layouts = rng.choice(len(c.layouts), size=4, replace=False)
        for layout in layouts:
            var = next(v for (k, _b, _t), v in m.copies.items() if k == layout)
            var.set_value(int(rng.integers(1, 4)))
        for r in m.R:
            m.flow[r, 0].set_value(float(rng.choice([0.0, rng.uniform(0.1, 5.0)])))
        plans = solution.pool_plans()
        flows = solution.flows()
        reported = pd.concat([p.rows for p in plans.values()], ignore_index=True)
        assert len(reported) == len(layouts)
        for layout in layouts:
            rows = np.flatnonzero(c.layout_of == layout)
            served = rows[flows[rows] > 0]
            judged = served if len(served) else rows
            pool = table["pool"][rows[0]]
            mine = plans[pool].rows
            same = np.logical_and.reduce([mine[k] == table[k][rows[0]] for k in LAYOUT_COLUMNS])
            (got,) = [row for _, row in mine[same].iterrows()]
            assert got["instances"] == solution.counts()[layout]
            assert got["tokens_per_s_per_user"] == table["tokens_per_s_per_user"][judged].min()
            assert got["tpot_ms"] == table["tpot_ms"][judged].max()
            assert got["served_requests_per_s"] == pytest.approx(flows[rows].sum())
            assert got["classes"] == ",".join(table["request_class"][judged])
            kv = table["kv_transfer_bytes_per_request"]
            expected_kv = np.average(kv[served], weights=flows[served]) if len(served) else kv[rows].mean()
            assert got["kv_transfer_bytes_per_request"] == pytest.approx(expected_kv)
        for plan in plans.values():  # most instances first, then candidate id
            keys = list(zip(-plan.rows["instances"], plan.rows["candidate_id"], strict=True))
            assert keys == sorted(keys)
