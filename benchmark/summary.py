"""The summary statistics both the terminal summary and the site use, defined once.

- accuracy over seeds: the mean and the sample standard deviation (n - 1; None for a single seed);
- ONNX Runtime speed-up: the ratio of the mean PyTorch batch-1 latency to the mean ONNX Runtime one, over
  the runs whose timing is quotable (uncontended), so the number beside two mean latencies is their ratio.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """(mean, sample sd) of the finite values; (None, None) without any, sd None with one."""
    xs = _finite(values)
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def best_val_accuracy(history: list[dict] | None) -> float | None:
    """The best validation accuracy over a run's epochs: what sweeps rank trials by (never the test split)."""
    accs = [row["val_acc"] for row in history or [] if row.get("val_acc") is not None]
    return max(accs) if accs else None


def selected_val_accuracy(history: list[dict] | None, best_epoch: int | None) -> float | None:
    """The validation accuracy of the epoch a run kept: what local weights and published seeds are chosen by."""
    return next((row.get("val_acc") for row in history or [] if row["epoch"] == best_epoch), None)


def speedup(torch_ms: Iterable[float | None], ort_ms: Iterable[float | None]) -> float | None:
    """mean(PyTorch latency) / mean(ONNX Runtime latency), None unless both have values."""
    t, o = mean_sd(torch_ms)[0], mean_sd(ort_ms)[0]
    return t / o if t is not None and o else None
