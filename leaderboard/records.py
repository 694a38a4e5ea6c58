"""Find, load and validate result records, and flatten them into one pandas row per run.

Every `*.json` under the results folder that has a `schema_version` key is a record; other JSON
files are ignored. Records that cannot be used are skipped with a warning naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.schema import REQUIRED, SCHEMA_VERSION, upgrade, validate
from benchmark.summary import best_val_accuracy
from benchmark.timings import quotable, same_device, speedup, timing_devices
from zoo.errors import CifarzooError

# nested keys an ok record needs (the schema's validate() checks only the top level and test); a failed
# or skipped run may have stopped before its data was loaded, so it needs none of them
NEEDED = (("entry", "name"), ("data", "fingerprint"))


@dataclass
class Gathered:
    """What the build reads: the valid records, where each came from, and what was skipped and why."""

    records: dict[str, dict[str, Any]]  # run_id -> record
    paths: dict[str, Path]  # run_id -> the record's file
    runs: pd.DataFrame  # one row per record (see `flatten`)
    warnings: list[str] = field(default_factory=list)
    results: Path | None = None  # the folder they came from (its timings/ hold timing records)


log = logging.getLogger("cifarzoo.leaderboard")  # every warning of a build: records skipped, files unreadable


class _Collector(logging.Handler):
    def __init__(self, found: list[str], listener: Callable[[str], None] | None) -> None:
        super().__init__(logging.WARNING)
        self.found, self.listener = found, listener

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.found.append(message)
        if self.listener is not None:
            self.listener(message)


@contextmanager
def collecting(listener: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """The warnings logged under `cifarzoo.leaderboard` while the block runs (what --strict counts), each
    also handed to `listener` as it is logged."""
    found: list[str] = []
    handler = _Collector(found, listener)
    log.addHandler(handler)
    try:
        yield found
    finally:
        log.removeHandler(handler)


def gather(results: Path, warn: Callable[[str], None] | None = None) -> Gathered:
    """Load every record under `results`; a missing folder or no usable record is a CifarzooError.

    Each warning is returned in `Gathered.warnings` and, as it is found, passed to `warn`.
    """
    results = Path(results)
    if not results.exists():
        raise CifarzooError(f"results folder '{results}' does not exist; run `cifarzoo bench` first "
                            "or pass --results with the folder that holds the result records.")
    if not results.is_dir():
        raise CifarzooError(f"'{results}' is a file, not a folder; pass --results with a folder of records.")
    with collecting(warn) as warnings:
        records, paths = _read_all(results)
    if not records:
        skipped = f" ({len(warnings)} skipped, see the warnings)" if warnings else ""
        raise CifarzooError(f"no usable result records under '{results}'{skipped}; run `cifarzoo bench` "
                            "first or pass --results with the folder that holds them.")
    runs = pd.DataFrame([flatten(r, paths[k].relative_to(results).as_posix()) for k, r in records.items()])
    return Gathered(records=records, paths=paths, runs=runs, warnings=list(warnings), results=results)


def _read_all(results: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    records: dict[str, dict[str, Any]] = {}
    paths: dict[str, Path] = {}
    for path in sorted(results.rglob("*.json")):
        name = path.relative_to(results).as_posix()
        if _not_records(name):
            continue
        record = _read_record(path, name)
        if record is None:
            continue
        run_id = str(record["run_id"])
        if run_id in records:
            log.warning(f"records {paths[run_id].relative_to(results).as_posix()} and {name} share "
                            f"run_id {run_id}; kept the first.")
            continue
        tb = record.get("traceback_file")
        if tb and not (path.parent / tb).is_file():
            log.warning(f"record {name} names traceback file {tb}, which is not beside it.")
        records[run_id], paths[run_id] = record, path
    _drop_superseded(records, paths, results)
    _drop_older_configurations(records, paths, results)
    return records, paths


def _drop_superseded(records: dict[str, dict[str, Any]], paths: dict[str, Path], results: Path) -> None:
    """Keep one record per (entry, profile, data, seed): the newest. Two can exist when the entry's recipe
    changed between runs (a new run id); averaging both as if they were seeds would be wrong."""
    newest: dict[tuple[Any, ...], str] = {}
    for run_id, r in _oldest_first(records):
        if r["sweep"]:
            continue  # trials share entry, profile and seed by design
        key = (*_group(r), r["seed"])
        if key in newest:
            old = newest[key]
            log.warning(f"records {paths[old].relative_to(results).as_posix()} and "
                            f"{paths[run_id].relative_to(results).as_posix()} are both seed {r['seed']} of "
                            f"{key[0]} ({key[1]}); kept the newer, {paths[run_id].relative_to(results).as_posix()}.")
            del records[old], paths[old]
        newest[key] = run_id


def _drop_older_configurations(records: dict[str, dict[str, Any]], paths: dict[str, Path],
                               results: Path) -> None:
    """Within one (entry, profile, data), keep only the runs of the newest run's configuration (network and
    recipe). When an entry changes and only some seeds are rerun, the rest ran something else: pooling them
    would give the new entry a mean it never earned."""
    newest: dict[tuple[Any, ...], str] = {}  # group -> configuration of its newest run
    ordered = _oldest_first(records)[::-1]
    for _, r in ordered:
        if not r["sweep"]:
            newest.setdefault(_group(r), _configuration(r))
    stale = [run_id for run_id, r in ordered if not r["sweep"] and _configuration(r) != newest[_group(r)]]
    for run_id in sorted(stale, key=lambda k: paths[k]):
        r = records[run_id]
        log.warning(f"record {paths[run_id].relative_to(results).as_posix()} (seed {r['seed']} of "
                    f"{_group(r)[0]}, {r['profile']}) ran an older network or recipe than the newest run of that "
                    "entry; left out of the tables.")
        del records[run_id], paths[run_id]


def _oldest_first(records: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(run_id, record) by finish time; the run id breaks ties, so the order never depends on the files'."""
    return sorted(records.items(), key=lambda item: (str(item[1]["finished_at"]), item[0]))


def _group(record: dict[str, Any]) -> tuple[Any, ...]:
    return dig(record, "entry", "name"), record["profile"], dig(record, "data", "fingerprint")


def _configuration(record: dict[str, Any]) -> str:
    """What was trained, apart from the seed: the network, its arguments, the starting weights and the recipe
    that ran (the profile applied)."""
    entry = record.get("entry") or {}
    return json.dumps([entry.get("architecture"), entry.get("arch_kwargs"), entry.get("pretrained"),
                       record.get("recipe")], sort_keys=True, default=str)


def _read_record(path: Path, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning(f"{name} is not readable JSON ({err}); skipped.")
        return None
    if not isinstance(data, dict) or "schema_version" not in data:
        what = "a JSON object" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        log.warning(f"{name} is {what} without a schema_version, not a result record; skipped.")
        return None
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        log.warning(f"record {name} has schema_version {version!r}, which is not an integer; skipped.")
        return None
    if version > SCHEMA_VERSION:
        log.warning(f"record {name} has schema_version {version}; this cifarzoo reads {SCHEMA_VERSION}"
                        " — upgrade cifarzoo; skipped.")
        return None
    data = upgrade(data)
    missing = [k for k in REQUIRED if k not in data]
    if data.get("status") == "ok":
        missing += [".".join(keys) for keys in NEEDED if keys[0] not in missing and dig(data, *keys) is None]
    if missing:
        log.warning(f"record {name} lacks fields {', '.join(missing)}; skipped.")
        return None
    problems = validate(data)
    if problems:
        log.warning(f"record {name} is invalid ({'; '.join(problems)}); skipped.")
        return None
    return data


def _not_records(name: str) -> bool:
    """Files under the results folder that are not records: hidden folders (claims, set-aside failures,
    checkpoints), the perf scripts' measurements (results/perf/, read by leaderboard.perf) and timing records
    (results/timings/, benchmark.timings)."""
    parts = name.split("/")
    return parts[0] in ("perf", "timings") or any(part.startswith(".") for part in parts)


def dig(record: Any, *keys: str | int) -> Any:
    """record[k1][k2]... or None where any level is missing or null."""
    for key in keys:
        if isinstance(record, dict):
            record = record.get(key)
        elif isinstance(record, list) and isinstance(key, int) and -len(record) <= key < len(record):
            record = record[key]
        else:
            return None
    return record


def flatten(record: dict[str, Any], file: str = "") -> dict[str, Any]:
    """The numbers and labels of one record that the tables need, as one flat row."""
    r = record
    return {
        "run_id": r["run_id"], "file": file, "status": r["status"], "reason": r["reason"],
        "traceback_file": r["traceback_file"],
        "entry": dig(r, "entry", "name") or str(r["run_id"]).split("--")[0],
        "architecture": dig(r, "entry", "architecture"),
        "family": dig(r, "entry", "family") or "", "kind": dig(r, "entry", "kind") or "",
        "report": dig(r, "entry", "report") or "", "report_model": dig(r, "entry", "report_model") or "",
        "reported_acc": dig(r, "entry", "reported", "accuracy"),
        "reported_loss": dig(r, "entry", "reported", "loss"),
        "seed": r["seed"], "profile": r["profile"],
        "data_source": dig(r, "data", "source") or "", "data_description": dig(r, "data", "description") or "",
        "fingerprint": dig(r, "data", "fingerprint"), "lossy": bool(dig(r, "data", "lossy")),
        "test_acc": dig(r, "test", "accuracy"), "test_loss": dig(r, "test", "loss"),
        "ece": dig(r, "test", "ece"), "auc_macro": dig(r, "test", "roc_auc", "macro"),
        "params": dig(r, "model", "params"), "flops": dig(r, "model", "flops_per_image"),
        "torch_ms": dig(r, "timing", "torch", "batch1_ms", "p50"),
        "ort_ms": dig(r, "timing", "onnxruntime", "batch1_ms", "p50"),
        "speedup": speedup(r["timing"]),
        "timing_devices": timing_devices(r["timing"]),
        "cross_device": bool(r["timing"]) and not same_device(r["timing"]),
        "timed": r["timing"] is not None, "timing_ok": quotable(r["timing"]),
        "train_s": dig(r, "durations", "train_s"), "total_s": dig(r, "durations", "total_s"),
        "epochs_run": dig(r, "training", "epochs_run"), "best_epoch": dig(r, "training", "best_epoch"),
        "command": r["command"], "finished_at": r["finished_at"],
        "study": dig(r, "sweep", "study"), "trial": dig(r, "sweep", "trial"),
        "best_val_acc": best_val_accuracy(r["history"]),
    }
