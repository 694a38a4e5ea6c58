"""A device-resident loader (airbench-style): the whole split lives on the device as one uint8 tensor.

Batches are slices of a `randperm`; augmentation, normalisation and resizing run batched on the
device. The order and the augmentation of epoch k are a pure function of (seed, k), so a run
resumed at epoch k sees exactly the batches an uninterrupted run would (on the same device type:
CPU and CUDA generators draw different streams).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from benchmark.augment import Op, augment


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed that differs for every (seed, epoch) pair."""
    digest = hashlib.sha256(f"cifarzoo-loader:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class DeviceLoader:
    """Batches (x, y) of normalised float images and int64 labels, built on `device`."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        policy: Sequence[Op] = (),
        apply_prob: float = 1.0,
        input_size: int = 32,
        channels_last: bool = True,
        dtype: torch.dtype = torch.float32,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.device = torch.device(device)
        self.images = images.to(self.device).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW, moved once
        self.labels = labels.to(self.device, torch.int64)
        channels = self.images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.policy, self.apply_prob = tuple(policy), apply_prob
        self.input_size, self.channels_last, self.dtype = input_size, channels_last, dtype

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch `epoch`: order and augmentation drawn from a generator seeded by (seed, epoch)."""
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self._prepare(self.images[index], generator, index, epoch), self.labels[index]

    def plain(self, n: int | None = None) -> torch.Tensor:
        """The first `n` images (all if None), normalised and laid out as batches are, without augmentation
        (e.g. for a data-dependent initialisation)."""
        return self._prepare(self.images[:n], None)

    def _prepare(self, x: torch.Tensor, generator: torch.Generator | None, index: torch.Tensor | None = None,
                 epoch: int = 0) -> torch.Tensor:
        x = x.float().div_(255)
        if self.policy and generator is not None:
            x = augment(x, self.policy, generator, self.apply_prob, index=index, epoch=epoch)
        x = (x - self.mean) / self.std
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.input_size != x.shape[-1]:  # upsampled straight into its layout: no second write of the big batch
            x = F.interpolate(x.contiguous(memory_format=layout), size=(self.input_size, self.input_size),
                              mode="bilinear", align_corners=False, antialias=False)
        return x.to(dtype=self.dtype, memory_format=layout)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
