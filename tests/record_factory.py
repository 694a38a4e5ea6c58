"""Schema-valid, realistic result records for tests: `make_record(...)` and `write_record(...)`.

The numbers hang together the way a real run's do: the confusion matrix sums to n_test and has
`accuracy` on its diagonal, per-class precision/recall/F1 are computed from it, the ROC curves are
monotone with their AUC from the trapezoid rule, and the history ends at the best epoch's numbers.
Everything is derived from (entry, seed, profile, accuracy), so the same call gives the same record.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from benchmark import schema
from benchmark.schema import SCHEMA_VERSION
from zoo.recipe import EarlyStopping, Recipe

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# report 000's own test numbers (tables 1 and 2), so aug-vs-norm sections have something real to show
REPORTED = {
    "tinyvgg-norm": (0.7582, 1.081), "tinyvgg-aug": (0.8109, 0.568),
    "resnet12-norm": (0.8457, 0.629), "resnet12-aug": (0.8981, 0.340),
    "gru-norm": (0.6844, 1.033), "gru-aug": (0.7147, 0.845),
    "vit-norm": (0.6706, 1.105), "vit-aug": (0.7509, 0.712),
    "mlpmixer-norm": (0.7173, 0.884), "mlpmixer-aug": (0.7281, 0.782),
}
FAMILIES = {"tinyvgg": "cnn", "resnet12": "resnet", "gru": "rnn", "vit": "transformer",
            "mlpmixer": "mlp-mixer", "mobilenetv3-small": "pretrained", "resnet18": "pretrained"}
PARAMS = {"tinyvgg": 1_186_762, "resnet12": 8_012_234, "gru": 431_370, "vit": 2_694_410,
          "mlpmixer": 1_324_298, "mobilenetv3-small": 1_528_106, "resnet18": 11_181_642}

JPEG_DATA = {
    "source": "cifar10-jpeg.zip",
    "description": "CIFAR-10, JPEG q75 re-encoding (image-folder zip)",
    "fingerprint": "9f2c1e77a0b4d3c2",
    "lossy": True,
}


def make_record(entry: str = "tinyvgg-norm", seed: int = 0, profile: str = "quick",
                accuracy: float = 0.72, status: str = "ok", **overrides: Any) -> dict[str, Any]:
    """A schema-valid record; `overrides` are deep-merged (dict values merge, anything else replaces)."""
    rng = random.Random(f"{entry}|{seed}|{profile}|{accuracy}")
    architecture, _, kind = entry.rpartition("-")
    n_test = 1000
    reported = REPORTED.get(entry, (None, None))
    data = schema.DataSection(**JPEG_DATA, n_train=4000, n_val=1000, n_test=n_test, classes=CLASSES,
                              mean=[0.491, 0.482, 0.447], std=[0.247, 0.243, 0.261], subset="5,000 training images")
    recipe = Recipe(batch_size=128, max_epochs=4, augment="aug" if kind == "aug" else "norm",
                    early_stopping=EarlyStopping("val_loss", patience=5))
    record: dict[str, Any] = schema.Record(
        schema_version=SCHEMA_VERSION, run_id=_run_id(entry, profile, seed, data["fingerprint"]), status=status,
        reason=None, traceback_file=None,
        entry=schema.EntrySection(
            name=entry, architecture=architecture, arch_kwargs={}, family=FAMILIES.get(architecture, "cnn"),
            kind=kind, report="000", report_model=f"{architecture} ({'augmented' if kind == 'aug' else 'normalised'})",
            reported=schema.Reported(accuracy=reported[0], loss=reported[1], where="report 000, tables 1-2", note="",
                                     per_class_accuracy={}),
            pretrained=None, description=f"{architecture} as report 000 specifies it.",
            num_params=PARAMS.get(architecture, 1_000_000), weights_url=None, weights_sha256=None,
            recipe_sha256=recipe.sha256()),
        recipe=recipe.to_dict(), seed=seed, profile=profile, data=data,
        environment=schema.EnvironmentSection(
            device="cpu", device_name="x86_64 (2 cores)", threads=2, python="3.11.2", torch="2.5.1",
            torchvision="0.20.1", onnxruntime="1.20.1", platform="Linux-6.1-x86_64", cifarzoo="0.1.0"),
        command=f"cifarzoo train {entry} --profile {profile} --seed {seed}",
        started_at="2025-01-01T10:00:00Z", finished_at="2025-01-01T10:05:00Z",
        durations=schema.Durations(train_s=None, eval_s=None, export_s=None, timing_s=None, total_s=60.0),
        fast_path=None, history=[], training=None, model=None, test=None, onnx=None, timing=None, weights=None,
        sweep=None)
    if status == "ok":
        record.update(_ok_sections(rng, architecture, accuracy, n_test))
    else:
        record["reason"] = ("out of memory while training (batch 128)" if status == "failed"
                            else "skipped: weights for the fine-tune need a download and we are offline")
    record = _merge(record, overrides)
    if "run_id" not in overrides:  # a different data fingerprint makes a different run
        record["run_id"] = _run_id(entry, profile, seed, str((record["data"] or {}).get("fingerprint")))
    return record


def write_record(folder: Path, record: dict[str, Any], name: str | None = None) -> Path:
    """Write `record` as `<run_id>.json` (or `name`) under `folder`; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{record['run_id']}.json")
    path.write_text(json.dumps(record, indent=1))
    return path


def _ok_sections(rng: random.Random, architecture: str, accuracy: float, n_test: int) -> dict[str, Any]:
    cm = _confusion(rng, accuracy, n_test)
    per_class = _per_class(cm)
    roc, aucs = _roc(rng, per_class["recall"])
    params = PARAMS.get(architecture, 1_000_000)
    torch_p50 = round(params / 4e6 + rng.uniform(0.3, 0.6), 3)
    ort_p50 = round(torch_p50 / rng.uniform(1.5, 3.0), 3)
    epochs = 4
    history = []
    for e in range(1, epochs + 1):
        frac = e / epochs
        history.append({
            "epoch": e, "train_loss": round(2.2 - 1.4 * frac + rng.uniform(0, .05), 4),
            "train_acc": round(min(0.99, accuracy * frac + 0.08), 4),
            "val_loss": round(2.1 - 1.2 * frac + rng.uniform(0, .05), 4),
            "val_acc": round(accuracy * (0.7 + 0.3 * frac), 4), "lr": 0.001, "seconds": 12.5,
            "images_per_s": 320.0,
        })
    bins = [i / 10 + 0.05 for i in range(10)]
    labels = [rng.randrange(10) for _ in range(12)]
    return {
        "durations": {"train_s": 50.0 + rng.uniform(0, 5), "eval_s": 1.2, "export_s": 2.0, "timing_s": 6.0,
                      "total_s": 60.0},
        "fast_path": schema.FastPathSection(device_resident=True, precision="fp32", bf16=False, channels_last=True,
                                            compile=False, fused_optimizer=False, chosen_by="probe"),
        "history": history,
        "training": {"best_epoch": epochs, "epochs_run": epochs, "stopped_early": False,
                     "stop_reason": "max_epochs"},
        "model": {"params": params, "flops_per_image": params * 12, "onnx_bytes": params * 4 + 5000},
        "test": {
            "loss": round(1.8 - 1.4 * accuracy + rng.uniform(0, 0.02), 4), "accuracy": accuracy,
            "per_class": per_class, "confusion_matrix": cm, "roc": roc,
            "roc_auc": {"per_class": aucs, "macro": sum(aucs) / len(aucs)},
            "ece": round(rng.uniform(0.01, 0.06), 4),
            "calibration": {"confidence": bins,
                            "accuracy": [max(0.0, min(1.0, b - rng.uniform(0, 0.08))) for b in bins],
                            "count": [n_test // 10] * 10},
            "top_confusions": [{"true": 3, "pred": 5, "count": 31}, {"true": 5, "pred": 3, "count": 24}],
            "samples": [{"index": 7 * i + 3, "label": lab, "pred": lab if rng.random() < accuracy
                         else (lab + 3) % 10, "confidence": round(rng.uniform(0.4, 0.99), 3)}
                        for i, lab in enumerate(labels)],
        },
        "onnx": {"exported": True, "reason": None, "opset": 18, "max_abs_diff": 2.4e-6,
                 "top1_agreement": 1.0, "parity_ok": True},
        "timing": {
            "device": "cpu", "threads": 2, "protocol": "10 warm-up, 100 timed batch-1 calls; 5 x batch 256",
            "torch": {"batch1_ms": {"p50": torch_p50, "p90": torch_p50 * 1.2, "p99": torch_p50 * 1.6,
                                    "mean": torch_p50 * 1.05},
                      "batch_images_per_s": 2500.0, "batch_size": 256, "iterations": 100},
            "onnxruntime": {"batch1_ms": {"p50": ort_p50, "p90": ort_p50 * 1.2, "p99": ort_p50 * 1.5,
                                          "mean": ort_p50 * 1.05},
                            "batch_images_per_s": 4100.0, "batch_size": 256, "iterations": 100},
            "speedup_batch1": torch_p50 / ort_p50, "speedup_batch": 4100.0 / 2500.0,
            "cpu_load": [0.4, 0.6], "cpu_count": 2, "contended": False,
        },
        "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
    }


# how much easier or harder each class is than the average (cats and birds are hard, cars easy); sums to 0
CLASS_OFFSET = [0.06, 0.10, -0.08, -0.15, -0.02, -0.07, 0.05, 0.04, 0.08, -0.01]


def _confusion(rng: random.Random, accuracy: float, n_test: int) -> list[list[int]]:
    per = n_test // 10
    correct_total = round(accuracy * n_test)
    diag = [min(per, max(0, round((accuracy + off) * per))) for off in CLASS_OFFSET]
    step = 1 if correct_total > sum(diag) else -1
    i = 0
    while sum(diag) != correct_total:  # nudge until the diagonal holds exactly `accuracy`
        if 0 <= diag[i % 10] + step <= per:
            diag[i % 10] += step
        i += 1
    cm = []
    for i in range(10):
        row = [0] * 10
        row[i] = diag[i]
        for _ in range(per - diag[i]):  # errors go mostly to the "similar" class (cat <-> dog style)
            j = (i + 2) % 10 if rng.random() < 0.4 else rng.choice([k for k in range(10) if k != i])
            row[j] += 1
        cm.append(row)
    return cm


def _per_class(cm: list[list[int]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"precision": [], "recall": [], "f1": [], "accuracy": [], "support": []}
    for i in range(10):
        tp, support, predicted = cm[i][i], sum(cm[i]), sum(row[i] for row in cm)
        p, r = tp / predicted if predicted else 0.0, tp / support
        out["precision"].append(p)
        out["recall"].append(r)
        out["f1"].append(2 * p * r / (p + r) if p + r else 0.0)
        out["accuracy"].append(r)
        out["support"].append(support)
    return out


def _roc(rng: random.Random, recalls: list[float]) -> tuple[dict[str, list[list[float]]], list[float]]:
    fprs, tprs, aucs = [], [], []
    for r in recalls:
        power = max(0.05, (1 - r) * 0.6)  # tpr = fpr ** power: a better class bends closer to the corner
        fpr = [0.0, 0.001, 0.01, 0.03, 0.07, 0.15, 0.3, 0.5, 0.75, 1.0]
        tpr = [0.0] + [round(f ** power, 4) for f in fpr[1:]]
        fprs.append(fpr)
        tprs.append(tpr)
        aucs.append(sum((fpr[k + 1] - fpr[k]) * (tpr[k + 1] + tpr[k]) / 2 for k in range(len(fpr) - 1)))
    return {"fpr": fprs, "tpr": tprs}, aucs


def _run_id(entry: str, profile: str, seed: int, fingerprint: str) -> str:
    digest = hashlib.sha256(f"{entry}|{seed}|{profile}|{fingerprint}".encode()).hexdigest()[:8]
    return f"{entry}--{profile}--s{seed}--{digest}"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# a small leaderboard: (entry, profile, accuracy per seed); plus one failed and one skipped run
DEMO = [
    ("tinyvgg-norm", "quick", [0.70, 0.72, 0.71]), ("tinyvgg-aug", "quick", [0.76, 0.78]),
    ("resnet12-norm", "quick", [0.80]), ("resnet12-aug", "quick", [0.85, 0.86]),
    ("vit-norm", "quick", [0.61, 0.63]), ("mlpmixer-aug", "quick", [0.66]), ("vit-aug", "smoke", [0.20]),
]


def demo_results(folder: Path) -> list[dict[str, Any]]:
    """Write the DEMO records (12 ok, 1 failed with a traceback file, 1 skipped) under `folder`."""
    records = [make_record(entry, seed=seed, profile=profile, accuracy=acc)
               for entry, profile, accs in DEMO for seed, acc in enumerate(accs)]
    records.append(make_record("gru-norm", seed=0, status="failed", traceback_file="gru-norm-s0.traceback.txt"))
    records.append(make_record("gru-norm", seed=1, status="skipped"))
    for record in records:
        write_record(folder / record["profile"] / record["entry"]["name"], record)
    (folder / "quick" / "gru-norm" / "gru-norm-s0.traceback.txt").write_text(
        "Traceback (most recent call last):\n  File \"benchmark/train.py\", line 1\nRuntimeError: out of memory\n")
    return records


def _timing(p50_ms: float, images_per_s: float) -> dict[str, Any]:
    return {"batch1_ms": {"p50": p50_ms, "p90": p50_ms * 1.1, "p99": p50_ms * 1.3}, "batch_images_per_s": images_per_s}


def write_perf(results: Path) -> dict[str, dict[str, Any]]:
    """results/perf/{flagship,train_speed,reference,inference}.json with known numbers, as tests/perf writes them."""
    import zoo

    machine = {"machine": "Test CPU, 2 cores", "torch": "2.x", "threads": 2}
    flagship = zoo.get_entry("airnet-fast")
    perf = {
        # the entry's own recipe and arguments at 2 epochs: a reproduce command needs no --set
        "flagship": {"kind": "flagship", **machine, "entry": "airnet-fast",
                     "arch_kwargs": json.loads(json.dumps(flagship.arch_kwargs)),
                     "recipe": {**flagship.recipe.to_dict(), "max_epochs": 2},
                     "data": JPEG_DATA["description"], "device": "cpu",
                     "runs": [{"seed": 0, "acc": 0.90, "wall_s": 400.0, "train_s": 380.0,
                               "curve": [[1, 190.0, 0.80], [2, 380.0, 0.90]]},
                              {"seed": 1, "acc": 0.92, "wall_s": 420.0, "train_s": 400.0,
                               "curve": [[1, 200.0, 0.82], [2, 400.0, 0.92]]}],
                     "reference": [{"seed": 0, "acc": 0.905, "wall_s": 600.0, "epochs": 9.9, "curve": []}]},
        "train_speed": {"kind": "train_speed", **machine, "data": JPEG_DATA["description"],
                        "speed": [{"entry": "tinyvgg-aug", "batch_size": 32, "images": 2048,
                                   "reports_images_per_s": 40.0, "fast_images_per_s": 120.0, "threads": 2}],
                        "accuracy": [{"entry": "tinyvgg-aug", "images": 5000, "epochs": 3, "seed": s,
                                      "reports_acc": r, "fast_acc": f}
                                     for s, r, f in ((0, 0.40, 0.41), (1, 0.42, 0.42))]},
        "reference": {"kind": "reference", **machine, "images": 4096, "epochs_timed": 1, "precision": "fp32",
                      "channels_last": True, "reference_images_per_s": 100.0, "cifarzoo_images_per_s": 125.0,
                      "ratio": 1.25},
        "inference": {"kind": "inference", **machine, "onnxruntime": "1.x", "budget": "quick", "spinning": "off",
                      "rows": [{"architecture": a, "input": 32, "params": 500_000, "flops": 4.6e8,
                                "onnx_bytes": 2_000_000, "batch": 256, "torch": _timing(t, ti),
                                "onnxruntime": _timing(o, oi), "speedup_batch1": t / o, "speedup_batch": oi / ti,
                                "cpu_load": [0.5, 0.7]}
                               for a, t, o, ti, oi in (("tinyvgg", 4.0, 2.0, 160.0, 400.0),
                                                       ("vit", 5.0, 4.0, 400.0, 440.0),
                                                       ("cnn3", 0.4, 0.1, 19000.0, 29000.0))]},
    }
    for kind, data in perf.items():
        (results / "perf").mkdir(parents=True, exist_ok=True)
        (results / "perf" / f"{kind}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return perf
