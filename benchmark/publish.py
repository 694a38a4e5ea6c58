"""Publishing weights: from an entry's `full` records to a file and a record inside the package.

The seed is chosen on validation only (the best validation accuracy of each run's selected epoch; an entry
trained without a validation split publishes its lowest seed, stated in the record). The test split is read
twice, for what the shipped file itself scores: in fp32 as trained, and stored as float16. float16 storage
is kept only if it moves the test accuracy by at most `FP16_TOLERANCE`: that is a check of storage
precision, not a choice among models. The published record's `test_accuracy` is the shipped file's own
score, so `zoo.load(entry)` reproduces it exactly.
"""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any

import torch

import zoo
from benchmark.data import Dataset
from benchmark.records import read_record, runs_entrys_network
from benchmark.verify import block_metrics
from zoo import published
from zoo.errors import CifarzooError
from zoo.published import Weights, read_manifest, write_manifest

FP16_TOLERANCE = 0.0005  # test accuracy, fraction: 0.05 points


def finished_records(results: Path, entry: str, fingerprint: str, profile: str = "full") -> list[dict[str, Any]]:
    """The finished records of `entry` at `profile` on the data with `fingerprint`, by seed; only runs of the
    entry's own network (not a sweep's, nor a smoke profile's smaller instance)."""
    own = zoo.get_entry(entry).arch_kwargs
    found = []
    for path in sorted(Path(results).rglob(f"{entry}--{profile}--s*.json")):
        record = read_record(path)
        if (record["status"] == "ok" and record["entry"]["name"] == entry and not record["sweep"]
                and runs_entrys_network(record, own) and record["data"]["fingerprint"] == fingerprint):
            found.append(record)
    return sorted(found, key=lambda r: r["seed"])


def selected_val_accuracy(record: dict[str, Any]) -> float | None:
    """Validation accuracy of the epoch the run kept (None when it trained without validation)."""
    from benchmark.summary import selected_val_accuracy as of_history

    return of_history(record["history"], record["training"]["best_epoch"])


def choose_seed(records: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The record whose weights to publish, and why: validation accuracy decides, never the test split."""
    scored = [(selected_val_accuracy(r), r) for r in records]
    if all(val is None for val, _ in scored):
        return records[0], "trained without a validation split: the lowest seed is published"
    val, best = max(((v, r) for v, r in scored if v is not None), key=lambda item: (item[0], -item[1]["seed"]))
    return best, f"the best validation accuracy ({val:.4f}) of seeds {', '.join(str(r['seed']) for r in records)}"


def publish(entry: str, results: Path, data: Dataset, *, folder: Path | None = None, allow_fp16: bool = True,
            default: bool = True, profile: str = "full") -> Weights:
    """Publish `entry`'s best-on-validation `full` run on `data` into `folder` (default: the package's);
    returns its record. `profile` other than full is for tests."""
    from benchmark.evaluate import evaluate_model
    from zoo.weights import store_dir

    folder = folder or published.FOLDER
    records = finished_records(results, entry, data.fingerprint, profile)
    if not records:
        raise CifarzooError(f"no finished {profile}-profile record of '{entry}' on this data under {results}; "
                            f"run `cifarzoo bench {entry} --profile {profile}` first.")
    chosen, why = choose_seed(records)
    source = store_dir() / chosen["weights"]["file"]
    model = zoo.load(entry, weights=str(source))  # checked against its sidecar's sha256
    report32 = evaluate_model(model, data)
    model16 = _round_trip_fp16(model)
    report16 = evaluate_model(model16, data)
    fp32, fp16 = report32["accuracy"], report16["accuracy"]
    use16 = allow_fp16 and abs(fp16 - fp32) <= FP16_TOLERANCE
    shipped, report = (model16, report16) if use16 else (model, report32)
    file = f"{entry}.safetensors"
    sha = _write(shipped, entry, chosen["run_id"], folder / file, torch.float16 if use16 else None)
    accs = [r["test"]["accuracy"] for r in records]
    record = Weights(
        entry=entry, file=file, sha256=sha, dtype="float16" if use16 else "float32", profile=profile,
        run_id=chosen["run_id"], seed=chosen["seed"], seeds=tuple(r["seed"] for r in records),
        data={k: chosen["data"][k] for k in ("source", "description", "fingerprint", "lossy")},
        metrics={"test_accuracy": report["accuracy"], "test_accuracy_fp32": fp32, "test_accuracy_fp16": fp16,
                 "test_accuracy_record": chosen["test"]["accuracy"], "test_loss_record": chosen["test"]["loss"],
                 "test_accuracy_mean": statistics.fmean(accs),
                 "test_accuracy_sd": statistics.stdev(accs) if len(accs) > 1 else None,
                 "n_seeds": len(accs), "val_accuracy": selected_val_accuracy(chosen),
                 **block_metrics(report["correct_by_block"])},
        recipe=chosen["recipe"], num_params=chosen["model"]["params"], classes=tuple(data.classes),
        mean=tuple(chosen["data"]["mean"]), std=tuple(chosen["data"]["std"]),
        input_size=chosen["recipe"]["input_size"], tta=chosen["recipe"]["tta"],
        train_seconds=chosen["durations"]["train_s"], machine=chosen["environment"]["device_name"],
        default=default, published_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        note=f"seed {chosen['seed']}: {why}; stored as {'float16' if use16 else 'float32'} "
             f"(test accuracy {100 * fp32:.2f} % in fp32, {100 * fp16:.2f} % after float16 storage)")
    others = [w for w in read_manifest(folder) if w.entry != entry]
    write_manifest([*others, record], folder)
    return record


def _round_trip_fp16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose floating-point weights went through float16 storage and back to float32."""
    import copy

    copied = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*copied.parameters(), *copied.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return copied


def _write(model: torch.nn.Module, entry: str, run_id: str, path: Path, dtype: Any) -> str:
    from safetensors.torch import save

    from zoo.files import sha256_bytes, write_atomic

    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={"entry": entry, "run_id": run_id, "format": "cifarzoo-weights-1"})
    write_atomic(path, blob)
    return sha256_bytes(blob)
