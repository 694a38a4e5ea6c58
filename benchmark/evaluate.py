"""Evaluate a loaded zoo model (with its `.cifarzoo` metadata) on a dataset's test split."""

from __future__ import annotations

from typing import Any

import torch

from benchmark import metrics
from benchmark.data import Dataset
from zoo.errors import CifarzooError


def evaluate_model(model: torch.nn.Module, data: Dataset, device: str = "cpu", batch_size: int = 500) -> dict[str, Any]:
    """The record's `test` section for `model` on the whole test split of `data`."""
    from benchmark.loader import DeviceLoader
    from benchmark.train import predict

    card = model.cifarzoo
    if list(card.classes) != list(data.classes):
        raise CifarzooError(f"the weights of {card.entry} were trained on classes {list(card.classes)}, "
                            f"but this data has {data.classes}.")
    loader = DeviceLoader(data.x_test, data.y_test, batch_size=batch_size, mean=card.mean, std=card.std,
                          device=device, input_size=card.input_size, channels_last=False)
    logits, labels = predict(model.to(device), loader, torch.device(device), "fp32")
    report = metrics.classification_report(logits, labels, len(data.classes))
    return {**report, "classes": data.classes, "n_test": len(labels)}
