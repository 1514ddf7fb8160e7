"""`vllm bench serve --save-result` JSON becomes measurement rows: throughput, TTFT and TPOT."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from planner.bench_import import bench_rows
from planner.catalog import load_hardware, load_model
from planner.cli import main
from planner.errors import SpecError
from planner.measurements import load_measurements, predict_row, validate
from planner.perf import Layouts, evaluate

# The keys vLLM's vllm/benchmarks/serve.py writes with --save-result (values made up for the test).
RESULT = {
    "date": "20250101-000000",
    "backend": "vllm",
    "model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "num_prompts": 640,
    "request_rate": "inf",
    "burstiness": 1.0,
    "max_concurrency": 64,
    "duration": 100.0,
    "completed": 640,
    "total_input_tokens": 655360,
    "total_output_tokens": 81920,
    "request_throughput": 6.4,
    "output_throughput": 819.2,
    "total_token_throughput": 7372.8,
    "mean_ttft_ms": 250.5,
    "mean_tpot_ms": 30.2,
}
DEPLOYMENT = ("--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--precision", "fp8")


def _result(tmp_path: Path, name: str = "run-c64", **changes) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**RESULT, **changes}))
    return path


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_rows_read_the_documented_keys(tmp_path):
    rows = bench_rows(
        _result(tmp_path), {"model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "fp8"}
    )
    assert rows["id"].tolist() == ["run-c64-output", "run-c64-ttft", "run-c64-tpot"]
    assert rows["metric"].tolist() == ["output_tokens_per_s_total", "ttft_ms", "tpot_ms"]
    assert rows["value"].tolist() == [819.2, 250.5, 30.2]
    assert set(rows["isl"]) == {655360 // 640}
    assert set(rows["osl"]) == {81920 // 640}
    assert set(rows["batch"]) == {"64"}
    unlimited = bench_rows(
        _result(tmp_path, max_concurrency=None), {"model": "m", "hardware": "h", "precision": "fp8"}
    )
    assert set(unlimited["batch"]) == {"max"}


def test_cli_writes_a_measurements_file_validate_and_calibrate_accept(tmp_path):
    out = tmp_path / "mine.csv"
    result = _run("import-bench", _result(tmp_path), *DEPLOYMENT, "--out", out)
    assert result.exit_code == 0, result.output
    frame = load_measurements(out)
    assert len(frame) == 3
    table = validate(frame)
    assert (table["skip_reason"] == "").all()
    # A second run is appended; the same file twice is refused (its ids exist).
    second = _run(
        "import-bench", _result(tmp_path, "run-c128", max_concurrency=128), *DEPLOYMENT, "--out", out
    )
    assert second.exit_code == 0, second.output
    assert len(load_measurements(out)) == 6
    again = _run("import-bench", _result(tmp_path), *DEPLOYMENT, "--out", out)
    assert again.exit_code == 2
    assert "run-c64-output" in again.stderr


def test_latency_rows_are_the_models_ttft_and_tpot_at_the_measured_batch(tmp_path):
    rows = bench_rows(
        _result(tmp_path), {"model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "fp8"}
    )
    rows = rows.assign(two_batch_overlap=False, eplb=False)
    model, hardware = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    runs = [
        evaluate(
            model, hardware, "fp8", "aggregated", Layouts.of(1, 1, 1, 1, 64), 1024, 128, chunked_prefill=c
        )
        for c in (True, False)
    ]
    best = max(runs, key=lambda f: float(f["output_tokens_per_s"].iloc[0])).iloc[0]
    by_metric = {r["metric"]: predict_row(r, check_ceiling=False) for _, r in rows.iterrows()}
    assert by_metric["output_tokens_per_s_total"].predicted == pytest.approx(best["output_tokens_per_s"])
    assert by_metric["ttft_ms"].predicted == pytest.approx(best["ttft_ms"])
    assert by_metric["tpot_ms"].predicted == pytest.approx(best["tpot_ms"])
    assert all(p.batch == 64 for p in by_metric.values())


def test_sidecar_gives_the_deployment_and_the_command_line_overrides_it(tmp_path):
    sidecar = tmp_path / "deploy.yaml"
    sidecar.write_text(
        "model: llama-3.1-8b\nhardware: h200-sxm\nprecision: fp8\ntp: 2\nsource: my lab, run 7\n"
    )
    out = tmp_path / "mine.csv"
    result = _run(
        "import-bench", _result(tmp_path), "--sidecar", sidecar, "--hardware", "h100-sxm", "--out", out
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert set(frame["hardware"]) == {"h100-sxm"}
    assert set(frame["tp"]) == {2}
    assert set(frame["gpus_per_instance"]) == {2}
    assert set(frame["source"]) == {"my lab, run 7"}
    sidecar.write_text("model: llama-3.1-8b\nlayout: tp2\n")
    bad = _run("import-bench", _result(tmp_path), "--sidecar", sidecar, "--out", tmp_path / "x.csv")
    assert bad.exit_code == 2
    assert "unknown field(s) layout" in bad.stderr
    assert "attention_dp" in bad.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--hardware", "h100-sxm", "--precision", "fp8"), "give --model"),
        ((*DEPLOYMENT[:2], "--hardware", "h999", "--precision", "fp8"), "h999"),
    ],
)
def test_missing_or_unknown_deployment_is_one_error_and_no_file(args, needle, tmp_path):
    out = tmp_path / "mine.csv"
    result = _run("import-bench", _result(tmp_path), *args, "--out", out)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_file_that_is_not_a_vllm_result_is_refused(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"throughput": 1.0}))
    with pytest.raises(SpecError, match="output_throughput"):
        bench_rows(path, {"model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "fp8"})
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not a readable JSON"):
        bench_rows(path, {})


def test_no_completed_request_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="no request completed"):
        bench_rows(_result(tmp_path, completed=0), {"model": "m", "hardware": "h", "precision": "fp8"})


# The shape of AIPerf's profile_export_aiperf.json (ai-dynamo/aiperf docs, working-with-profile-exports.md).
AIPERF = {
    "request_throughput": {"unit": "requests/sec", "avg": 6.1},
    "time_to_first_token": {"unit": "ms", "avg": 180.0, "p50": 170.0, "p99": 400.0},
    "inter_token_latency": {"unit": "ms", "avg": 28.0, "p50": 27.5},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 780.0},
    "input_sequence_length": {"unit": "tokens", "avg": 2048.0},
    "output_sequence_length": {"unit": "tokens", "avg": 256.4},
    "request_count": {"unit": "requests", "avg": 500.0},
    "input_config": {"loadgen": {"concurrency": 32}},
}


def test_aiperf_export_is_detected_and_read(tmp_path):
    path = tmp_path / "aiperf-c32.json"
    path.write_text(json.dumps(AIPERF))
    rows = bench_rows(
        path, {"model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "fp8", "instances": 2}
    )
    assert rows["metric"].tolist() == ["output_tokens_per_s_total", "ttft_ms", "tpot_ms"]
    assert rows["value"].tolist() == [780.0, 180.0, 28.0]
    assert set(rows["isl"]) == {2048}
    assert set(rows["osl"]) == {256}
    assert set(rows["batch"]) == {"16"}  # 32 in flight over 2 instances
    assert set(rows["instances"]) == {2}
    broken = tmp_path / "aiperf-broken.json"
    broken.write_text(json.dumps({**AIPERF, "input_sequence_length": 2048}))
    with pytest.raises(SpecError, match="input_sequence_length"):
        bench_rows(broken, {"model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "fp8"})
