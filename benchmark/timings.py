"""Timing records: inference timings are a property of a machine, training results are not.

A bench times each run right after training, in a phase of its own; when the machine was busy then (the
load average above the core count), that timing is marked contended and the site does not quote it.
`cifarzoo time --results DIR` times the stored weights of DIR's records again, on the machine it runs on,
and writes one timing record per (entry, machine) measurement under `DIR/timings/`:

    {timing_version, entry, arch_kwargs, input_size, run_id (the record whose weights were timed),
     machine: {cpu, key, threads, device}, measured_at, command, model: {params, flops_per_image, onnx_bytes},
     timing: the record's timing section (benchmark.timing.time_both)}

The site shows, per entry, the newest uncontended timing record of each machine (the index: the newest of
all), else the bench record's own timing if it was uncontended, else "contended".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

TIMING_VERSION = 1
FOLDER = "timings"


def retime(results: Path, records: list[dict[str, Any]], *, budget: str = "full", device: str = "cpu",
           threads: int | None = None, command: str = "") -> list[Path]:
    """Time the weights of each ok record again here; one timing record per distinct network."""
    import torch

    from benchmark import fastpath, machine
    from benchmark.modelstats import count_params, flops_per_image
    from benchmark.onnx_export import export_onnx
    from benchmark.timing import BUDGETS, time_both
    from zoo.files import write_atomic

    threads = threads or torch.get_num_threads()
    written, seen = [], set()
    for record in records:
        key = (record["entry"]["name"], json.dumps(record["entry"]["arch_kwargs"], sort_keys=True))
        if record["status"] != "ok" or record["sweep"] or key in seen:
            continue
        seen.add(key)
        model, size = _network(record)
        with tempfile.TemporaryDirectory() as tmp:
            exported = export_onnx(model, Path(tmp) / "model.onnx", input_size=size)
            timing = time_both(model, exported.path if exported.ok else None, size, threads, BUDGETS[budget], device)
        now = dt.datetime.now(dt.timezone.utc)
        data = {"timing_version": TIMING_VERSION, "entry": key[0], "arch_kwargs": record["entry"]["arch_kwargs"],
                "input_size": size, "run_id": record["run_id"],
                "machine": {"cpu": machine.cpu_name(), "key": fastpath.cache_key(device), "threads": threads,
                            "device": device},
                "measured_at": now.isoformat(timespec="seconds"), "command": command,
                "model": {"params": count_params(model), "flops_per_image": flops_per_image(model, size),
                          "onnx_bytes": exported.bytes if exported.ok else None},
                "timing": timing}
        name = f"{key[0]}--{data['machine']['key'][:8]}--{now.strftime('%Y%m%dT%H%M%S')}.json"
        written.append(write_atomic(Path(results) / FOLDER / name, json.dumps(data, indent=1) + "\n"))
    return written


def _network(record: dict[str, Any]) -> tuple[Any, int]:
    """The record's network with its stored weights where the store has them (timing needs only the shape)."""
    import zoo
    from benchmark.records import runs_entrys_network
    from zoo.hub import build
    from zoo.weights import store_dir

    entry = zoo.get_entry(record["entry"]["name"])
    size = record["recipe"]["input_size"]
    weights = store_dir() / (record["weights"] or {}).get("file", "-")
    if weights.is_file() and runs_entrys_network(record, entry.arch_kwargs):
        return zoo.load(entry.name, weights=str(weights)), size
    # the network the record ran: a sweep's or a smoke profile's instance may differ from the entry's own
    return build(dataclasses.replace(entry, arch_kwargs=record["entry"]["arch_kwargs"])).eval(), size


def read_timings(results: Path, warn: Any = None) -> list[dict[str, Any]]:
    """Every timing record under `results/timings/`, oldest first; unreadable ones are warned about."""
    folder = Path(results) / FOLDER
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            ok = (isinstance(data, dict) and data.get("timing_version") == TIMING_VERSION
                  and isinstance(data.get("timing"), dict) and isinstance(data.get("entry"), str))
        except (OSError, ValueError):
            ok = False
        if not ok:
            if warn is not None:
                warn(f"{FOLDER}/{path.name} is not a readable timing record; skipped.")
            continue
        found.append(data)
    return sorted(found, key=lambda d: str(d.get("measured_at", "")))


def same_device(timing: dict[str, Any] | None) -> bool:
    """Whether both runtimes ran on one kind of device. On a GPU machine whose onnxruntime has no CUDA provider,
    PyTorch ran on the GPU and ONNX Runtime on the CPU: both figures stand, their ratio compares nothing."""
    if not timing:
        return False
    return str(timing.get("device", "cpu")).split(":")[0] == timing.get("ort_device", "cpu")


def timing_devices(timing: dict[str, Any] | None) -> str:
    """"" where both runtimes ran on the CPU (the usual case, said nowhere), else where each ran."""
    if not timing or (timing.get("device", "cpu") == "cpu" and timing.get("ort_device", "cpu") == "cpu"):
        return ""
    return f"PyTorch on {timing.get('device')}, ONNX Runtime on {timing.get('ort_device', 'cpu')}"


def speedup(timing: dict[str, Any] | None, kind: str = "batch1") -> float | None:
    """ONNX Runtime's speed-up over PyTorch (`kind`: "batch1" or "batch"), None where it was not measured or
    the two ran on different devices (records written before `time_both` checked that carry one anyway)."""
    return timing.get(f"speedup_{kind}") if timing and same_device(timing) else None


def quotable(timing: dict[str, Any] | None) -> bool:
    """A timing that was measured uncontended (older records without the flag: judged by their load)."""
    if not timing:
        return False
    if "contended" in timing:
        return not timing["contended"]
    from benchmark.machine import contended

    loads, cores = timing.get("cpu_load") or [], timing.get("cpu_count") or 1
    return not contended(loads, cores)


def newest_per_entry(timings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """entry -> its newest uncontended timing record (any machine)."""
    best: dict[str, dict[str, Any]] = {}
    for data in timings:  # oldest first: later ones win
        if quotable(data["timing"]):
            best[data["entry"]] = data
    return best


def newest_per_machine(timings: list[dict[str, Any]], entry: str) -> list[dict[str, Any]]:
    """The newest uncontended timing record of `entry` on each machine, newest first."""
    by_machine: dict[str, dict[str, Any]] = {}
    for data in timings:
        if data["entry"] == entry and quotable(data["timing"]):
            by_machine[data["machine"]["key"]] = data
    return sorted(by_machine.values(), key=lambda d: d["measured_at"], reverse=True)
