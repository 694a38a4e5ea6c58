"""Decoded datasets cached as .npz under home_dir()/datasets, keyed so a changed source is re-read.

The key hashes the absolute path with its size and mtime (for a folder: every file's), so editing,
replacing or touching the source invalidates the entry. Files are written atomically (temp + rename):
a crash leaves either the old cache or none, never half a file.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .dataset import Dataset, home_dir

CACHE_VERSION = 2  # bump when decoding or the stored fields change, so old caches are ignored (2: no paths)


def source_key(path: Path) -> str:
    """sha256 of (cache version, absolute path, size, mtime) - for a folder, of every file in it."""
    lines = [f"cifarzoo-cache-v{CACHE_VERSION}", str(path)]
    if path.is_dir():
        for here, subdirs, names in os.walk(path):
            subdirs.sort()
            for name in sorted(names):
                st = os.stat(os.path.join(here, name))
                lines.append(f"{os.path.relpath(os.path.join(here, name), path)}\t{st.st_size}\t{st.st_mtime_ns}")
    else:
        st = path.stat()
        lines.append(f"{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def cache_file(key: str) -> Path:
    return home_dir() / "datasets" / f"{key}.npz"


def save(dataset: Dataset, file: Path) -> None:
    """Write `dataset` to `file` atomically (uncompressed .npz, no pickles)."""
    from zoo.files import write_atomic

    def write(f) -> None:
        np.savez(
            f,
            x_train=dataset.x_train.numpy(), y_train=dataset.y_train.numpy(),
            x_test=dataset.x_test.numpy(), y_test=dataset.y_test.numpy(),
            classes=np.array(dataset.classes), source=np.array(dataset.source),
            description=np.array(dataset.description), fingerprint=np.array(dataset.fingerprint),
            lossy=np.array(dataset.lossy),
        )

    write_atomic(file, write, fsync=False)  # a lost cache is only re-decoded


def load(file: Path) -> Dataset | None:
    """The cached dataset in `file`, or None if there is none or it cannot be read (it is then rebuilt)."""
    try:
        with np.load(file, allow_pickle=False) as z:
            return Dataset(
                x_train=torch.from_numpy(z["x_train"]), y_train=torch.from_numpy(z["y_train"]),
                x_test=torch.from_numpy(z["x_test"]), y_test=torch.from_numpy(z["y_test"]),
                classes=[str(c) for c in z["classes"]], source=str(z["source"]),
                description=str(z["description"]), fingerprint=str(z["fingerprint"]), lossy=bool(z["lossy"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
