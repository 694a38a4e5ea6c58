"""Inference timing: PyTorch eager vs ONNX Runtime, on the same machine, by one protocol.

The protocol (also stored, shortened, in every record as `timing.protocol`):

1. Same model, fp32, eval mode, contiguous (NCHW) memory; PyTorch runs under `torch.inference_mode()`,
   ONNX Runtime runs the exported file with full graph optimisation (ORT_ENABLE_ALL), sequential
   execution and one inter-op thread.
2. Same thread count for both: `torch.set_num_threads(threads)` (restored afterwards) and ORT's
   `intra_op_num_threads = threads`. ORT's thread spinning is off so its idle workers cannot steal the
   cores PyTorch is timed on (measured on this machine, see README); the runtimes are timed one after
   the other, never at once.
3. Session creation, export and model copies happen before the clock starts. The inputs are fixed
   random normal tensors created once (values do not matter for speed; shapes do).
4. Warm-up runs are executed and discarded, per phase, before timing (first runs allocate memory,
   pick kernels and fill caches).
5. Batch-1 latency: each of `batch1_iters` single-image calls is timed alone with
   `time.perf_counter_ns`; p50/p90/p99 are nearest-rank percentiles of the sorted times, plus the mean.
   On CUDA each call ends with a synchronize, so the time is what a caller waits for.
6. Throughput: `batch_iters` calls of `batch_size` images; images/s = images / total seconds.
7. A time cap (`max_seconds`, per phase) ends warm-up and timing early for slow models, after at least one
   warm-up call and `min_iters` timed batch-1 calls (`min_batch_iters` batch calls); the number of calls
   actually timed is reported.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.machine import contended, load_average
from benchmark.onnx_export import SPINNING, ort_session
from benchmark.timings import same_device

PROTOCOL = (
    "fp32 eval; same intra-op threads for both runtimes; torch.inference_mode vs ORT_ENABLE_ALL "
    f"(spinning {SPINNING}, 1 inter-op thread); warm-up, export and session creation excluded; batch-1 latency "
    "as nearest-rank p50/p90/p99 of per-call perf_counter_ns times; throughput = images / seconds "
    "over batch calls; runtimes timed one after the other"
)


@dataclass(frozen=True)
class TimingBudget:
    """How long to time: warm-up calls, timed batch-1 calls, timed batch calls (per runtime)."""

    warmup: int  # untimed calls before each phase
    batch1_iters: int  # timed single-image calls
    batch_iters: int  # timed calls of `batch_size` images
    batch_size: int = 256  # images per throughput call
    max_seconds: float | None = None  # per phase: stop timing (and warming up) after this long ...
    min_iters: int = 1  # ... but only once this many batch-1 calls were timed
    min_batch_iters: int = 1  # ... and this many batch calls


# smoke only shows that timing runs: batches of 8, since a warm-up and a timed call of 32 images per runtime
# were 10 s of the report-width ResNet-12's smoke run (one thread, AVX2 host)
SMOKE = TimingBudget(warmup=1, batch1_iters=10, batch_iters=1, batch_size=8, max_seconds=0.5, min_iters=3)
QUICK = TimingBudget(warmup=3, batch1_iters=100, batch_iters=3, max_seconds=3.0, min_iters=5)
FULL = TimingBudget(warmup=10, batch1_iters=500, batch_iters=10, max_seconds=30.0, min_iters=200, min_batch_iters=3)
BUDGETS = {"smoke": SMOKE, "quick": QUICK, "full": FULL}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list: always one of the measured values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def measure(call: Callable[[], Any], budget: TimingBudget, iters: int, min_iters: int = 1) -> list[float]:
    """Milliseconds of `iters` timed calls of `call` after `budget.warmup` untimed ones (time-capped)."""
    cap = budget.max_seconds
    start = time.perf_counter()
    for _ in range(budget.warmup):
        call()
        if cap is not None and time.perf_counter() - start > cap:
            break  # one warm-up call at least; a slow model gets no more
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if cap is not None and len(times) >= min_iters and time.perf_counter() - start > cap:
            break
    return times


def summarise(batch1_ms: list[float], batch_ms: list[float], batch_size: int) -> dict[str, Any]:
    """The per-runtime timing dict of the result record."""
    ordered = sorted(batch1_ms)
    return {
        "batch1_ms": {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
                      "p99": percentile(ordered, 99), "mean": sum(ordered) / len(ordered)},
        "batch_images_per_s": batch_size * len(batch_ms) / (sum(batch_ms) / 1e3),
        "batch_size": batch_size,
        "iterations": len(batch1_ms),
        "batch_iterations": len(batch_ms),
    }


def time_torch(model: nn.Module, input_size: int, threads: int, budget: TimingBudget,
               device: str = "cpu") -> dict[str, Any]:
    """Batch-1 latency and batch throughput of PyTorch eager (fp32, eval, inference_mode)."""
    from benchmark.modelstats import cpu_fp32_eval

    net = cpu_fp32_eval(model).to(device)
    one, many = _inputs(input_size, budget.batch_size)
    one, many = one.to(device), many.to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(x: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            net(x)
            sync()
        return call

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            batch1 = measure(run(one), budget, budget.batch1_iters, budget.min_iters)
            batch = measure(run(many), budget, budget.batch_iters, budget.min_batch_iters)
    finally:
        torch.set_num_threads(saved)
    return summarise(batch1, batch, budget.batch_size)


def time_onnxruntime(session: Any, input_size: int, threads: int, budget: TimingBudget) -> dict[str, Any]:
    """Batch-1 latency and batch throughput of an ONNX Runtime session (threads are the session's own)."""
    name = session.get_inputs()[0].name
    one, many = (x.numpy() for x in _inputs(input_size, budget.batch_size))
    batch1 = measure(lambda: session.run(None, {name: one}), budget, budget.batch1_iters, budget.min_iters)
    batch = measure(lambda: session.run(None, {name: many}), budget, budget.batch_iters, budget.min_batch_iters)
    return summarise(batch1, batch, budget.batch_size)


def time_both(model: nn.Module, onnx_path: Path | None, input_size: int, threads: int, budget: TimingBudget,
              device: str = "cpu") -> dict[str, Any]:
    """The record's `timing` section: PyTorch, then ONNX Runtime (None without an ONNX file), and ratios."""
    session = ort_session(onnx_path, threads, device) if onnx_path is not None else None
    load_before = load_average()
    torch_times = time_torch(model, input_size, threads, budget, device)
    ort_times = time_onnxruntime(session, input_size, threads, budget) if session is not None else None
    result: dict[str, Any] = {
        "device": device, "threads": threads, "protocol": PROTOCOL,
        "budget": {"warmup": budget.warmup, "batch1_iters": budget.batch1_iters,
                   "batch_iters": budget.batch_iters, "max_seconds": budget.max_seconds},
        "torch": torch_times, "onnxruntime": ort_times, "speedup_batch1": None, "speedup_batch": None,
    }
    # 1-minute load average before and after: above the core count, other processes shared the CPU and the
    # numbers (PyTorch's OpenMP threads above all) are not to be trusted: the site shows "contended" instead
    load_after = load_average()
    result.update(cpu_load=[load_before, load_after], cpu_count=os.cpu_count(),
                  contended=contended((load_before, load_after)))
    if ort_times is not None:
        result["ort_providers"] = session.get_providers()  # CPU only, unless onnxruntime-gpu is installed
        result["ort_device"] = "cuda" if result["ort_providers"][0] == "CUDAExecutionProvider" else "cpu"
        if same_device(result):  # a GPU against a CPU is no speed-up of one runtime over the other
            result["speedup_batch1"] = torch_times["batch1_ms"]["p50"] / ort_times["batch1_ms"]["p50"]
            result["speedup_batch"] = ort_times["batch_images_per_s"] / torch_times["batch_images_per_s"]
    return result


def _inputs(input_size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    one = torch.randn(1, 3, input_size, input_size, generator=generator)
    many = torch.randn(batch_size, 3, input_size, input_size, generator=generator)
    return one, many

