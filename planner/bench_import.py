"""Turn a serving benchmark's saved result into measurement rows the planner can validate and fit.

Supported, detected from the keys:

- the JSON that ``vllm bench serve --save-result`` writes (keys as written by vLLM's
  ``vllm/benchmarks/serve.py``: ``completed``, ``total_input_tokens``,
  ``total_output_tokens``, ``output_throughput``, ``mean_ttft_ms``, ``mean_tpot_ms``,
  ``max_concurrency``, ``model_id``);
- AIPerf's ``profile_export_aiperf.json`` (GenAI-Perf's successor, same metric names;
  documented in ai-dynamo/aiperf docs/tutorials/working-with-profile-exports.md): one
  ``{"unit", "avg", ...}`` object per metric, ``output_token_throughput``,
  ``time_to_first_token``, ``inter_token_latency`` (the TPOT), ``input_sequence_length``,
  ``output_sequence_length``, and ``input_config.loadgen.concurrency``.

The benchmark does not know the deployment, so the
layout, catalog model, hardware and precision come from the command line or a small
sidecar YAML with the same names (``model``, ``hardware``, ``precision``, ``tp``, ``pp``,
``ep``, ``attention_dp``, ``instances``, ``two_batch_overlap``, ``eplb``, ``source``).

One result gives up to three rows of one configuration: output tokens/s in total, and,
when present, the mean TTFT and TPOT (``ttft_ms``, ``tpot_ms`` metrics), which the fit
and ``validate`` use like throughput. ISL and OSL are the run's means per completed
request; the batch is ``max_concurrency`` per instance, or ``max`` when the client did
not cap concurrency (the engine then runs as many requests as fit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from planner.errors import SpecError

LAYOUT_FIELDS = (
    "model",
    "hardware",
    "precision",
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "instances",
    "two_batch_overlap",
    "eplb",
    "source",
)
"""What a sidecar YAML (or the command line) may give about the measured deployment."""
REQUIRED_LAYOUT = ("model", "hardware", "precision")
VLLM_REQUIRED_KEYS = ("completed", "total_input_tokens", "total_output_tokens", "output_throughput")
AIPERF_REQUIRED_KEYS = ("output_token_throughput", "input_sequence_length", "output_sequence_length")


def load_sidecar(path: str | Path | None) -> dict[str, object]:
    """The deployment fields of a sidecar YAML; unknown keys are an error naming the valid ones."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise SpecError("no such file; check the path", path=path) from None
    except yaml.YAMLError as err:
        raise SpecError(f"not valid YAML ({err}); fix the file", path=path) from None
    if not isinstance(data, dict):
        raise SpecError("must be a mapping of deployment fields", path=path)
    unknown = sorted(set(data) - set(LAYOUT_FIELDS))
    if unknown:
        raise SpecError(
            f"unknown field(s) {', '.join(unknown)}; valid: {', '.join(LAYOUT_FIELDS)}",
            path=path,
            field=unknown[0],
        )
    return data


@dataclass(frozen=True)
class BenchResult:
    """What the planner reads from one benchmark run, whatever tool wrote it."""

    isl_tokens: float
    osl_tokens: float
    concurrency: float | None
    """Requests the client kept in flight (None: uncapped)."""
    output_tokens_per_s: float
    ttft_ms: float | None
    tpot_ms: float | None
    note: str


def read_result(result_path: str | Path) -> tuple[str, BenchResult]:
    """The tool (``vllm`` or ``aiperf``) and the numbers of one saved result, detected from its keys."""
    path = Path(result_path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError("no such file; check the path", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpecError(
            f"not a readable JSON file ({err}); pass a saved benchmark result", path=path
        ) from None
    if isinstance(result, dict) and isinstance(result.get("output_token_throughput"), dict):
        return "aiperf", _aiperf(result, path)
    if not isinstance(result, dict):
        raise SpecError("not a benchmark result (expected one JSON object)", path=path)
    return "vllm", _vllm(result, path)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _vllm(result: dict, path: Path) -> BenchResult:
    """``vllm bench serve --save-result``: totals per run, mean latencies in ms."""
    missing = [k for k in VLLM_REQUIRED_KEYS if _number(result.get(k)) is None]
    if missing:
        raise SpecError(
            f"missing or non-numeric key(s) {', '.join(missing)}; pass a `vllm bench serve --save-result` "
            "file or an AIPerf / GenAI-Perf profile_export JSON",
            path=path,
            field=missing[0],
        )
    completed = int(result["completed"])
    if completed <= 0:
        raise SpecError("no request completed in this run; nothing to import", path=path, field="completed")
    concurrency = _number(result.get("max_concurrency"))
    return BenchResult(
        isl_tokens=result["total_input_tokens"] / completed,
        osl_tokens=result["total_output_tokens"] / completed,
        concurrency=concurrency,
        output_tokens_per_s=float(result["output_throughput"]),
        ttft_ms=_number(result.get("mean_ttft_ms")),
        tpot_ms=_number(result.get("mean_tpot_ms")),
        note=(
            f"vllm bench serve: {completed} requests, max_concurrency {result.get('max_concurrency')}, "
            f"request_rate {result.get('request_rate', 'unknown')}, "
            f"model_id {result.get('model_id', 'unknown')}"
        ),
    )


def _aiperf(result: dict, path: Path) -> BenchResult:
    """AIPerf (and GenAI-Perf) ``profile_export_*.json``: one ``{"unit", "avg", ...}`` object per metric."""

    def avg(key: str) -> float | None:
        entry = result.get(key)
        return _number(entry.get("avg")) if isinstance(entry, dict) else None

    needed = {k: avg(k) for k in AIPERF_REQUIRED_KEYS}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise SpecError(
            f"missing metric(s) {', '.join(missing)} (an object with 'avg'); is this an AIPerf / GenAI-Perf "
            "profile_export JSON?",
            path=path,
            field=missing[0],
        )
    config = result.get("input_config") if isinstance(result.get("input_config"), dict) else {}
    loadgen = config.get("loadgen") if isinstance(config.get("loadgen"), dict) else {}
    concurrency = _number(loadgen.get("concurrency", config.get("concurrency")))
    return BenchResult(
        isl_tokens=needed["input_sequence_length"],
        osl_tokens=needed["output_sequence_length"],
        concurrency=concurrency,
        output_tokens_per_s=needed["output_token_throughput"],
        ttft_ms=avg("time_to_first_token"),
        tpot_ms=avg("inter_token_latency"),
        note=f"AIPerf / GenAI-Perf export: concurrency {concurrency}, request_count {avg('request_count')}",
    )


def bench_rows(result_path: str | Path, deployment: dict[str, object]) -> pd.DataFrame:
    """Measurement rows (the ``measurements.csv`` columns) from one saved benchmark result."""
    path = Path(result_path)
    tool, run = read_result(path)
    absent = [k for k in REQUIRED_LAYOUT if not deployment.get(k)]
    if absent:
        raise SpecError(
            f"the benchmark does not record the deployment; give --{absent[0]} (or '{absent[0]}:' in a "
            "sidecar YAML)",
            path=path,
            field=absent[0],
        )
    tp, pp, dp = (int(deployment.get(k) or 1) for k in ("tp", "pp", "attention_dp"))
    instances = int(deployment.get("instances") or 1)
    batch = str(max(1, int(run.concurrency) // instances)) if run.concurrency else "max"
    base = {
        "source": str(deployment.get("source") or f"{tool} result {path.name}"),
        "model": deployment["model"],
        "hardware": deployment["hardware"],
        "precision": deployment["precision"],
        "isl": max(1, round(run.isl_tokens)),
        "osl": max(1, round(run.osl_tokens)),
        "mode": "aggregated",
        "instances": instances,
        "gpus_per_instance": tp * pp * dp,
        "tp": tp,
        "pp": pp,
        "ep": int(deployment.get("ep") or 1),
        "attention_dp": dp,
        "batch": batch,
        "two_batch_overlap": bool(deployment.get("two_batch_overlap", False)),
        "eplb": bool(deployment.get("eplb", False)),
    }
    note = f"imported from {path.name} ({run.note}); ISL/OSL are the run's means"
    metrics = [
        ("output", "output_tokens_per_s_total", run.output_tokens_per_s),
        ("ttft", "ttft_ms", run.ttft_ms),
        ("tpot", "tpot_ms", run.tpot_ms),
    ]
    rows = [
        {"id": f"{path.stem}-{suffix}", **base, "metric": metric, "value": float(value), "notes": note}
        for suffix, metric, value in metrics
        if value is not None and value > 0
    ]
    return pd.DataFrame(rows)


def append_rows(rows: pd.DataFrame, out: Path) -> pd.DataFrame:
    """The rows appended to an existing measurements CSV (or alone); a repeated id is an error."""
    if not out.exists():
        return rows
    existing = pd.read_csv(out, dtype={"batch": str})
    clash = sorted(set(existing["id"]) & set(rows["id"]))
    if clash:
        raise SpecError(
            f"row id '{clash[0]}' is already in the file; rename the result file or write to another --out",
            path=out,
            field="id",
        )
    return pd.concat([existing, rows], ignore_index=True)
