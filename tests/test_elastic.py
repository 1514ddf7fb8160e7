"""Traffic mixes, traces and elastic plans: the multi-period MIP against single-period answers and limits.

Small budgets keep every solve to a second or two; the shipped day-long studies run in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.elastic import ElasticPlanner, plan_elastic
from planner.errors import SpecError
from planner.frontier import mode_optimizer, mode_tables, solve_frontier
from planner.problem import resolve
from planner.specs import RequestClass, Traffic
from planner.trace import load_trace

ROOT = Path(__file__).resolve().parent.parent
DAY = ROOT / "instances" / "traces" / "diurnal-24h.csv"
MIX = "llama-3.1-70b-h100-diurnal"
SMALL = {"cluster.max_nodes": 2}
CLASSES = ("chat", "rag", "reasoning")


def _trace(
    tmp_path: Path, rates: list[float], shares: list[tuple[float, float, float]] | None = None
) -> Path:
    rows = [
        "period_start,duration_h,requests_per_s" + ("".join(f",share_{c}" for c in CLASSES) if shares else "")
    ]
    for i, rate in enumerate(rates):
        extra = "".join(f",{s}" for s in shares[i]) if shares else ""
        rows.append(f"2026-01-05T{i:02d}:00:00Z,1,{rate}{extra}")
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------- traffic mixes


def test_a_list_of_classes_is_a_mix_and_shares_must_sum_to_one() -> None:
    mix = Traffic.model_validate(
        [{"name": "a", "isl_tokens": 10, "osl_tokens": 5, "share_fraction": 0.25},
         {"name": "b", "isl_tokens": 20, "osl_tokens": 5, "share_fraction": 0.75}]
    )  # fmt: skip
    assert mix.is_mix
    assert [c.name for c in mix.request_classes] == ["a", "b"]
    with pytest.raises(ValueError, match="sum to 0.5"):
        Traffic.model_validate([{"name": "a", "isl_tokens": 1, "osl_tokens": 1, "share_fraction": 0.5}])
    with pytest.raises(ValueError, match="not both"):
        Traffic.model_validate(
            {"isl_tokens": 1, "osl_tokens": 1, "classes": [{"name": "a", "isl_tokens": 1, "osl_tokens": 1}]}
        )
    one = Traffic(isl_tokens=100, osl_tokens=10)
    assert one.request_classes == [RequestClass(name="all", isl_tokens=100, osl_tokens=10)]


def test_one_class_mix_gives_exactly_the_one_shape_answer() -> None:
    """A mix of one class must be the very same MIP answer as the plain ISL/OSL instance."""
    plain = resolve("qwen3-32b-h200-4000-500", overrides={"cluster.max_gpus": 8})
    as_mix = resolve(
        "qwen3-32b-h200-4000-500",
        overrides={
            "cluster.max_gpus": 8,
            "traffic": [{"name": "only", "isl_tokens": 4000, "osl_tokens": 500}],
        },
    )
    for mode in ("disaggregated", "aggregated"):
        a = mode_optimizer(plain, mode, mode_tables(plain, mode, None))
        b = mode_optimizer(as_mix, mode, mode_tables(as_mix, mode, None))
        assert a.breakpoints == b.breakpoints
        for target in a.breakpoints[:: max(1, len(a.breakpoints) // 4)]:
            pa, pb = a.best_at(target), b.best_at(target)
            assert (pa is None) == (pb is None)
            if pa is not None:
                assert pb.tokens_per_s_per_gpu == pytest.approx(pa.tokens_per_s_per_gpu, rel=1e-9)
                assert pb.output_tokens_per_s == pytest.approx(pa.output_tokens_per_s, rel=1e-9)


def test_a_mix_serves_every_class_in_its_share_at_its_floor() -> None:
    problem = resolve(MIX, overrides=SMALL)
    optimizer = mode_optimizer(problem, "disaggregated", mode_tables(problem, "disaggregated", None))
    plan = optimizer.best_at(optimizer.breakpoints[0])
    assert plan is not None
    flows = optimizer.solution.flows()
    table = optimizer.candidates.table
    for k, cls in enumerate(problem.request_classes):
        for pool in ("prefill", "decode"):
            served = flows[(table["class_index"] == k).to_numpy() & (table["pool"] == pool).to_numpy()].sum()
            assert served == pytest.approx(cls.share_fraction * plan.requests_per_s, rel=1e-6)
        used = (flows > 0) & (table["class_index"] == k).to_numpy() & (table["pool"] == "decode").to_numpy()
        assert (table.loc[used, "tokens_per_s_per_user"] >= cls.tokens_per_s_per_user_min).all()
    # Tokens/s per GPU uses the mix's mean output length.
    mean_osl = sum(c.share_fraction * c.osl_tokens for c in problem.request_classes)
    assert plan.output_tokens_per_s == pytest.approx(plan.requests_per_s * mean_osl)


def test_mix_frontier_ends_where_some_class_can_no_longer_be_served() -> None:
    """Above the fastest decode row of some class, serving nothing is the only 'plan': that is no plan.

    (Once it was reported as a plan below its target, and the trace jumped back and forth forever.)
    """
    problem = resolve(MIX, overrides=SMALL)
    optimizer = mode_optimizer(problem, "disaggregated", mode_tables(problem, "disaggregated", None))
    table = optimizer.candidates.table
    decode = table[table["pool"] == "decode"]
    reach = decode.groupby("request_class")["tokens_per_s_per_user"].max()
    assert optimizer.best_at(float(reach.min()) * 1.001) is None
    frontier = solve_frontier(problem, modes=("disaggregated",))
    rows = frontier.frame()
    assert (rows["requests_per_s"] > 0).all()
    assert np.all(np.diff(rows["tokens_per_s_per_user"]) > 0)
    assert rows["tokens_per_s_per_user"].max() <= reach.min() * (1 + 1e-9)


# --------------------------------------------------------------------------- traces


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,2\n2026-01-05T02:00:00Z,1,2\n",
            "row 3: a gap",
        ),
        ("period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,-2\n", "row 2: requests_per_s = -2"),
        ("period_start,duration_h,requests_per_s,share_poetry\n2026-01-05T00:00:00Z,1,2,1\n", "share_poetry"),
        ("period_start,duration_h\n2026-01-05T00:00:00Z,1\n", "missing column(s) requests_per_s"),
        ("period_start,duration_h,requests_per_s\nyesterday,1,2\n", "not an ISO-8601 time"),
        (
            "period_start,duration_h,requests_per_s,share_chat,share_rag,share_reasoning\n"
            "2026-01-05T00:00:00Z,1,2,0.5,0.5,0.5\n",
            "sum to 1.5",
        ),
    ],
)
def test_bad_traces_name_the_row_and_the_fix(text: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_trace(path, resolve(MIX).request_classes)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_the_shipped_day_is_diurnal_and_shifts_its_mix() -> None:
    trace = load_trace(DAY, resolve(MIX).request_classes)
    assert trace.periods == 24
    assert trace.hours == 24
    assert trace.requests_per_s.max() / trace.requests_per_s.min() == pytest.approx(4, rel=0.05)
    rag, reasoning = trace.classes.index("rag"), trace.classes.index("reasoning")
    peak, trough = int(np.argmax(trace.requests_per_s)), int(np.argmin(trace.requests_per_s))
    assert trace.shares[peak, rag] > trace.shares[trough, rag]  # prompt-heavy by day
    assert trace.shares[trough, reasoning] > trace.shares[peak, reasoning]  # reasoning-heavy by night


# --------------------------------------------------------------------------- elastic plans


def test_constant_trace_elastic_equals_static_equals_the_single_period_optimum(tmp_path: Path) -> None:
    problem = resolve(MIX, overrides={**SMALL, "objective": "min_gpus", "traffic.requests_per_s": 2.0})
    trace = load_trace(_trace(tmp_path, [2.0] * 3), problem.request_classes)
    result = plan_elastic(problem, trace)
    static, dynamic = result.strategies["static"], result.strategies["dynamic"]
    assert dynamic.gpu_hours == pytest.approx(static.gpu_hours)
    # The single-period min-GPU optimum at the same floors, from the frontier's optimizer.
    single = ElasticPlanner(problem, load_trace(_trace(tmp_path, [2.0]), problem.request_classes))
    one = single.solve("dynamic")
    assert dynamic.gpu_hours == pytest.approx(3 * one.gpu_hours)
    assert (dynamic.periods["total_gpus"] == one.periods["total_gpus"].iloc[0]).all()


def test_dynamic_beats_fixed_ratio_beats_static_and_ramps_hold(tmp_path: Path) -> None:
    rates = [1.0, 1.5, 3.0, 4.0, 2.5, 1.0]
    shares = [
        (0.3, 0.1, 0.6),
        (0.35, 0.2, 0.45),
        (0.45, 0.4, 0.15),
        (0.45, 0.4, 0.15),
        (0.4, 0.3, 0.3),
        (0.3, 0.1, 0.6),
    ]
    problem = resolve(MIX, overrides={"elastic.ramp_limit_gpus": 4, "elastic.min_pool_gpus": 1})
    trace = load_trace(_trace(tmp_path, rates, shares), problem.request_classes)
    result = plan_elastic(problem, trace, fixed_ratio=0.6)
    s = result.strategies
    assert all(r.served for name, r in s.items() if name != "fixed_ratio_given")
    assert s["dynamic"].gpu_hours <= s["fixed_ratio"].gpu_hours + 1e-9
    assert s["fixed_ratio"].gpu_hours <= s["static"].gpu_hours + 1e-9
    assert s["dynamic"].gpu_hours < s["static"].gpu_hours  # the day varies: elasticity pays
    for name, r in s.items():
        gpus = r.periods["total_gpus"].to_numpy()
        assert np.abs(np.diff(gpus)).max() <= 4, name  # ramp limit, every strategy
        assert (r.periods[["prefill_gpus", "decode_gpus"]] >= 1).all().all(), name
        assert (gpus <= problem.max_gpus).all()
    static = s["static"].periods
    assert static["total_gpus"].nunique() == 1
    assert static["prefill_layouts"].nunique() == 1
    for name in ("fixed_ratio", "fixed_ratio_given"):
        r = s[name]
        served = r.periods[r.periods["slo_met"]]
        ratio = served["prefill_decode_gpu_ratio"] / r.fixed_ratio
        assert ((ratio >= 0.97 - 1e-9) & (ratio <= 1.03 + 1e-9)).all(), name
    # Layouts are chosen once for the horizon: each pool's layouts never change between periods.
    dyn = s["dynamic"].periods
    for pool in ("prefill", "decode"):
        used = set()
        for text in dyn[f"{pool}_layouts"]:
            used |= {x.split(" x ", 1)[1].split(" [")[0] for x in text.split("; ")}
        assert len(used) <= problem.instance.layouts_per_pool, used


def test_the_multi_period_model_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import planner.elastic as elastic

    built = []
    original = elastic.build_model
    monkeypatch.setattr(elastic, "build_model", lambda *a, **k: built.append(1) or original(*a, **k))
    problem = resolve(MIX, overrides=SMALL)
    trace = load_trace(_trace(tmp_path, [1.0, 2.0, 1.0]), problem.request_classes)
    result = plan_elastic(problem, trace, fixed_ratio=0.5)
    assert built == [1]
    assert sum(r.solves for r in result.strategies.values()) >= 4


def test_unservable_period_is_marked_and_the_rest_still_planned(tmp_path: Path) -> None:
    trace_path = _trace(tmp_path, [1.0, 500.0, 1.0])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["elastic", MIX, "--set", "cluster.max_nodes=2", "--trace", str(trace_path), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "row 3" in result.output
    assert "cannot be served" in result.output
    periods = pd.read_csv(out / "periods.csv")
    dynamic = periods[periods["strategy"] == "dynamic"]
    assert dynamic["slo_met"].tolist() == [True, False, True]
    assert dynamic.iloc[1]["unserved_requests_per_s"] > 0
    assert (dynamic["total_gpus"] > 0).all()


def test_elastic_cli_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    trace_path = _trace(tmp_path, [1.0, 2.0, 1.5])
    result = CliRunner().invoke(
        main, ["elastic", MIX, "--set", "cluster.max_nodes=2", "--trace", str(trace_path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "periods.csv", "summary.csv", "elastic.png", "instance.yaml", "provenance.json",
        ".disagg-manifest.json",
    }  # fmt: skip
    summary = pd.read_csv(out / "summary.csv").set_index("strategy")
    assert summary.loc["static", "gpu_hours"] >= summary.loc["dynamic", "gpu_hours"]
    assert summary.loc["dynamic", "savings_vs_static_fraction"] == pytest.approx(
        1 - summary.loc["dynamic", "gpu_hours"] / summary.loc["static", "gpu_hours"]
    )


def test_bad_trace_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("period_start,duration_h,requests_per_s\n2026-01-05T00:00:00Z,1,-1\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["elastic", MIX, "--trace", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert "requests_per_s = -1 must be non-negative" in result.output
    assert not out.exists()
