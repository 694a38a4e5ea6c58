"""The timing protocol: percentiles, budgets and caps, thread handling, and the record's `timing` section."""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn

from benchmark.onnx_export import export_onnx, ort_session
from benchmark.timing import (
    BUDGETS,
    FULL,
    QUICK,
    SMOKE,
    TimingBudget,
    measure,
    percentile,
    summarise,
    time_both,
    time_onnxruntime,
    time_torch,
)

TINY = TimingBudget(warmup=2, batch1_iters=15, batch_iters=2, batch_size=8)


class ThreadSpy(nn.Module):
    """A small CNN that records the PyTorch thread count it ran under."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 10))
        self.threads_seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and not torch.onnx.is_in_onnx_export():
            self.threads_seen.add(torch.get_num_threads())
        return self.net(x)


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile(values, 100) == 100.0 and percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # a measured value, never an interpolation


def test_summary_numbers():
    summary = summarise([3.0, 1.0, 2.0, 10.0], batch_ms=[100.0, 100.0], batch_size=32)
    assert summary["batch1_ms"] == {"p50": 2.0, "p90": 10.0, "p99": 10.0, "mean": 4.0}
    assert summary["batch_images_per_s"] == pytest.approx(320.0)  # 64 images in 0.2 s
    assert (summary["batch_size"], summary["iterations"], summary["batch_iterations"]) == (32, 4, 2)


def test_measure_runs_warmup_then_timed_calls():
    calls = []

    def call() -> None:
        calls.append(1)
        time.sleep(0.003 if len(calls) > 3 else 0.03)  # warm-up calls are slow: they must not be in the times

    times = measure(call, TimingBudget(warmup=3, batch1_iters=7, batch_iters=1), 7)
    assert len(calls) == 3 + 7 and len(times) == 7
    assert all(3.0 <= t < 25.0 for t in times), times  # milliseconds of the timed calls only


def test_measure_stops_at_the_time_cap_after_min_iters():
    budget = TimingBudget(warmup=50, batch1_iters=1000, batch_iters=1, max_seconds=0.05)
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.02)

    times = measure(slow, budget, 1000, min_iters=4)
    assert 4 <= len(times) <= 8  # min_iters honoured, then the 50 ms cap ends the phase
    assert len(calls) - len(times) <= 5  # warm-up capped as well
    assert min(times) >= 20.0


def test_presets():
    assert BUDGETS == {"smoke": SMOKE, "quick": QUICK, "full": FULL}
    assert SMOKE.batch1_iters <= 20 and SMOKE.batch_size <= 64 and SMOKE.max_seconds <= 1
    assert FULL.batch1_iters >= 200 and FULL.min_iters >= 200 and FULL.batch_size == 256
    assert QUICK.batch_size == 256 and QUICK.max_seconds is not None


def check_runtime_timing(result: dict, budget: TimingBudget) -> None:
    ms = result["batch1_ms"]
    assert 0 < ms["p50"] <= ms["p90"] <= ms["p99"]
    assert ms["p50"] <= ms["p99"] and ms["mean"] <= ms["p99"] + 1e-9  # few calls: p99 is the slowest one
    assert result["batch_images_per_s"] > 0
    assert result["batch_size"] == budget.batch_size
    assert result["iterations"] == budget.batch1_iters and result["batch_iterations"] == budget.batch_iters


def test_time_torch_uses_and_restores_the_thread_count():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = ThreadSpy().eval()
        result = time_torch(model, 16, threads=2, budget=TINY)
        assert model.threads_seen == {2}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
    check_runtime_timing(result, TINY)


def test_time_torch_runs_under_inference_mode():
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_inference_mode_enabled())
            return x.mean((2, 3))

    time_torch(Probe(), 8, threads=1, budget=TINY)
    assert seen and all(seen)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = ThreadSpy().eval()
    result = export_onnx(model, tmp_path_factory.mktemp("timing") / "spy.onnx", input_size=16)
    assert result.ok, result.reason
    return model, result.path


def test_time_onnxruntime(tiny_onnx):
    result = time_onnxruntime(ort_session(tiny_onnx[1], threads=1), 16, threads=1, budget=TINY)
    check_runtime_timing(result, TINY)


def test_time_both_is_the_records_timing_section(tiny_onnx):
    model, path = tiny_onnx
    timing = time_both(model, path, 16, threads=1, budget=TINY)
    assert (timing["device"], timing["threads"], timing["ort_device"]) == ("cpu", 1, "cpu")
    assert "inference_mode" in timing["protocol"] and "warm-up" in timing["protocol"]
    assert timing["cpu_count"] == os.cpu_count() and len(timing["cpu_load"]) == 2
    assert timing["cpu_load"][1] == pytest.approx(os.getloadavg()[0], abs=1.0)  # the load when timing ended
    assert timing["contended"] == any(load > os.cpu_count() + 0.5 for load in timing["cpu_load"])
    check_runtime_timing(timing["torch"], TINY)
    check_runtime_timing(timing["onnxruntime"], TINY)
    assert timing["speedup_batch1"] == timing["torch"]["batch1_ms"]["p50"] / timing["onnxruntime"]["batch1_ms"]["p50"]
    assert timing["speedup_batch"] == (timing["onnxruntime"]["batch_images_per_s"]
                                       / timing["torch"]["batch_images_per_s"])


@pytest.mark.parametrize(("device", "ort_device", "same"), [("cpu", "cpu", True), ("cuda", "cuda", True),
                                                         ("cuda:0", "cuda", True), ("cuda", "cpu", False)])
def test_a_speedup_is_quoted_only_between_runtimes_on_one_kind_of_device(device, ort_device, same):
    from benchmark.timings import same_device, speedup

    timing = {"device": device, "ort_device": ort_device, "speedup_batch1": 0.64, "speedup_batch": 0.011}
    assert same_device(timing) is same
    assert speedup(timing) == (0.64 if same else None) and speedup(timing, "batch") == (0.011 if same else None)
    assert speedup(None) is None and not same_device(None)


def test_time_both_without_an_onnx_file():
    timing = time_both(ThreadSpy().eval(), None, 16, threads=1, budget=TINY)
    check_runtime_timing(timing["torch"], TINY)
    assert timing["onnxruntime"] is None and timing["speedup_batch1"] is None and timing["speedup_batch"] is None


# ---- the CLI: `cifarzoo time` ------------------------------------------------------------------------------


def test_time_command_without_trained_weights(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from cifarzoo.cli import cli

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))  # an empty weights store
    result = CliRunner().invoke(cli, ["time", "cnn3-basic", "--json", "--budget", "smoke", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "no trained weights" in report["weights"] and "timing does not need trained weights" in report["weights"]
    assert report["model"]["params"] > 0 and report["model"]["onnx_bytes"] > 0
    assert report["onnx"]["exported"] is True
    timing = report["timing"]
    assert timing["threads"] == 1
    for runtime in ("torch", "onnxruntime"):
        check_runtime_timing(timing[runtime], SMOKE)


def test_time_command_refuses_a_corrupt_onnx_file(tmp_path):
    import subprocess
    import sys

    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"\x00garbage")
    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "cifarzoo", "time", "cnn3-basic", "--onnx", str(corrupt)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ONNX Runtime cannot load") and "broken.onnx" in done.stderr
    assert "Traceback" not in done.stderr
