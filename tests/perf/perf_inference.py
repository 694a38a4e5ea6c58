"""PyTorch vs ONNX Runtime on every zoo architecture: batch-1 p50 latency and batch-256 throughput.

Not a test (pytest does not collect it): a measurement to run by hand, on an otherwise idle machine.

    .venv/bin/python tests/perf/perf_inference.py [--threads 2] [--budget quick] [--entry-size] [--only vit*]
    .venv/bin/python tests/perf/perf_inference.py --spinning [--only cnn3,resnet18,vit]

Every architecture is built with random weights (speed does not depend on trained values), exported
once, then timed by `benchmark.timing.time_both` (the protocol in its docstring) in this one process,
one architecture after the other; input 32x32 unless --entry-size (then the input size of the
architecture's first entry, e.g. 224 for the fine-tunes). Prints a markdown table, with the machine,
versions and load average, since other processes on the CPU distort every number.

--spinning instead compares ONNX Runtime's thread-spinning modes (off / on / on during a run only)
for a few architectures: ORT's own batch-1 p50, and PyTorch's batch-1 p50 timed right after ORT,
in interleaved rounds (median over rounds), to see whether one runtime slows the other.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from perfkit import write_json

import zoo
from benchmark.machine import host_line
from benchmark.modelstats import count_params, flops_per_image
from benchmark.onnx_export import SPINNING, SPINNING_MODES, export_onnx, ort_session
from benchmark.timing import BUDGETS, TimingBudget, time_both, time_onnxruntime, time_torch


def entry_input_size(architecture: str) -> int:
    entries = [zoo.get_entry(n) for n in zoo.list_models()]
    return next((e.recipe.input_size for e in entries if e.architecture == architecture), 32)


def machine_line(threads: int, budget: str) -> str:
    return (f"{host_line()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
            f"{threads} threads; budget {budget}; ORT spinning '{SPINNING}'")


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def table(architectures: list[str], threads: int, budget: TimingBudget, entry_size: bool) -> list[dict]:
    batch = budget.batch_size
    print("| architecture | input | params | MFLOPs | ONNX MB | torch b1 p50 ms | ORT b1 p50 ms | b1 speed-up "
          f"| torch b{batch} img/s | ORT b{batch} img/s | b{batch} speed-up | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios_1, ratios_b, rows = [], [], []
    for name in architectures:
        size = entry_input_size(name) if entry_size else 32
        model = zoo.create(name).eval()
        with tempfile.TemporaryDirectory() as tmp:
            exported = export_onnx(model, Path(tmp) / f"{name}.onnx", input_size=size)
            t = time_both(model, exported.path if exported.ok else None, size, threads, budget)
        pt, ort = t["torch"], t["onnxruntime"]
        cells = [name, str(size), f"{count_params(model) / 1e6:.2f}M", f"{flops_per_image(model, size) / 1e6:,.1f}",
                 f"{exported.bytes / 1e6:.1f}" if exported.ok else "-", f"{pt['batch1_ms']['p50']:.3f}"]
        if ort is None:
            cells += ["export failed", "-", f"{pt['batch_images_per_s']:,.0f}", "-", "-"]
        else:
            ratios_1.append(t["speedup_batch1"])
            ratios_b.append(t["speedup_batch"])
            cells += [f"{ort['batch1_ms']['p50']:.3f}", f"x{t['speedup_batch1']:.2f}",
                      f"{pt['batch_images_per_s']:,.0f}", f"{ort['batch_images_per_s']:,.0f}",
                      f"x{t['speedup_batch']:.2f}"]
        cells.append(f"{max(t['cpu_load']):.1f}")  # 1-min load average: above the core count, distrust the row
        print("| " + " | ".join(cells) + " |", flush=True)
        rows.append({"architecture": name, "input": size, "params": count_params(model),
                     "flops": flops_per_image(model, size), "onnx_bytes": exported.bytes if exported.ok else None,
                     "batch": batch, "torch": pt, "onnxruntime": ort, "speedup_batch1": t.get("speedup_batch1"),
                     "speedup_batch": t.get("speedup_batch"), "cpu_load": t["cpu_load"]})
    if ratios_1:
        print(f"\nmedian speed-up of ONNX Runtime over PyTorch: x{statistics.median(ratios_1):.2f} at batch 1 (p50), "
              f"x{statistics.median(ratios_b):.2f} at batch {batch} (throughput), over {len(ratios_1)} architectures")
    return rows


def spinning(architectures: list[str], threads: int, rounds: int = 3) -> None:
    budget = TimingBudget(warmup=5, batch1_iters=200, batch_iters=2, batch_size=64, max_seconds=2.0, min_iters=50)
    print("| architecture | ORT spinning | ORT b1 p50 ms | torch b1 p50 ms, timed right after ORT |")
    print("|---|---|---:|---:|")
    for name in architectures:
        model = zoo.create(name).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "m.onnx").path
            sessions = {mode: ort_session(path, threads, spinning=mode) for mode in SPINNING_MODES}
            ort_p50 = {mode: [] for mode in SPINNING_MODES}
            torch_p50 = {mode: [] for mode in SPINNING_MODES}
            for _ in range(rounds):
                for mode, session in sessions.items():
                    ort_p50[mode].append(time_onnxruntime(session, 32, threads, budget)["batch1_ms"]["p50"])
                    torch_p50[mode].append(time_torch(model, 32, threads, budget)["batch1_ms"]["p50"])
        for mode in SPINNING_MODES:
            print(f"| {name} | {mode} | {statistics.median(ort_p50[mode]):.3f} | "
                  f"{statistics.median(torch_p50[mode]):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both runtimes")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="quick", help="benchmark.timing preset")
    parser.add_argument("--entry-size", action="store_true", help="time at each architecture's entry input size")
    parser.add_argument("--only", default="*", help="comma-separated globs of architecture names")
    parser.add_argument("--spinning", action="store_true", help="compare ORT spinning modes instead")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file (e.g. "
                        "results/perf/inference.json, which the leaderboard site shows)")
    args = parser.parse_args()
    patterns = args.only.split(",")
    names = [a for a in zoo.list_architectures() if any(fnmatch.fnmatch(a, p) for p in patterns)]
    print(machine_line(args.threads, args.budget))
    print(f"before: {load()}\n")
    start = time.perf_counter()
    if args.spinning:
        spinning(names, args.threads)
        print(f"\nafter: {load()}; {time.perf_counter() - start:.0f} s")
        return
    rows = table(names, args.threads, BUDGETS[args.budget], args.entry_size)
    print(f"\nafter: {load()}; {time.perf_counter() - start:.0f} s")
    if args.json:
        write_json(args.json, {"kind": "inference", "machine": host_line(),
                               "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                               "threads": args.threads, "budget": args.budget, "spinning": SPINNING,
                               "seconds": time.perf_counter() - start, "rows": rows})


if __name__ == "__main__":
    main()
