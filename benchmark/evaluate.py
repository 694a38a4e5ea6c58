"""Evaluation: logits of a model over a loader (with optional test-time augmentation), and a loaded zoo
model scored on a dataset's test split.

Published test numbers are computed in fp32 whatever precision the model trained in, so they are what a
user gets from the same weights in fp32 PyTorch or from the ONNX export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from benchmark import fastpath, metrics
from benchmark.data import Dataset
from benchmark.fastpath import autocast
from zoo.errors import CifarzooError
from zoo.recipe import TTA_MODES


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits averaged over test-time views: the image, its mirror, and (flip+translate) the mirror
    pair shifted one pixel each way with reflect padding, as the fast-training literature does."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if tta == "none":
        return model(x)
    logits = 0.5 * (model(x) + model(x.flip(-1)))
    if tta == "flip":
        return logits
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :-2, :-2], padded[..., 2:, 2:]
    shifted = 0.25 * sum(model(v) for v in (up_left, up_left.flip(-1), down_right, down_right.flip(-1)))
    return 0.5 * logits + 0.5 * shifted


@torch.inference_mode()
def predict(model: nn.Module, loader: Any, device: torch.device | str, precision: str = "fp32",
            tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) and labels for every image of a non-shuffled loader."""
    model.eval()
    outs, labels = [], []
    for x, y in loader.epoch(0):
        with autocast(device, precision):
            logits = tta_logits(model, x, tta)
        outs.append(logits.float())
        labels.append(y)
    return torch.cat(outs).cpu(), torch.cat(labels).cpu()


BLOCK = 500  # test images per evaluation batch; published records count correct answers per block of this size


def evaluate_model(model: torch.nn.Module, data: Dataset, device: str = "cpu") -> dict[str, Any]:
    """The record's `test` section for `model` on the whole test split of `data` (the model is moved to
    `device` and to the fp32 fast path's memory layout in place, as `model.to` does), plus
    `correct_by_block`: correct answers in each block of BLOCK images, in the split's order."""
    logits, labels = _score(model, data, slice(None), device)
    report = metrics.classification_report(logits, labels, len(data.classes))
    return {**report, "classes": data.classes, "n_test": len(labels),
            "correct_by_block": metrics.correct_by_block(logits, labels, BLOCK)}


def count_blocks(model: torch.nn.Module, data: Dataset, blocks: Iterable[int], device: str = "cpu") -> dict[int, int]:
    """Correct answers in the chosen blocks of the test split, each scored as `evaluate_model` scores it (the
    same 500 images in one batch through the same kernels, so the same logits): a published record's block
    counts can be checked on a tenth of the images."""
    counts = {}
    for block in blocks:
        if not 0 <= block * BLOCK < len(data.y_test):
            raise ValueError(f"block {block} is outside the {len(data.y_test)} test images")
        logits, labels = _score(model, data, slice(block * BLOCK, (block + 1) * BLOCK), device)
        counts[block] = metrics.correct_by_block(logits, labels, BLOCK)[0]
    return counts


def _score(model: torch.nn.Module, data: Dataset, images: slice, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits (with the weights' TTA) and labels of `images` of the test split, in batches of BLOCK."""
    from benchmark.loader import DeviceLoader

    card = model.cifarzoo
    if list(card.classes) != list(data.classes):
        raise CifarzooError(f"the weights of {card.entry} were trained on classes {list(card.classes)}, "
                            f"but this data has {data.classes}.")
    # the layout the probe timed faster in fp32, as the bench's own evaluation uses (on an AVX2 CPU
    # channels_last takes airnet-fast's six TTA views from 21.4 s to 15.0 s per 500 images, one thread)
    channels_last = fastpath.choose("fp32", None, device).channels_last
    loader = DeviceLoader(data.x_test[images], data.y_test[images], batch_size=BLOCK, mean=card.mean,
                          std=card.std, device=device, input_size=card.input_size, channels_last=channels_last)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return predict(model, loader, torch.device(device), "fp32", tta=card.tta)
