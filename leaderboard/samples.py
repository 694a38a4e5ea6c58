"""Sample test images for the entry pages, drawn at build time from a data source.

Records hold only test-set indices, never image bytes (images from a dataset copy must not end up
in a record). With `--data SOURCE`, the build loads that dataset and writes the sampled images as
small PNGs, but only for records whose data fingerprint matches the dataset's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SCALE = 2  # 32x32 -> 64x64, nearest neighbour, so pixels stay pixels


def load_dataset(source: str) -> Any:
    """The dataset behind `source` (x_test, classes, fingerprint); torch is imported only here."""
    from benchmark.data import load_dataset as load

    return load(source)


def write_images(x_test: Any, indices: list[int], folder: Path) -> dict[int, str]:
    """Write test images `indices` as PNGs under `folder`; returns index -> file name (bad indices left out)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names: dict[int, str] = {}
    for index in sorted(set(indices)):
        if not 0 <= index < len(x_test):
            continue
        pixels = x_test[index]
        pixels = np.asarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels, dtype=np.uint8)
        image = Image.fromarray(pixels).resize((pixels.shape[1] * SCALE, pixels.shape[0] * SCALE),
                                               Image.NEAREST)
        name = f"test-{index:05d}.png"
        image.save(folder / name, optimize=True)
        names[index] = name
    return names
