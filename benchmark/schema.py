"""The result record: one JSON file per run, the only thing the leaderboard reads.

Schema version 2 (version-1 records are read through `upgrade`). A record is a dict with these
top-level keys (`REQUIRED`), all always present;
sections that a run did not reach are null. Units: accuracies are fractions 0..1, times in
seconds unless the key says `_ms`, sizes in bytes.

    schema_version  int, == SCHEMA_VERSION
    run_id          str, "<entry>--<profile>--s<seed>--<8 hex of sha256(entry, recipe, seed, profile, data)>"
    status          "ok" | "failed" | "skipped"
    reason          str | null       why it failed or was skipped (one sentence)
    traceback_file  str | null       file name (beside the record) holding the traceback of a failure
    entry           {name, architecture, arch_kwargs, family, kind, report, report_model,
                     reported: {accuracy, loss, where, note}, pretrained, description, recipe_sha256}
    recipe          Recipe.to_dict() after the profile was applied
    seed            int
    profile         "smoke" | "quick" | "full" (or a sweep's name)
    data            {source, description, fingerprint, lossy, n_train, n_val, n_test, classes,
                     mean, std, subset}
    environment     {device, device_name, threads, python, torch, torchvision, onnxruntime, platform,
                     cifarzoo}
    command         str, the exact command line that produced the record
    started_at      ISO-8601 UTC; finished_at likewise
    durations       {train_s, eval_s, export_s, timing_s, total_s}
    fast_path       {device_resident, precision, bf16, channels_last, compile, fused_optimizer, chosen_by,
                     probe}   chosen_by: "probe", "environment", "recipe", "cuda" or "checkpoint"
    history         [{epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s}]
    training        {best_epoch, epochs_run, stopped_early, stop_reason}
    model           {params, flops_per_image, onnx_bytes}
    test            {loss, accuracy, per_class: {precision, recall, f1, accuracy, support} (lists of 10),
                     confusion_matrix (10x10 ints, rows = true class), roc: {fpr, tpr} (per class lists,
                     downsampled, one fpr list and one tpr list per class),
                     roc_auc: {per_class, macro}, ece, calibration: {confidence, accuracy,
                     count} (per bin), top_confusions: [{true, pred, count}], samples: [{index, label,
                     pred, confidence}]}
    onnx            {exported, reason, opset, max_abs_diff, top1_agreement, parity_ok}
    timing          {device, threads, protocol, torch: {batch1_ms: {p50, p90, p99}, batch_images_per_s,
                     batch_size, iterations}, onnxruntime: {same keys}, speedup_batch1, speedup_batch}
    weights         {file, sha256} | null
    sweep           {study, trial, params} | null
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: the entry's recipe copied into `entry`, machine paths in data and weights

REQUIRED = (
    "schema_version", "run_id", "status", "reason", "traceback_file", "entry", "recipe", "seed",
    "profile", "data", "environment", "command", "started_at", "finished_at", "durations",
    "fast_path", "history", "training", "model", "test", "onnx", "timing", "weights", "sweep",
)
STATUSES = ("ok", "failed", "skipped")
TEST_KEYS = ("loss", "accuracy", "per_class", "confusion_matrix", "roc_auc", "ece")


def validate(record: dict[str, Any]) -> list[str]:
    """Problems with a record, as short sentences; an empty list means valid."""
    problems = [f"missing key '{k}'" for k in REQUIRED if k not in record]
    if problems:
        return problems
    if record["schema_version"] != SCHEMA_VERSION:
        return [f"schema_version {record['schema_version']} (this cifarzoo reads {SCHEMA_VERSION})"]
    if record["status"] not in STATUSES:
        problems.append(f"status '{record['status']}' is not one of {STATUSES}")
    if record["status"] == "ok":
        test = record["test"] or {}
        problems += [f"test lacks '{k}'" for k in TEST_KEYS if k not in test]
        acc = test.get("accuracy")
        if acc is not None and not 0.0 <= acc <= 1.0:
            problems.append(f"test accuracy {acc} is outside 0..1")
        cm = test.get("confusion_matrix")
        if cm is not None and sum(map(sum, cm)) != record["data"].get("n_test"):
            problems.append("confusion matrix does not sum to n_test")
    elif not record["reason"]:
        problems.append(f"a '{record['status']}' record needs a reason")
    return problems


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A record of a readable older version in the current layout (a new dict; the file is not touched).

    1 -> 2: the entry's own recipe, copied into `entry`, becomes its hash; data sources and weights files
    lose the machine's folders; `fast_path` gains `precision` and `chosen_by`; timings say if contended.
    """
    if record.get("schema_version") != 1:
        return record
    import copy
    import os
    import re

    from zoo.recipe import Recipe

    rec = copy.deepcopy(record)
    entry = rec.get("entry") or {}
    if isinstance(entry.get("recipe"), dict):
        entry["recipe_sha256"] = Recipe.from_dict(entry.pop("recipe")).sha256()
    data = rec.get("data") or {}
    if isinstance(data.get("source"), str) and "/" in data["source"]:
        data["source"] = data["source"].rstrip("/").rsplit("/", 1)[-1]
    if isinstance(data.get("description"), str):  # "..., /home/me/data/x.zip, sha256 ..." -> "..., x.zip, ..."
        data["description"] = re.sub(r"(?<![\w.])/(?:[^\s,/]+/)+([^\s,/]+)", r"\1", data["description"])
    weights = rec.get("weights") or {}
    if isinstance(weights.get("file"), str) and os.sep in weights["file"]:
        weights["file"] = "/".join(weights["file"].split("/")[-2:])
    fast = rec.get("fast_path")
    if isinstance(fast, dict):
        fast.setdefault("precision", "bf16" if fast.get("bf16") else "fp32")
        fast.setdefault("chosen_by", "recipe")
    timing = rec.get("timing")
    if isinstance(timing, dict) and "contended" not in timing:
        loads, cores = timing.get("cpu_load") or [], timing.get("cpu_count") or 1
        timing["contended"] = any(isinstance(x, (int, float)) and x > cores for x in loads)
    rec["schema_version"], rec["upgraded_from"] = SCHEMA_VERSION, 1
    return rec
