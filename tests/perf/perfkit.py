"""Pieces shared by the performance scripts: the machine's name and the classic per-image PIL pipeline
(the baseline that the device-resident loader and the fast training path are measured against)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (falls back to the architecture)."""
    from benchmark.machine import cpu_model

    return cpu_model()


class PilDataset(torch.utils.data.Dataset):
    """The classic per-image pipeline: uint8 HWC array -> PIL image -> torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.numpy(), labels.numpy(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def accuracy(model: torch.nn.Module, loader, precision: str = "fp32", tta: str = "none") -> float:
    """Top-1 accuracy of `model` over a non-shuffled DeviceLoader (benchmark.evaluate.predict)."""
    from benchmark.evaluate import predict

    logits, labels = predict(model, loader, loader.device, precision, tta=tta)
    return (logits.argmax(1) == labels).float().mean().item()


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON atomically (the leaderboard reads results/perf/*.json), creating the folder."""
    from zoo.files import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")
