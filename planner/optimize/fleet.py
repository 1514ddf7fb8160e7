"""Mixed GPU fleets: the MIP chooses the GPU type of every instance and maximizes tokens/s per dollar.

Why it exists
    Teams own more than one GPU type. Prefill is compute-bound and decode is
    memory-bound, so putting each pool on the type that suits it (Splitwise,
    Mélange) is the cheapest lever disaggregation opens: H100 and H200 have the
    same FLOP/s, H200 has 1.43x the HBM bandwidth for about 1.27x the price.

Formulation (one mode, one interactivity target T; built once, re-solved)
    Candidates are the usual per-phase tables (:mod:`planner.space`), priced on
    every type of ``cluster.fleet`` with that type's node inventory as budget. Prefill
    rows ship their KV over the scale-out network (the decode instance may be on
    another type), so that transfer is in their TTFT and must meet the SLO.

    - ``n_l`` integer: instances of layout ``l`` (an engine on its type ``t(l)``); ``y_l``
      binary: ``l`` is used, at most ``layouts_per_pool`` per pool and type;
    - ``f_i``: requests/s of row ``i`` (one class on one layout), ``sum_{i of l} f_i / rate_i <= n_l``
      (instances share their time between the classes routed to them); decode /
      aggregated rows slower than T (or the class's floor) carry no flow;
    - ``nodes_t`` integer, at most type t's ``max_nodes``: sum_i gpus_i n_i <= gpus_per_node_t x nodes_t
      (exact packing: every size divides the node or is a multiple of it; with
      ``cluster.exclusive_nodes`` per pool and type, the pools' nodes summing to ``nodes_t``);
    - ``r``: requests/s served; every pool serves each class its share, ``sum_{i of class k in p} f_i
      = share_k r`` (rate matching), and output tokens are ``r x`` the mix's mean OSL;
    - cost per hour ``C = sum_t price_t x gpus_per_node_t x nodes_t`` (whole nodes), and the
      instance's ``cluster.max_gpus`` / ``max_nodes`` bound the whole plan;
    - objective: max ``OSL x r / C`` (output tokens per dollar, x 3600), exactly, by
      Dinkelbach's method: max ``OSL x r - lambda C`` with ``lambda`` the last plan's ratio
      until the optimum is 0 (a few linear MIP solves).

    Restricting the fleet to one type (``only=``) only changes bounds, so the
    single-type plans it is compared with come from the same model.
    ``tests/test_fleet_mix.py`` checks it against a brute-force enumeration.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyomo.core as pyo

from planner.catalog import load_hardware
from planner.errors import InfeasibleError, SpecError
from planner.optimize.backends import HighsBackend, Termination
from planner.perf.calibration import Calibration
from planner.problem import Problem
from planner.space import LAYOUT_COLUMNS
from planner.specs import LOAD_OBJECTIVES, HardwareSpec

MODE_POOLS = {"disaggregated": ("prefill", "decode"), "aggregated": ("aggregated",)}
SECONDS_PER_HOUR = 3600.0
DINKELBACH_TOLERANCE = 1e-7
"""Relative tolerance of Dinkelbach's stopping test (the optimum of max N - lambda C is 0)."""
MAX_DINKELBACH_SOLVES = 50
"""Dinkelbach's ratio rises strictly each step over finitely many plans; far more steps mean a bug."""


@dataclass(frozen=True)
class GpuType:
    """One GPU type of the fleet, resolved."""

    hardware: HardwareSpec
    max_nodes: int
    price_usd_per_gpu_hour: float

    @property
    def name(self) -> str:
        """The hardware's catalog name."""
        return self.hardware.name

    @property
    def max_gpus(self) -> int:
        """GPUs of this type in the inventory."""
        return self.max_nodes * self.hardware.gpus_per_node


def fleet_types(problem: Problem) -> list[GpuType]:
    """The instance's ``cluster.fleet``, each entry's hardware loaded and priced."""
    entries = problem.instance.cluster.fleet
    if not entries:
        raise SpecError(
            "this instance has no cluster.fleet; list the GPU types, e.g. "
            "fleet: [{hardware: h100-sxm, max_nodes: 2}, {hardware: h200-sxm, max_nodes: 2}]",
            path=problem.source,
            field="cluster.fleet",
        )
    types = []
    for k, entry in enumerate(entries):
        hardware = load_hardware(entry.hardware)
        price = entry.price_usd_per_gpu_hour or hardware.price_usd_per_gpu_hour
        if price is None:
            raise SpecError(
                f"GPU type {hardware.name} has no price; set cluster.fleet[{k}].price_usd_per_gpu_hour",
                path=problem.source,
                field=f"cluster.fleet[{k}].price_usd_per_gpu_hour",
            )
        if hardware.peak_tflops_per_s(problem.instance.precision) is None:
            raise SpecError(
                f"GPU type {hardware.name} has no {problem.instance.precision} tensor cores; drop it from "
                f"the fleet or use one of {', '.join(hardware.supported_precisions)}",
                path=problem.source,
                field=f"cluster.fleet[{k}].hardware",
            )
        types.append(GpuType(hardware, entry.max_nodes, price))
    return types


def _type_problem(problem: Problem, gpu: GpuType) -> Problem:
    """The single-type question: the same instance on one GPU type with that type's nodes."""
    cluster = {"cluster.max_nodes": gpu.max_nodes, "cluster.max_gpus": None, "cluster.fleet": None}
    instance = problem.instance.update({"hardware": gpu.name, **cluster})
    return Problem(instance, problem.model, gpu.hardware, problem.scenario, problem.source)  # type: ignore[arg-type]


def fleet_candidates(
    problem: Problem, types: list[GpuType], mode: str, calibration: Calibration | None = None
) -> pd.DataFrame:
    """Every type's and class's candidate rows of a mode's pools.

    Columns added: ``gpu_type``, ``type_index``, ``pool``, ``request_class``, ``class_index``
    and ``layout`` (rows of different classes on the same engine share it).
    """
    frames = []
    for k, gpu in enumerate(types):
        sub = _type_problem(problem, gpu)
        for c, cls in enumerate(problem.request_classes):
            for pool in MODE_POOLS[mode]:
                link = gpu.hardware.scale_out_bandwidth_gb_per_s if pool == "prefill" else None
                try:
                    table = sub.candidate_table(
                        pool,  # type: ignore[arg-type]
                        calibration,
                        request_class=cls.name,
                        kv_link_gb_per_s=link,
                    )
                except InfeasibleError:
                    continue  # this type cannot run this pool for this class; others may
                node = gpu.hardware.gpus_per_node
                packs = (node % table["gpus"] == 0) | (table["gpus"] % node == 0)
                frames.append(
                    table[packs].assign(
                        pool=pool, gpu_type=gpu.name, type_index=k, request_class=cls.name, class_index=c
                    )
                )
    if not frames:
        raise InfeasibleError(f"no GPU type of the fleet can run the {mode} mode of {problem.model.name}")
    rows = pd.concat(frames, ignore_index=True)
    key = ["type_index", "pool", *LAYOUT_COLUMNS]
    rows["layout"] = rows.groupby(key, sort=True).ngroup()
    return rows


@dataclass
class FleetPlan:
    """The best plan of one mode at one target: instances per type and pool, and what they deliver."""

    mode: str
    target_tokens_per_s_per_user: float
    rows: pd.DataFrame
    """One row per candidate used: ``gpu_type``, ``pool``, the layout, ``instances``, ``gpus``."""
    nodes: dict[str, int]
    requests_per_s: float
    output_tokens_per_s: float
    cost_usd_per_hour: float
    solves: int
    only: str | None = None
    """The single GPU type the plan was restricted to (None: the whole fleet)."""
    gpus_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def total_gpus(self) -> int:
        """GPUs the instances occupy."""
        return int(sum(self.gpus_by_type.values()))

    @property
    def output_tokens_per_usd(self) -> float:
        """Output tokens per dollar of whole nodes."""
        return self.output_tokens_per_s * SECONDS_PER_HOUR / self.cost_usd_per_hour

    @property
    def tokens_per_s_per_user(self) -> float:
        """Interactivity: the slowest decode (or aggregated) instance used."""
        serving = self.rows[self.rows["pool"] != "prefill"]
        return float(serving["tokens_per_s_per_user"].min())

    def split(self) -> dict[str, dict[str, int]]:
        """GPUs per pool and type: ``{"prefill": {"h100-sxm": 8}, ...}``."""
        out: dict[str, dict[str, int]] = {}
        for (pool, gpu_type), group in self.rows.groupby(["pool", "gpu_type"], sort=True):
            out.setdefault(str(pool), {})[str(gpu_type)] = int((group["gpus"] * group["instances"]).sum())
        return out


class FleetOptimizer:
    """One mode's mixed-fleet MIP over all types, built once; targets and type restrictions re-solve it."""

    def __init__(
        self,
        problem: Problem,
        mode: str,
        calibration: Calibration | None = None,
        *,
        time_limit_s: float = 60.0,
    ):
        if mode not in MODE_POOLS:
            raise ValueError(f"mode must be one of {tuple(MODE_POOLS)}")
        self.problem, self.mode = problem, mode
        self.types = fleet_types(problem)
        self.rows = fleet_candidates(problem, self.types, mode, calibration)
        # Output tokens per request served, over the mix.
        self.osl_tokens = float(sum(c.share_fraction * c.osl_tokens for c in problem.request_classes))
        self.model = self._build()
        self.backend = HighsBackend(self.model, time_limit_s)

    def _build(self) -> pyo.ConcreteModel:
        rows, types = self.rows, self.types
        cluster = self.problem.instance.cluster
        m = pyo.ConcreteModel(name=f"fleet_{self.mode}")
        layouts = rows.drop_duplicates("layout").sort_values("layout")
        m.I = pyo.RangeSet(0, len(rows) - 1)
        m.L = pyo.RangeSet(0, len(layouts) - 1)
        m.T = pyo.RangeSet(0, len(types) - 1)
        gpus = layouts["gpus"].to_numpy(dtype=int)
        kind = layouts["type_index"].to_numpy(dtype=int)
        pool = layouts["pool"].to_numpy()
        of = rows["layout"].to_numpy(dtype=int)
        rate = rows["requests_per_s"].to_numpy(dtype=float) * cluster.target_utilization_fraction
        cap = [types[k].max_gpus // gpus[j] for j, k in enumerate(kind)]
        m.n = pyo.Var(m.L, domain=pyo.NonNegativeIntegers, bounds=lambda _, j: (0, cap[j]))
        m.y = pyo.Var(m.L, domain=pyo.Binary)
        m.f = pyo.Var(m.I, domain=pyo.NonNegativeReals)
        m.nodes = pyo.Var(m.T, domain=pyo.NonNegativeIntegers, bounds=lambda _, t: (0, types[t].max_nodes))
        m.r = pyo.Var(domain=pyo.NonNegativeReals)
        m.lam = pyo.Param(mutable=True, initialize=0.0)
        m.use = pyo.Constraint(m.L, rule=lambda m, j: m.n[j] <= cap[j] * m.y[j])
        members = {j: [i for i in range(len(rows)) if of[i] == j] for j in range(len(layouts))}
        # Instances of a layout split their time between the classes routed to them.
        m.capacity = pyo.Constraint(
            m.L, rule=lambda m, j: sum(m.f[i] / rate[i] for i in members[j]) <= m.n[j]
        )
        pools = list(MODE_POOLS[self.mode])
        row_pool, row_class = rows["pool"].to_numpy(), rows["class_index"].to_numpy(dtype=int)
        classes = self.problem.request_classes
        demand = [(p, c) for p in pools for c in range(len(classes))]
        m.match = pyo.Constraint(
            demand,
            rule=lambda m, p, c: (
                sum(m.f[i] for i in m.I if row_pool[i] == p and row_class[i] == c)
                == classes[c].share_fraction * m.r
            ),
        )
        choice = [(p, t) for p in pools for t in m.T]
        per_pool = self.problem.instance.layouts_per_pool
        m.layouts = pyo.Constraint(
            choice,
            rule=lambda m, p, t: sum(m.y[j] for j in m.L if pool[j] == p and kind[j] == t) <= per_pool,
        )
        node_gpus = [types[t].hardware.gpus_per_node for t in m.T]
        if cluster.exclusive_nodes:  # each pool on nodes of its own, per type
            m.pool_nodes = pyo.Var(choice, domain=pyo.NonNegativeIntegers)
            m.pack = pyo.Constraint(
                choice,
                rule=lambda m, p, t: (
                    sum(gpus[j] * m.n[j] for j in m.L if kind[j] == t and pool[j] == p)
                    <= node_gpus[t] * m.pool_nodes[p, t]
                ),
            )
            m.pool_node_total = pyo.Constraint(
                m.T, rule=lambda m, t: sum(m.pool_nodes[p, t] for p in pools) <= m.nodes[t]
            )
        else:
            m.pack = pyo.Constraint(
                m.T,
                rule=lambda m, t: (
                    sum(gpus[j] * m.n[j] for j in m.L if kind[j] == t) <= node_gpus[t] * m.nodes[t]
                ),
            )
        if cluster.max_gpus is not None:
            m.total_gpus = pyo.Constraint(
                expr=sum(node_gpus[t] * m.nodes[t] for t in m.T) <= cluster.max_gpus
            )
        if cluster.max_nodes is not None:
            m.total_nodes = pyo.Constraint(expr=sum(m.nodes[t] for t in m.T) <= cluster.max_nodes)
        price = [types[t].price_usd_per_gpu_hour * node_gpus[t] for t in m.T]
        m.cost = pyo.Expression(expr=sum(price[t] * m.nodes[t] for t in m.T))
        m.tokens = pyo.Expression(expr=self.osl_tokens * m.r)
        # Written out (not via the named expressions) so the persistent solver sees lam change.
        m.tokens_weight = pyo.Param(mutable=True, initialize=1.0)
        m.gpu_weight = pyo.Param(mutable=True, initialize=0.0)
        objective = m.tokens_weight * self.osl_tokens * m.r - sum(
            (m.lam * price[t] + m.gpu_weight * node_gpus[t]) * m.nodes[t] for t in m.T
        )
        m.objective = pyo.Objective(expr=objective, sense=pyo.maximize)
        return m

    def _restrict(self, target: float, only: str | None) -> None:
        """Bounds for one question: rows below the target and (with ``only``) other types' nodes at 0."""
        m, rows = self.model, self.rows
        floors = np.array([c.tokens_per_s_per_user_min or 0.0 for c in self.problem.request_classes])
        needed = np.maximum(target, floors[rows["class_index"].to_numpy(dtype=int)])
        slow = (rows["pool"] != "prefill").to_numpy() & (rows["tokens_per_s_per_user"].to_numpy() < needed)
        for i in m.I:
            m.f[i].setub(0.0 if slow[i] else None)
        for t in m.T:
            m.nodes[t].setub(
                0 if only is not None and self.types[t].name != only else self.types[t].max_nodes
            )

    def solve(self, target: float, *, only: str | None = None) -> FleetPlan:
        """The instance's objective at interactivity ``target`` (``only``: on that type alone).

        ``max_tokens_per_s_per_gpu``: the most output tokens per dollar (per GPU when the
        types cost the same); ``max_throughput``: the most requests/s, then the cheapest;
        ``min_cost`` / ``min_gpus``: the cheapest nodes / fewest GPUs serving
        ``traffic.requests_per_s``.
        """
        if only is not None and only not in {t.name for t in self.types}:
            raise SpecError(f"'{only}' is not a GPU type of cluster.fleet", field="--only")
        self._restrict(target, only)
        objective = self.problem.instance.objective
        if objective != "max_tokens_per_s_per_gpu":
            return self._solve_linear(target, only, objective)
        m = self.model
        self._weights(tokens=1.0, cost=0.0, gpus=0.0)
        solves, best, best_ratio = 0, None, 0.0
        while True:
            result = self.backend.solve()
            solves += 1
            if result.termination != Termination.OPTIMAL:
                break
            # Keep a plan only if it is a real one (a rate above solver noise) with a better ratio: the
            # last Dinkelbach step returns the empty plan at objective 0 (tokens and cost ~1e-9).
            cost = pyo.value(m.cost)
            ratio = pyo.value(m.tokens) / cost if cost > 1e-9 else 0.0
            if pyo.value(m.r) > 1e-9 and ratio > best_ratio:
                best, best_ratio = [(var, var.value) for var in m.component_data_objects(pyo.Var)], ratio
            # At the optimal ratio the best of max N - lambda C is 0, reached by that plan (or by none).
            if solves > 1 and result.objective <= DINKELBACH_TOLERANCE * max(m.lam.value, 1.0):
                break
            if best is None:
                break
            if solves >= MAX_DINKELBACH_SOLVES:
                raise RuntimeError(f"Dinkelbach did not converge in {solves} solves; this is a bug")
            m.lam.set_value(pyo.value(m.tokens) / pyo.value(m.cost))
        if best is None:
            raise self._no_plan(target, only)
        for var, value in best:
            var.set_value(value, skip_validation=True)
        return self._plan(target, only, solves)

    def _weights(self, *, tokens: float, cost: float, gpus: float) -> None:
        m = self.model
        m.tokens_weight.set_value(tokens)
        m.lam.set_value(cost)
        m.gpu_weight.set_value(gpus)

    def _solve_linear(self, target: float, only: str | None, objective: str) -> FleetPlan:
        """max_throughput (then least cost), min_cost or min_gpus: one or two linear solves."""
        m = self.model
        load = self.problem.instance.traffic.requests_per_s
        solves = 0
        try:
            if objective == "max_throughput":
                self._weights(tokens=1.0, cost=0.0, gpus=0.0)
                first = self.backend.solve()
                solves += 1
                if first.termination != Termination.OPTIMAL or pyo.value(m.r) <= 1e-12:
                    raise self._no_plan(target, only)
                m.r.setlb(pyo.value(m.r) * (1 - 1e-9))  # keep the most requests/s, then pay least
            else:
                m.r.setlb(load)
            if objective == "min_gpus":
                self._weights(tokens=0.0, cost=0.0, gpus=1.0)
            else:
                self._weights(tokens=0.0, cost=1.0, gpus=0.0)
            result = self.backend.solve()
            solves += 1
            if result.termination != Termination.OPTIMAL:
                raise self._no_plan(target, only, load if objective != "max_throughput" else None)
            return self._plan(target, only, solves)
        finally:
            m.r.setlb(0.0)

    def _no_plan(self, target: float, only: str | None, load: float | None = None) -> InfeasibleError:
        where = f" on {only} alone" if only else ""
        serving = f" serves {load:g} requests/s and" if load else ""
        return InfeasibleError(
            f"no {self.mode} plan{where}{serving} reaches {target:g} tokens/s per user within the fleet; "
            "lower --min-tokens-per-s-per-user or the load, or add nodes"
        )

    def _plan(self, target: float, only: str | None, solves: int) -> FleetPlan:
        m, rows = self.model, self.rows
        counts = {j: round(pyo.value(m.n[j])) for j in m.L}
        flows = np.array([pyo.value(m.f[i]) or 0.0 for i in m.I])
        rows = rows.assign(instances=rows["layout"].map(counts), served_requests_per_s=flows)
        per_layout = []
        for _, group in rows[rows["instances"] > 0].groupby("layout", sort=True):
            served = group[group["served_requests_per_s"] > 1e-12]
            judged = served if len(served) else group
            lead = group.iloc[0]
            per_layout.append(
                {
                    **{key: lead[key] for key in ("gpu_type", "pool", *LAYOUT_COLUMNS, "gpus", "instances")},
                    "classes": ",".join(judged["request_class"]),
                    "served_requests_per_s": float(group["served_requests_per_s"].sum()),
                    "tokens_per_s_per_user": float(judged["tokens_per_s_per_user"].min()),
                    "ttft_ms": float(judged["ttft_ms"].max()),
                }
            )
        if not per_layout:  # a vanishing rate (solver tolerance) is no plan
            raise self._no_plan(target, only)
        used = pd.DataFrame(per_layout)
        nodes = {t.name: round(pyo.value(m.nodes[k])) for k, t in enumerate(self.types)}
        gpus_by_type = {
            t.name: int(
                (
                    used.loc[used["gpu_type"] == t.name, "gpus"]
                    * used.loc[used["gpu_type"] == t.name, "instances"]
                ).sum()
            )
            for t in self.types
        }
        served = float(pyo.value(m.r))  # the load a load objective serves, or what the mix's flows carry
        if len(self.problem.request_classes) == 1 and self.problem.instance.objective not in LOAD_OBJECTIVES:
            # One class: the pools' smaller capacity, from the integer plan (free of solver tolerances).
            util = self.problem.instance.cluster.target_utilization_fraction
            capacity = rows[rows["instances"] > 0].assign(
                c=lambda f: f["requests_per_s"] * f["instances"] * util
            )
            served = float(capacity.groupby("pool")["c"].sum().min())
        return FleetPlan(
            mode=self.mode,
            target_tokens_per_s_per_user=target,
            rows=used,
            nodes={k: v for k, v in nodes.items() if v},
            requests_per_s=served,
            output_tokens_per_s=served * self.osl_tokens,
            cost_usd_per_hour=float(pyo.value(m.cost)),
            solves=solves,
            only=only,
            gpus_by_type={k: v for k, v in gpus_by_type.items() if v},
        )


def brute_force_tokens_per_usd(optimizer: FleetOptimizer, target: float) -> float:
    """Best output tokens per dollar by enumeration: the referee for small fleets (one layout per pool, type).

    For every type and pool, the best capacity a GPU budget g buys with one layout is
    ``max_i floor(g / gpus_i) x rate_i``; every split of every type's nodes between the
    pools is tried. Exponential in the number of types: small instances only.
    """
    if len(optimizer.problem.request_classes) > 1:
        raise ValueError("the brute-force referee takes one-shape traffic")
    rows, types = optimizer.rows, optimizer.types
    pools = MODE_POOLS[optimizer.mode]
    util = optimizer.problem.instance.cluster.target_utilization_fraction
    best_capacity = {}
    for k, gpu in enumerate(types):
        for pool in pools:
            sel = rows[(rows["type_index"] == k) & (rows["pool"] == pool)]
            if pool != "prefill":
                sel = sel[sel["tokens_per_s_per_user"] >= target]
            budget = np.arange(gpu.max_gpus + 1)
            caps = np.zeros(len(budget))
            for g_i, r_i in zip(sel["gpus"].to_numpy(), sel["requests_per_s"].to_numpy(), strict=True):
                caps = np.maximum(caps, budget // g_i * r_i * util)
            best_capacity[(k, pool)] = caps
    best = 0.0
    exclusive = optimizer.problem.instance.cluster.exclusive_nodes
    splits = [
        [
            (s, nodes)
            for nodes in range(gpu.max_nodes + 1)
            for s in _splits(nodes * gpu.hardware.gpus_per_node, len(pools))
            if not exclusive or sum(-(-g // gpu.hardware.gpus_per_node) for g in s) <= nodes
        ]
        for gpu in types
    ]
    cluster = optimizer.problem.instance.cluster
    for combo in itertools.product(*splits):
        nodes = [n for _, n in combo]
        gpus_total = sum(n * t.hardware.gpus_per_node for n, t in zip(nodes, types, strict=True))
        if (cluster.max_nodes is not None and sum(nodes) > cluster.max_nodes) or (
            cluster.max_gpus is not None and gpus_total > cluster.max_gpus
        ):
            continue
        cost = sum(
            n * t.hardware.gpus_per_node * t.price_usd_per_gpu_hour for n, t in zip(nodes, types, strict=True)
        )
        if cost == 0:
            continue
        served = min(
            sum(best_capacity[(k, pool)][split[j]] for k, (split, _) in enumerate(combo))
            for j, pool in enumerate(pools)
        )
        best = max(best, served * optimizer.osl_tokens * SECONDS_PER_HOUR / cost)
    return best


def _splits(total: int, parts: int):
    """Every way to give ``parts`` pools GPU budgets summing to at most ``total``."""
    if parts == 1:
        yield from ((g,) for g in range(total + 1))
        return
    for g in range(total + 1):
        for rest in _splits(total - g, parts - 1):
            yield (g, *rest)
