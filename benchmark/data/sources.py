"""`load_dataset`: one entry point for every data source (official download, image folder, synthetic)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from zoo.errors import CifarzooError

from . import cache as cache_mod
from .archive import ARCHIVE_SUFFIXES
from .dataset import Dataset, fingerprint, home_dir
from .folder import read_image_folder
from .synthetic import synthetic_dataset

SOURCE_FORMS = (
    "'cifar10' (the official release, downloaded and md5-checked), 'synthetic' (a small generated set for "
    "tests), or a path to: the official cifar-10-python.tar.gz or cifar-10-binary.tar.gz (or their extracted "
    "cifar-10-batches-py/ or cifar-10-batches-bin/ folders), Kaggle's layout (train/*.png + trainLabels.csv), "
    "or an image-folder tree train/<class>/*, test/<class>/* (a folder, .zip, .tar or .tar.gz)"
)
DOWNLOAD_TIMEOUT_S = 20  # per network operation: offline machines fail fast instead of hanging


def load_dataset(source: str | None = None, *, cache: bool = True) -> Dataset:
    """Load `source` (default: $CIFARZOO_DATA, else 'cifar10'); decoded path sources are cached."""
    source = source or os.environ.get("CIFARZOO_DATA") or "cifar10"
    if source == "synthetic":
        return synthetic_dataset()
    if source == "cifar10":
        return official_cifar10(cache=cache)
    path = Path(source).expanduser()
    if not path.exists():
        if _looks_like_path(source):
            raise CifarzooError(f"data path {source} does not exist; pass an existing folder or archive.")
        raise CifarzooError(f"unknown data source '{source}'; use {SOURCE_FORMS}.")
    path = path.resolve()
    if not cache:
        return read_image_folder(path)
    file = cache_mod.cache_file(cache_mod.source_key(path))
    dataset = cache_mod.load(file)
    if dataset is None:
        dataset = read_image_folder(path)
        cache_mod.save(dataset, file)
    return dataset


def _looks_like_path(source: str) -> bool:
    return "/" in source or os.sep in source or source.startswith(("~", ".")) or source.lower().endswith(
        ARCHIVE_SUFFIXES
    )


def official_cifar10(*, cache: bool = True) -> Dataset:
    """The official CIFAR-10 via torchvision (download + md5 check) under home_dir()/cifar10."""
    root = home_dir() / "cifar10"
    key = hashlib.sha256(f"official-cifar10-v{cache_mod.CACHE_VERSION}:{root}".encode()).hexdigest()
    file = cache_mod.cache_file(key)
    if cache and (dataset := cache_mod.load(file)) is not None:
        return dataset
    import torch
    from torchvision.datasets import CIFAR10

    try:
        with _network_timeout(DOWNLOAD_TIMEOUT_S), contextlib.redirect_stdout(sys.stderr):
            train = CIFAR10(root=str(root), train=True, download=True)
            test = CIFAR10(root=str(root), train=False, download=False)
    except (OSError, RuntimeError) as err:  # URLError and timeouts are OSErrors; a bad md5 is a RuntimeError
        raise CifarzooError(
            f"official CIFAR-10 could not be downloaded (offline?) ({err}); pass --data (or set CIFARZOO_DATA) "
            "with a copy you have: cifar-10-python.tar.gz, cifar-10-binary.tar.gz, an extracted "
            "cifar-10-batches-py/ folder, Kaggle's train/ + trainLabels.csv, or an image-folder tree or .zip."
        ) from None
    x_train, x_test = torch.from_numpy(train.data), torch.from_numpy(test.data)
    y_train = torch.tensor(train.targets, dtype=torch.int64)
    y_test = torch.tensor(test.targets, dtype=torch.int64)
    classes = list(train.classes)
    dataset = Dataset(
        x_train, y_train, x_test, y_test, classes,
        source="cifar10",
        description="CIFAR-10, official release (python batches, md5-verified by torchvision).",
        fingerprint=fingerprint(x_train, y_train, x_test, y_test, classes),
        lossy=False,
    )
    if cache:
        cache_mod.save(dataset, file)
    return dataset


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
