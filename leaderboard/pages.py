"""What one entry page shows: its seeds' records reduced to template data, and its figures drawn.

A page covers one leaderboard row (entry, profile, data fingerprint). Per-class scores are averaged
over seeds and the confusion matrix is summed over seeds; the ROC curves, calibration and sample
predictions come from one representative seed (the one with the median accuracy), named on the page.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmark.timings import quotable, speedup, timing_devices
from leaderboard import plots
from leaderboard.records import dig
from zoo.files import inside

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# the size is our own rough estimate (README, Performance): airbench94's network, 90.4 % here vs 94 % published
LOSSY_NOTE = ("JPEG q75 re-encoding of CIFAR-10 (lossy): numbers sit below published CIFAR-10 figures, "
              "by roughly 3.5 points for airbench94's network in our runs.")
SMOKE_NOTE = "smoke profile: a seconds-long run for tests and CI; its numbers mean nothing."


def representative(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed with the median test accuracy (the lower one of two middles; ties go to the lower seed)."""
    ranked = sorted(records, key=lambda r: (dig(r, "test", "accuracy") or 0.0, r["seed"]))
    return ranked[(len(ranked) - 1) // 2]


def entry_context(row: dict[str, Any], records: list[dict[str, Any]], site: Path,
                  sample_images: dict[int, str] | None, sample_note: str,
                  figures: list[plots.Job], machine_timings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Template data for one entry page; appends the figures it shows (under site/assets/<slug>/) to `figures`."""
    records = sorted(records, key=lambda r: r["seed"])
    rep = representative(records)
    slug = Path(row["page"]).stem
    classes = dig(rep, "data", "classes") or CIFAR10
    drawn = _figures(records, rep, classes, inside(site, f"assets/{slug}"), figures)
    return {
        "row": row, "slug": slug, "rep": rep, "records": records, "classes": classes,
        "entry": rep["entry"], "recipe": _flat(rep["recipe"] or {}), "data": rep["data"] or {},
        "seeds": [_seed_row(r) for r in records],
        "per_class": _per_class(records, classes),
        "figures": {name: f"../assets/{slug}/{file}" for name, file in drawn.items()},
        "samples": _samples(rep, classes, sample_images),
        "sample_note": sample_note,
        "timing": rep["timing"], "timing_ok": quotable(rep["timing"]), "machine_timings": machine_timings,
        "timing_devices": timing_devices(rep["timing"]),
        "onnx": rep["onnx"], "fast_path": rep["fast_path"] or {},
        "environment": rep["environment"] or {}, "env_differs": _differing(records, "environment"),
        "training": rep["training"] or {}, "durations": rep["durations"] or {},
        "lossy_note": LOSSY_NOTE if dig(rep, "data", "lossy") else "",
        "smoke_note": SMOKE_NOTE if row["profile"] == "smoke" else "",
    }


def _seed_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": r["seed"], "run_id": r["run_id"], "accuracy": dig(r, "test", "accuracy"),
        "loss": dig(r, "test", "loss"), "ece": dig(r, "test", "ece"), "auc": dig(r, "test", "roc_auc", "macro"),
        "epochs_run": dig(r, "training", "epochs_run"), "best_epoch": dig(r, "training", "best_epoch"),
        "stop_reason": dig(r, "training", "stop_reason"), "train_s": dig(r, "durations", "train_s"),
        "torch_ms": dig(r, "timing", "torch", "batch1_ms", "p50"),
        "ort_ms": dig(r, "timing", "onnxruntime", "batch1_ms", "p50"),
        "speedup": speedup(r["timing"]), "timing_ok": quotable(r["timing"]),
        "finished_at": r["finished_at"], "command": r["command"],
        "weights": r["weights"], "sweep": r["sweep"],
    }


def _per_class(records: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Per class: mean and (with several seeds) sample std of precision, recall, F1 and AUC."""
    metrics = {"precision": ("per_class", "precision"), "recall": ("per_class", "recall"),
               "f1": ("per_class", "f1"), "auc": ("roc_auc", "per_class")}
    rows = []
    for i, name in enumerate(classes):
        row: dict[str, Any] = {"name": name, "support": dig(records[0], "test", "per_class", "support", i)}
        for metric, keys in metrics.items():
            values = [v for r in records if (v := dig(r, "test", *keys, i)) is not None]
            row[metric] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def _samples(rep: dict[str, Any], classes: list[str], images: dict[int, str] | None) -> list[dict[str, Any]]:
    out = []
    for s in dig(rep, "test", "samples") or []:
        label, pred = s.get("label"), s.get("pred")
        out.append({
            "index": s.get("index"), "label": _name(classes, label), "pred": _name(classes, pred),
            "confidence": s.get("confidence"), "correct": label == pred,
            "image": f"../{images[s['index']]}" if images and s.get("index") in images else None,
        })
    return out


def _name(classes: list[str], index: Any) -> str:
    return classes[index] if isinstance(index, int) and 0 <= index < len(classes) else str(index)


def _figures(records: list[dict[str, Any]], rep: dict[str, Any], classes: list[str], folder: Path,
             jobs: list[plots.Job]) -> dict[str, str]:
    """Queue the figures the records have data for; returns figure name -> file name."""
    drawn: dict[str, str] = {}

    def queue(name: str, *args: Any) -> None:
        jobs.append(plots.job(name, *args, folder / f"{name}.png"))
        drawn[name] = f"{name}.png"

    histories = {r["seed"]: r["history"] for r in records if r["history"]}
    if histories:
        queue("curves", histories)
    matrices = [m for r in records if (m := dig(r, "test", "confusion_matrix"))]
    if matrices:
        total = [[sum(m[i][j] for m in matrices) for j in range(len(classes))] for i in range(len(classes))]
        title = f"summed over {len(matrices)} seeds" if len(matrices) > 1 else f"seed {records[0]['seed']}"
        queue("confusion", total, classes, title)
    scores = _per_class(records, classes)
    if all(row["precision"] is not None for row in scores):
        queue("per_class", {m: [row[m] for row in scores] for m in ("precision", "recall", "f1")}, classes)
    fpr, tpr = dig(rep, "test", "roc", "fpr"), dig(rep, "test", "roc", "tpr")
    auc = dig(rep, "test", "roc_auc", "per_class")
    if fpr and tpr and auc:
        queue("roc", fpr, tpr, auc, classes)
    bins = dig(rep, "test", "calibration")
    if bins and bins.get("confidence"):
        queue("calibration", bins["confidence"], bins["accuracy"], bins["count"], dig(rep, "test", "ece"))
    return drawn


def _differing(records: list[dict[str, Any]], section: str) -> list[str]:
    """Keys of `section` whose values are not the same in every record."""
    dicts = [r[section] or {} for r in records]
    keys = sorted(set().union(*dicts))
    return [k for k in keys if len({repr(d.get(k)) for d in dicts}) > 1]


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A nested dict as (dotted key, value) pairs, for key/value tables."""
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
