"""Turn a serving benchmark's saved result into measurement rows the planner can validate and fit.

Supported: the JSON that ``vllm bench serve --save-result`` writes (keys as written by
vLLM's ``vllm/benchmarks/serve.py``: ``completed``, ``total_input_tokens``,
``total_output_tokens``, ``output_throughput``, ``mean_ttft_ms``, ``mean_tpot_ms``,
``max_concurrency``, ``model_id``). The benchmark does not know the deployment, so the
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


def vllm_rows(result_path: str | Path, deployment: dict[str, object]) -> pd.DataFrame:
    """Measurement rows (the ``measurements.csv`` columns) from one ``vllm bench serve`` result."""
    path = Path(result_path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError("no such file; check the path", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"not a readable JSON file ({err}); pass a `--save-result` file", path=path) from None
    if not isinstance(result, dict):
        raise SpecError("not a `vllm bench serve --save-result` file (expected one JSON object)", path=path)
    missing = [k for k in VLLM_REQUIRED_KEYS if not isinstance(result.get(k), int | float)]
    if missing:
        raise SpecError(
            f"missing or non-numeric key(s) {', '.join(missing)}; is this a `vllm bench serve "
            "--save-result` file?",
            path=path,
            field=missing[0],
        )
    absent = [k for k in REQUIRED_LAYOUT if not deployment.get(k)]
    if absent:
        raise SpecError(
            f"the benchmark does not record the deployment; give --{absent[0]} (or '{absent[0]}:' in a "
            "sidecar YAML)",
            path=path,
            field=absent[0],
        )
    completed = int(result["completed"])
    if completed <= 0:
        raise SpecError("no request completed in this run; nothing to import", path=path, field="completed")
    tp, pp, dp = (int(deployment.get(k) or 1) for k in ("tp", "pp", "attention_dp"))
    instances = int(deployment.get("instances") or 1)
    concurrency = result.get("max_concurrency")
    batch = str(max(1, int(concurrency) // instances)) if isinstance(concurrency, int | float) else "max"
    base = {
        "source": str(deployment.get("source") or f"vllm bench serve --save-result {path.name}"),
        "model": deployment["model"],
        "hardware": deployment["hardware"],
        "precision": deployment["precision"],
        "isl": max(1, round(result["total_input_tokens"] / completed)),
        "osl": max(1, round(result["total_output_tokens"] / completed)),
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
    note = (
        f"imported from {path.name}: {completed} requests, max_concurrency {concurrency}, "
        f"request_rate {result.get('request_rate', 'unknown')}, model_id "
        f"{result.get('model_id', 'unknown')}; ISL/OSL are the run's means"
    )
    metrics = [("output", "output_tokens_per_s_total", result["output_throughput"])]
    metrics += [
        (name, f"{name}_ms", result[f"mean_{name}_ms"])
        for name in ("ttft", "tpot")
        if isinstance(result.get(f"mean_{name}_ms"), int | float) and result[f"mean_{name}_ms"] > 0
    ]
    rows = [
        {"id": f"{path.stem}-{suffix}", **base, "metric": metric, "value": float(value), "notes": note}
        for suffix, metric, value in metrics
        if value > 0
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
