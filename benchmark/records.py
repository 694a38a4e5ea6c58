"""Writing and reading result records: run ids, atomic writes, the environment block."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from benchmark.machine import cpu_name
from benchmark.schema import READABLE_VERSIONS, SCHEMA_VERSION, upgrade, validate
from zoo.errors import CifarzooError
from zoo.files import write_atomic


def run_id(entry: str, recipe: dict[str, Any], arch_kwargs: dict[str, Any], seed: int, profile: str,
           fingerprint: str) -> str:
    """Stable id of one run: readable prefix + a hash of everything that defines it."""
    blob = json.dumps([entry, recipe, arch_kwargs, seed, profile, fingerprint], sort_keys=True, default=str)
    return f"{entry}--{profile}--s{seed}--{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def runs_entrys_network(record: dict[str, Any], arch_kwargs: dict[str, Any]) -> bool:
    """Did `record` run the network of an entry with these `arch_kwargs` (not a sweep's or a smoke profile's
    other instance)? Compared as JSON, as the record stores them (a tuple of widths is a list there)."""
    return record["entry"]["arch_kwargs"] == json.loads(json.dumps(arch_kwargs, default=str))


def record_path(results: Path, rid: str) -> Path:
    return results / f"{rid}.json"


def write_json_atomic(path: Path, data: Any, *, overwrite: bool = False) -> None:
    """Write JSON atomically (zoo.files.write_atomic); an existing file is kept unless `overwrite`, even
    one another process writes at the same moment."""
    write_atomic(path, json.dumps(data, indent=1) + "\n", overwrite=overwrite)


def write_record(results: Path, record: dict[str, Any], *, force: bool = False) -> Path:
    problems = validate(record)
    if problems:  # a programming error: the runner built an invalid record
        raise ValueError(f"invalid record {record.get('run_id')}: {'; '.join(problems)}")
    path = record_path(results, record["run_id"])
    write_json_atomic(path, record, overwrite=force)
    return path


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CifarzooError(f"cannot read result record {path}: {err}.") from None
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version not in READABLE_VERSIONS:
        raise CifarzooError(
            f"{path} has schema_version {version}, but this cifarzoo reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; use a results directory of those (or upgrade cifarzoo).")
    return upgrade(record)


def check_results_dir(results: Path) -> None:
    """Fail early, in one sentence, if results cannot be written or hold another schema version; remove
    what killed processes left there (temporary files of half-written records)."""
    from zoo.files import clean_stale

    try:
        results.mkdir(parents=True, exist_ok=True)
        clean_stale(results)
        probe = results / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError:
        raise CifarzooError(f"the results directory {results} is not writable; choose another --results.") from None
    for path in sorted(results.glob("*.json")):
        try:
            version = json.loads(path.read_text()).get("schema_version")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if version is not None and version not in READABLE_VERSIONS:
            raise CifarzooError(
                f"{results} holds records of schema version {version} (e.g. {path.name}); this cifarzoo writes "
                f"version {SCHEMA_VERSION}: use a fresh --results directory.")


def environment(device: str) -> dict[str, Any]:
    """Where a run ran: hardware, threads and library versions."""
    import torch

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        ort_version = None
    from importlib.metadata import PackageNotFoundError, version

    try:
        cifarzoo_version = version("cifarzoo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        cifarzoo_version = "unknown"

    return {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        # as pip has it (no "+cu130" build tag): importing torchvision to ask took 2.3 s of every bench process
        # (torchvision.ops imports torch._dynamo), and most runs build no torchvision model
        "torchvision": version("torchvision"),
        "onnxruntime": ort_version,
        "platform": platform.platform(),
        "cifarzoo": cifarzoo_version,
    }
