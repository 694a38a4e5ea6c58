"""Classification metrics as pure functions of (logits, labels).

Everything takes `logits` (N, C) float and `labels` (N,) int, numpy or torch, and returns plain
Python numbers and lists, ready for a JSON record. Checked against scikit-learn in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy() if a.is_floating_point() else a.detach().cpu().numpy()
    return np.asarray(a)


def softmax(logits: Any) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    z = _np(logits).astype(np.float64)
    y = _np(labels)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def accuracy(logits: Any, labels: Any) -> float:
    return float((_np(logits).argmax(axis=1) == _np(labels)).mean())


def correct_by_block(logits: Any, labels: Any, block: int) -> list[int]:
    """Correct top-1 answers in each run of `block` consecutive images (the last run may be shorter)."""
    hits = _np(logits).argmax(axis=1) == _np(labels)
    return [int(hits[i:i + block].sum()) for i in range(0, len(hits), block)]


def confusion_matrix(logits: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    pred = _np(logits).argmax(axis=1)
    y = _np(labels)
    return np.bincount(y * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_scores(cm: np.ndarray) -> dict[str, list[float]]:
    """Precision, recall, F1, per-class accuracy (= recall, as report 004 uses it) and support."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
        "accuracy": recall.tolist(), "support": support.astype(int).tolist(),
    }


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ROC: false and true positive rates at every distinct threshold, from (0,0) to (1,1)."""
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order].astype(np.float64)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each threshold
    tps = np.cumsum(p)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = p.sum(), len(p) - p.sum()
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.zeros(len(fps) + 1)
    return fpr, tpr


def roc_auc(logits: Any, labels: Any, num_classes: int) -> dict[str, Any]:
    """Per-class one-vs-rest AUC (trapezoid under the exact ROC) and their unweighted mean."""
    probs, y = softmax(logits), _np(labels)
    per_class = []
    for c in range(num_classes):
        fpr, tpr = roc_curve(probs[:, c], y == c)
        per_class.append(float(np.trapezoid(tpr, fpr)))
    return {"per_class": per_class, "macro": float(np.mean(per_class))}


def roc_curves(logits: Any, labels: Any, num_classes: int, points: int = 101) -> dict[str, list]:
    """ROC curves resampled at `points` evenly spaced false-positive rates (small enough for a record);
    `fpr` and `tpr` are both per-class lists, as the record schema states."""
    probs, y = softmax(logits), _np(labels)
    grid = np.linspace(0.0, 1.0, points)
    tprs = []
    for c in range(num_classes):
        fpr, tpr = roc_curve(probs[:, c], y == c)
        tprs.append(np.round(np.interp(grid, fpr, tpr), 5).tolist())
    return {"fpr": [np.round(grid, 5).tolist()] * num_classes, "tpr": tprs}


def calibration(logits: Any, labels: Any, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error over equal-width confidence bins, and the per-bin reliability data."""
    probs, y = softmax(logits), _np(labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    nz = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.zeros(bins), where=nz)
    mean_acc = np.divide(acc_sum, count, out=np.zeros(bins), where=nz)
    ece = float(np.sum(count / max(len(y), 1) * np.abs(mean_acc - mean_conf)))
    return {"ece": ece, "confidence": mean_conf.tolist(), "accuracy": mean_acc.tolist(), "count": count.tolist()}


def top_confusions(cm: np.ndarray, k: int = 5) -> list[dict[str, int]]:
    """The k largest off-diagonal cells of the confusion matrix (ties broken by class order)."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    n = cm.shape[0]
    return [{"true": int(i // n), "pred": int(i % n), "count": int(off.flat[i])} for i in flat if off.flat[i] > 0]


def sample_predictions(logits: Any, labels: Any, n: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """A fixed sample (same seed, same indices) of test predictions for the site."""
    probs, y = softmax(logits), _np(labels)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), size=min(n, len(y)), replace=False))
    return [
        {"index": int(i), "label": int(y[i]), "pred": int(probs[i].argmax()),
         "confidence": round(float(probs[i].max()), 4)}
        for i in idx
    ]


def classification_report(logits: Any, labels: Any, num_classes: int) -> dict[str, Any]:
    """Everything the record's `test` section holds, computed from logits and labels alone."""
    cm = confusion_matrix(logits, labels, num_classes)
    cal = calibration(logits, labels)
    return {
        "loss": cross_entropy(logits, labels),
        "accuracy": accuracy(logits, labels),
        "per_class": per_class_scores(cm),
        "confusion_matrix": cm.tolist(),
        "roc": roc_curves(logits, labels, num_classes),
        "roc_auc": roc_auc(logits, labels, num_classes),
        "ece": cal["ece"],
        "calibration": {k: cal[k] for k in ("confidence", "accuracy", "count")},
        "top_confusions": top_confusions(cm),
        "samples": sample_predictions(logits, labels),
    }
