"""A small generated 10-class dataset for tests and smoke runs: learnable in seconds, never CIFAR-10.

Class k is a sinusoidal stripe pattern with its own colour and orientation (k * 18 degrees), drawn
over a random dark background with random phase, frequency, angle jitter, contrast and pixel noise.
The classes reuse the CIFAR-10 names so per-class tables and plots look as they do for real data;
`source` and `description` say "synthetic" so a result can never pass for a CIFAR-10 one.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import CIFAR10_CLASSES, Dataset, fingerprint

# one distinct, saturated colour per class (RGB, 0..1)
PALETTE = np.array([
    [0.95, 0.20, 0.20], [0.20, 0.85, 0.25], [0.25, 0.35, 0.95], [0.95, 0.85, 0.15], [0.85, 0.25, 0.90],
    [0.15, 0.85, 0.90], [0.98, 0.55, 0.10], [0.55, 0.95, 0.55], [0.60, 0.40, 0.95], [0.95, 0.95, 0.95],
])


def synthetic_dataset(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Dataset:
    """A balanced, deterministic 32x32 RGB dataset of striped patterns (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x_train, y_train = _generate(n_train, rng)
    x_test, y_test = _generate(n_test, rng)
    classes = list(CIFAR10_CLASSES)
    return Dataset(
        x_train, y_train, x_test, y_test, classes,
        source="synthetic",
        description=f"Synthetic 10-class stripe patterns ({n_train:,} train / {n_test:,} test, seed {seed}), "
        "generated for tests and smoke runs, not CIFAR-10.",
        fingerprint=fingerprint(x_train, y_train, x_test, y_test, classes),
        lossy=False,
    )


def _generate(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.permutation(np.arange(n) % len(PALETTE))
    angle = np.deg2rad(labels * 18.0 + rng.uniform(-6, 6, n))[:, None, None]
    freq = rng.uniform(0.18, 0.30, n)[:, None, None]  # radians per pixel: 3 to 5 stripes across the image
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)  # (n, 32, 32)
    background = rng.uniform(0.0, 0.35, (n, 1, 1, 3))
    colour = PALETTE[labels][:, None, None, :] * rng.uniform(0.6, 1.0, (n, 1, 1, 1))
    images = background + stripes[..., None] * (colour - background) + rng.normal(0, 0.06, (n, 32, 32, 3))
    images = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
