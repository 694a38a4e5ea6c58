"""The CIFAR-10 files people already have: small files in each official byte layout (python batches,
binary batches, as tarballs and extracted; Kaggle's train/ + trainLabels.csv), built from synthetic images,
read back to the same pixels and labels. Hostile pickles are refused, never executed."""

from __future__ import annotations

import csv
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import load_dataset, synthetic_dataset
from zoo.cifar10 import CLASSES
from zoo.errors import CifarzooError

PER_BATCH = 20  # images per batch file (the real ones hold 10,000)


@pytest.fixture(scope="module")
def images():
    data = synthetic_dataset(n_train=5 * PER_BATCH, n_test=PER_BATCH)
    return data.x_train.numpy(), data.y_train.numpy(), data.x_test.numpy(), data.y_test.numpy()


def _chw_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072) rows, channel-major: how both official releases store pixels."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def python_batches(folder: Path, images) -> Path:
    x, y, xt, yt = images
    folder.mkdir(parents=True)
    for i in range(5):
        part = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        batch = {b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": [int(v) for v in y[part]],
                 b"data": _chw_rows(x[part]), b"filenames": [f"{k}.png".encode() for k in range(PER_BATCH)]}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in yt], b"data": _chw_rows(xt),
            b"filenames": [b"t.png"] * len(yt)}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"num_cases_per_batch": PER_BATCH, b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def binary_batches(folder: Path, images) -> Path:
    x, y, xt, yt = images
    folder.mkdir(parents=True)

    def records(px: np.ndarray, labels: np.ndarray) -> bytes:
        return np.concatenate([labels.astype(np.uint8)[:, None], _chw_rows(px)], axis=1).tobytes()

    for i in range(5):
        part = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        (folder / f"data_batch_{i + 1}.bin").write_bytes(records(x[part], y[part]))
    (folder / "test_batch.bin").write_bytes(records(xt, yt))
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    return folder


def tarball(folder: Path, name: str) -> Path:
    path = folder.parent / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


def assert_same(data, images) -> None:
    x, y, xt, yt = images
    assert torch.equal(data.x_train, torch.from_numpy(x)) and torch.equal(data.y_train, torch.from_numpy(y))
    assert torch.equal(data.x_test, torch.from_numpy(xt)) and torch.equal(data.y_test, torch.from_numpy(yt))
    assert data.classes == list(CLASSES) and data.lossy is False


def test_python_batches_extracted_and_as_the_tarball(tmp_path, images):
    folder = python_batches(tmp_path / "cifar-10-batches-py", images)
    extracted = load_dataset(str(folder), cache=False)
    assert_same(extracted, images)
    assert extracted.source == "cifar-10-batches-py" and "extracted folder" in extracted.description
    packed = load_dataset(str(tarball(folder, "cifar-10-python.tar.gz")), cache=False)
    assert_same(packed, images)
    assert "not the official archive" in packed.description  # a same-named file with other bytes is not it
    assert packed.fingerprint == extracted.fingerprint


def test_binary_batches_extracted_and_as_the_tarball(tmp_path, images):
    folder = binary_batches(tmp_path / "cifar-10-batches-bin", images)
    assert_same(load_dataset(str(folder), cache=False), images)
    packed = load_dataset(str(tarball(folder, "cifar-10-binary.tar.gz")), cache=False)
    assert_same(packed, images)
    assert "binary batches" in packed.description


def test_kaggle_layout_holds_out_a_stated_seeded_test_split(tmp_path):
    from PIL import Image

    data = synthetic_dataset(n_train=100, n_test=10)
    root = tmp_path / "kaggle"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()  # Kaggle's test folder: unlabelled, never read
    with open(root / "trainLabels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label"])
        for i, (img, label) in enumerate(zip(data.x_train.numpy(), data.y_train.numpy()), start=1):
            Image.fromarray(img).save(root / "train" / f"{i}.png")
            writer.writerow([i, CLASSES[label]])
    kaggle = load_dataset(str(root), cache=False)
    assert (len(kaggle.y_train), len(kaggle.y_test)) == (80, 20) and kaggle.class_counts("test") == [2] * 10
    assert "test split is 20 images (2 per class) held out from its labelled train set with seed 0" \
        in kaggle.description
    pixels = {img.numpy().tobytes() for img in data.x_train}
    assert all(img.numpy().tobytes() in pixels for img in torch.cat([kaggle.x_train, kaggle.x_test]))
    assert load_dataset(str(root), cache=False).fingerprint == kaggle.fingerprint  # seeded: the same split


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cifarzoo-pwned",))


def test_a_batch_pickle_that_names_code_is_refused_not_run(tmp_path, images):
    folder = python_batches(tmp_path / "cifar-10-batches-py", images)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    Path("/tmp/cifarzoo-pwned").unlink(missing_ok=True)
    with pytest.raises(CifarzooError, match=r"data_batch_3.*is not a CIFAR-10 python batch.*posix.system"):
        load_dataset(str(folder), cache=False)
    assert not Path("/tmp/cifarzoo-pwned").exists()


def test_a_truncated_binary_batch_is_one_sentence(tmp_path, images):
    folder = binary_batches(tmp_path / "cifar-10-batches-bin", images)
    blob = (folder / "data_batch_2.bin").read_bytes()
    (folder / "data_batch_2.bin").write_bytes(blob[:-100])
    with pytest.raises(CifarzooError, match=r"data_batch_2.bin is .* not a whole number of 3,073-byte"):
        load_dataset(str(folder), cache=False)
