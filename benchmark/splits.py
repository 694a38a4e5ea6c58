"""Stratified train/validation splits, balanced subsets and exact per-channel statistics."""

from __future__ import annotations

import torch

from zoo.errors import CifarzooError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rank_within_class(labels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random order of all indices grouped by class, and each index's rank inside its class."""
    shuffled = torch.randperm(len(labels), generator=gen)
    order = shuffled[torch.sort(labels[shuffled], stable=True).indices]  # grouped by class, random within
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - starts[labels[order]]
    return order, rank


def stratified_split(
    labels: torch.Tensor, val_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), sorted int64: round(val_fraction * n_c) images of every class c go to val."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = labels.cpu().long()
    order, rank = _rank_within_class(labels, _generator(seed))
    n_val = torch.round(torch.bincount(labels).double() * val_fraction).long()
    is_val = rank < n_val[labels[order]]
    return order[~is_val].sort().values, order[is_val].sort().values


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """n sorted int64 indices, n // k of every class (the first n % k classes get one more)."""
    labels = labels.cpu().long()
    present = torch.unique(labels)
    k = len(present)
    quota = torch.zeros(int(labels.max()) + 1, dtype=torch.long)
    quota[present] = n // k
    quota[present[: n % k]] += 1
    counts = torch.bincount(labels)
    short = (quota > counts).nonzero().flatten().tolist()
    if short:
        c = short[0]
        raise CifarzooError(
            f"cannot take {n} images balanced over {k} classes: class {c} has only {counts[c].item()}; "
            "ask for fewer images."
        )
    order, rank = _rank_within_class(labels, _generator(seed))
    return order[rank < quota[labels[order]]].sort().values


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 NHWC images on the 0..1 scale, exact.

    A 256-bin histogram per channel (integer counts) gives exact sums of values and squares; only
    the final division is floating point (float64).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 NHWC images, got {images.dtype} {tuple(images.shape)}")
    channels = images.shape[-1]
    hist = torch.zeros(channels, 256, dtype=torch.int64)
    for start in range(0, len(images), chunk):
        planes = images[start : start + chunk].cpu().permute(3, 0, 1, 2).reshape(channels, -1)
        for c in range(channels):
            hist[c] += torch.bincount(planes[c], minlength=256)
    values = torch.arange(256, dtype=torch.int64)
    n = hist[0].sum().item()
    mean = (hist * values).sum(1).double() / n
    var = (hist * values * values).sum(1).double() / n - mean**2
    return (mean / 255).tolist(), (var.clamp_min(0).sqrt() / 255).tolist()
