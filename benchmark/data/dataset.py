"""The in-memory dataset every source produces, its content fingerprint, and the cache home."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.cifar10 import CLASSES as CIFAR10_CLASSES  # noqa: F401  (re-exported by benchmark.data)

FINGERPRINT_VERSION = b"cifarzoo-dataset-v1\n"


@dataclass(eq=False, repr=False)  # tensors: identity equality, and a repr that does not print 184 MB
class Dataset:
    """Both splits as uint8 NHWC CPU tensors, with where they came from and what they hash to."""

    x_train: torch.Tensor  # uint8 (N, 32, 32, 3), NHWC, CPU
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor  # uint8 (M, 32, 32, 3)
    y_test: torch.Tensor  # int64 (M,)
    classes: list[str]  # label order: class folder names sorted alphabetically (= CIFAR-10's official order)
    source: str  # "synthetic", "cifar10", or the absolute path of the folder / archive
    description: str  # one human sentence: what the data is, where from, its checksum
    fingerprint: str  # sha256 hex of both splits' pixels + labels + class names (see `fingerprint`)
    lossy: bool  # True when any image is a JPEG: pixels differ from the official release

    def __repr__(self) -> str:
        return (f"Dataset({self.source!r}, {len(self.y_train):,} train / {len(self.y_test):,} test, "
                f"{self.num_classes} classes, lossy={self.lossy}, fingerprint={self.fingerprint[:12]}...)")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class in `split` ("train" or "test"), in label order."""
        labels = self.y_train if split == "train" else self.y_test
        return torch.bincount(labels, minlength=self.num_classes).tolist()


def fingerprint(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, classes: list[str]
) -> str:
    """sha256 of the content: class names, then per split its shape, pixel bytes and int64 labels."""
    h = hashlib.sha256(FINGERPRINT_VERSION)
    h.update("\n".join(classes).encode() + b"\n")
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        h.update(f"{name} {tuple(x.shape)}\n".encode())
        h.update(np.ascontiguousarray(x.numpy()).data)
        h.update(np.ascontiguousarray(y.numpy().astype("<i8")).data)
    return h.hexdigest()


def home_dir() -> Path:
    """cifarzoo's data/cache folder: $CIFARZOO_HOME, default ~/.cache/cifarzoo (created on use)."""
    from zoo.files import home

    folder = home()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
