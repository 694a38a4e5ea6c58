"""Checking published weights against what their records state, on a user's own copy of the data.

A published record states the shipped file's test accuracy and, since 2026-12-04, `test_correct_by_block`:
the correct answers in each block of `evaluate.BLOCK` test images, in the split's order, which add up to that
accuracy. A block is scored alone exactly as in the whole split (the same batch through the same kernels), so
a quick check scores a few blocks, drawn from the file's sha256 (each file its own, every run the same), and
a full check scores all of them. The quick check is what the test suite runs: airnet-fast's six TTA views over
all 10,000 images were 250-300 s of a 2-core CPU, its two blocks are a tenth of that.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from benchmark.data import Dataset
from benchmark.evaluate import BLOCK
from zoo.errors import CifarzooError
from zoo.published import Weights, read_manifest, write_manifest

QUICK_BLOCKS = 2  # blocks of BLOCK test images a quick check scores: 1,000 of CIFAR-10's 10,000


@dataclass(frozen=True)
class Check:
    """What one check of a published file measured, beside what its record states."""

    entry: str
    measured: dict[int, int]  # block -> correct answers, as scored here
    stated: dict[int, int] | None  # the same blocks as the record states them (None: it states no blocks)
    accuracy: float | None  # the whole split's accuracy as scored here (full checks only)
    stated_accuracy: float

    @property
    def images(self) -> int:
        return BLOCK * len(self.measured)

    @property
    def ok(self) -> bool:
        blocks_agree = self.stated is None or self.measured == self.stated
        return blocks_agree and (self.accuracy is None or self.accuracy == self.stated_accuracy)


def block_metrics(counts: Sequence[int]) -> dict[str, Any]:
    """The metrics a published record gains from its file's block counts on the whole test split."""
    return {"test_correct_by_block": list(counts), "n_test_blocks": len(counts)}


def quick_blocks(record: Weights, k: int = QUICK_BLOCKS) -> list[int]:
    """The blocks a quick check of `record` scores, drawn from its file's sha256."""
    n = record.metrics["n_test_blocks"]
    return sorted(random.Random(record.sha256).sample(range(n), min(k, n)))


def verify(record: Weights, data: Dataset, *, full: bool = False, device: str = "cpu") -> Check:
    """Score `record`'s file on `data`: its quick blocks, or the whole split when `full` (or when the record
    states no blocks, so the accuracy is all there is to compare)."""
    import zoo
    from benchmark.evaluate import count_blocks, evaluate_model

    if data.fingerprint != record.data["fingerprint"]:
        raise CifarzooError(f"the published weights of {record.entry} were scored on {record.data['source']} "
                            f"(fingerprint {record.data['fingerprint'][:12]}...), not on this data "
                            f"({data.fingerprint[:12]}...); pass --data the copy they name.")
    model = zoo.load(record.entry, weights=record)
    stated_blocks = record.metrics.get("test_correct_by_block")
    if full or stated_blocks is None:
        report = evaluate_model(model, data, device)
        measured = dict(enumerate(report["correct_by_block"]))
        accuracy = report["accuracy"]
    else:
        measured, accuracy = count_blocks(model, data, quick_blocks(record), device), None
    stated = None if stated_blocks is None else {b: stated_blocks[b] for b in measured if b < len(stated_blocks)}
    return Check(record.entry, measured, stated, accuracy, record.metrics["test_accuracy"])


def record_blocks(check: Check, record: Weights) -> Weights:
    """Write a full check's block counts into the package's manifest, for a record that states none and
    whose whole-split accuracy the check reproduced exactly (maintainers: `cifarzoo verify --full --record`)."""
    if check.accuracy is None or not check.ok:
        raise CifarzooError(f"{record.entry}: only a full check that reproduces the stated accuracy is recorded.")
    counts = [check.measured[b] for b in sorted(check.measured)]
    updated = replace(record, metrics={**record.metrics, **block_metrics(counts)})
    write_manifest([updated if w == record else w for w in read_manifest()])
    return updated
