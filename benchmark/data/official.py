"""The CIFAR-10 files people already have: the official python and binary releases (as downloaded, or
extracted) and Kaggle's layout, each read in place through the same tree views as image folders.

- python: `cifar-10-python.tar.gz` or its `cifar-10-batches-py/` folder: pickled batches. Pickles can run
  code, so they are read with an unpickler that knows only numpy arrays and plain data; anything else in a
  batch is refused, never executed.
- binary: `cifar-10-binary.tar.gz` or `cifar-10-batches-bin/`: records of 1 label byte + 3,072 pixel bytes.
- kaggle: `train/<id>.png` + `trainLabels.csv` (id,label). Kaggle's test folder is unlabelled, so the test
  split is 1,000 images per class held out from the labelled train set with seed 0; the description says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import CifarzooError

from .dataset import Dataset, fingerprint

PY_MEMBERS = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
BIN_MEMBERS = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
OFFICIAL_MD5 = {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
                "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
KAGGLE_TEST_PER_CLASS = 1000
RECORD = 1 + 32 * 32 * 3


def layout_of(files: list[str]) -> tuple[str, str] | None:
    """("python" | "binary" | "kaggle", folder prefix) when a listing is one of these layouts, else None."""
    names = set(files)
    for prefix in _prefixes(files):
        if all(f"{prefix}{m}" in names for m in PY_MEMBERS):
            return "python", prefix
        if all(f"{prefix}{m}" in names for m in BIN_MEMBERS):
            return "binary", prefix
        if f"{prefix}trainLabels.csv" in names and any(f.startswith(f"{prefix}train/") for f in files):
            return "kaggle", prefix
    return None


def _prefixes(files: list[str]) -> list[str]:
    return sorted({name.rsplit("/", 1)[0] + "/" if "/" in name else "" for name in files}, key=len)


def read_official(path: Path, tree: Any, kind: str, prefix: str) -> Dataset:
    """The dataset in `tree` (a folder or archive view at `path`) of layout `kind`."""
    if kind == "kaggle":
        return _kaggle(path, tree, prefix)
    reader = _python_batch if kind == "python" else _binary_batch
    members = PY_MEMBERS if kind == "python" else BIN_MEMBERS
    blobs = dict(zip(members, tree.read([prefix + m for m in members])))
    parts = [reader(blobs[m], tree.where(prefix + m)) for m in members]
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    classes = _class_names(tree, prefix, kind)
    return _dataset(path, x_train, y_train, *parts[5], classes, _describe(path, kind))


def _python_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnly(io.BytesIO(blob), encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(labels, dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as err:
        raise CifarzooError(f"{where} is not a CIFAR-10 python batch ({err}); use the official files.") from None
    if len(x) != len(y):
        raise CifarzooError(f"{where} holds {len(x)} images but {len(y)} labels; use the official files.")
    return np.ascontiguousarray(x), y


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain data only: a batch that names any other class is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never holds: refused")


def _binary_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(blob) == 0 or len(blob) % RECORD:
        raise CifarzooError(f"{where} is {len(blob):,} bytes, not a whole number of {RECORD:,}-byte CIFAR-10 "
                            "records; use the official files.")
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, RECORD)
    x = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), records[:, 0].astype(np.int64)


def _class_names(tree: Any, prefix: str, kind: str) -> list[str]:
    from zoo.cifar10 import CLASSES

    listing = set(tree.listing()[0])
    if kind == "python" and f"{prefix}batches.meta" in listing:
        meta = _ArraysOnly(io.BytesIO(tree.read([f"{prefix}batches.meta"])[0]), encoding="bytes").load()
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    if kind == "binary" and f"{prefix}batches.meta.txt" in listing:
        text = tree.read([f"{prefix}batches.meta.txt"])[0].decode()
        return [line.strip() for line in text.splitlines() if line.strip()]
    return list(CLASSES)  # the official order


def _kaggle(path: Path, tree: Any, prefix: str) -> Dataset:
    from .folder import decode_images

    rows = list(csv.DictReader(io.StringIO(tree.read([f"{prefix}trainLabels.csv"])[0].decode("utf-8-sig"))))
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise CifarzooError(f"{tree.where(prefix + 'trainLabels.csv')} needs the columns id,label (Kaggle's); "
                            "check the file.")
    files = {re.sub(r"\.[^.]+$", "", f.rsplit("/", 1)[-1]): f for f in tree.listing()[0]
             if f.startswith(f"{prefix}train/")}
    missing = [r["id"] for r in rows if r["id"] not in files]
    if missing:
        raise CifarzooError(f"trainLabels.csv names {len(missing)} image(s) not in train/ (e.g. {missing[0]}); "
                            "use the whole Kaggle download.")
    classes = sorted({r["label"] for r in rows})
    names = [files[r["id"]] for r in rows]
    x = decode_images(names, tree.read(names), tree)
    y = np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)
    test = _held_out(y, min(KAGGLE_TEST_PER_CLASS, int(np.bincount(y).min()) // 5))
    train = np.setdiff1d(np.arange(len(y)), test)
    note = (f"Kaggle's test folder is unlabelled, so the test split is {len(test):,} images "
            f"({len(test) // len(classes):,} per class) held out from its labelled train set with seed 0")
    return _dataset(path, x[train], y[train], x[test], y[test], classes,
                    f"CIFAR-10 in Kaggle's layout (train/*.png + trainLabels.csv), {path.name}; {note}.")


def _held_out(labels: np.ndarray, per_class: int) -> np.ndarray:
    """A seeded, stratified choice of `per_class` indices per class (benchmark.splits' generator)."""
    from benchmark.splits import stratified_subset

    return np.sort(stratified_subset(torch.from_numpy(labels), per_class * int(labels.max() + 1), seed=0).numpy())


def _describe(path: Path, kind: str) -> str:
    what = "python (pickled) batches" if kind == "python" else "binary batches"
    if path.is_file():
        md5 = hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 (the official checksum is md5)
        official = OFFICIAL_MD5.get(path.name) == md5
        state = f"md5 {md5} verified: the official release" if official else f"md5 {md5}: not the official archive"
        return f"CIFAR-10, {what}, {path.name} ({state})."
    return f"CIFAR-10, {what}, extracted folder {path.name}/ (read as is, no checksum)."


def _dataset(path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             classes: list[str], description: str) -> Dataset:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (x_train, y_train, x_test, y_test)]
    return Dataset(*tensors, classes, source=path.name, description=description,
                   fingerprint=fingerprint(*tensors, classes), lossy=False)
