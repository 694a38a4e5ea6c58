"""benchmark.data (sources, image folders, cache), benchmark.splits and `cifarzoo data info`."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import REAL_ZIP, cifarzoo
from PIL import Image

from benchmark.data import CIFAR10_CLASSES, fingerprint, home_dir, load_dataset, synthetic_dataset
from benchmark.splits import channel_stats, stratified_split, stratified_subset
from cifarzoo.cli import cli, main
from zoo.errors import CifarzooError

ROOT = Path(__file__).resolve().parents[1]
README_MEAN, README_STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def temp_home(tmp_path, monkeypatch):
    """Every test gets its own empty CIFARZOO_HOME and no CIFARZOO_DATA."""
    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIFARZOO_DATA", raising=False)
    return tmp_path / "home"


# ---------------------------------------------------------------- the real zip (decoded once per machine)




@pytest.mark.realdata
def test_real_zip_counts_classes_and_provenance(real):
    assert real.x_train.shape == (50_000, 32, 32, 3) and real.x_train.dtype == torch.uint8
    assert real.x_test.shape == (10_000, 32, 32, 3) and real.y_test.dtype == torch.int64
    assert real.classes == list(CIFAR10_CLASSES)
    assert real.class_counts("train") == [5000] * 10 and real.class_counts("test") == [1000] * 10
    assert real.lossy is True
    assert real.source == "cifar10-jpeg.zip"  # the file's name: records never hold the machine's folders
    assert "JPEG q75" in real.description and "05b4c8c8bf43c212" in real.description
    assert str(REAL_ZIP.parent) not in real.description
    assert real.fingerprint == fingerprint(real.x_train, real.y_train, real.x_test, real.y_test, real.classes)


@pytest.mark.realdata
def test_real_zip_mean_std_match_readme(real):
    mean, std = channel_stats(real.x_train)
    assert np.allclose(mean, README_MEAN, atol=0.002), mean
    assert np.allclose(std, README_STD, atol=0.002), std


@pytest.mark.realdata
def test_real_zip_stratified_split(real):
    train, val = stratified_split(real.y_train, 0.2, seed=0)
    assert len(train) == 40_000 and len(val) == 10_000
    assert torch.bincount(real.y_train[train]).tolist() == [4000] * 10
    assert torch.bincount(real.y_train[val]).tolist() == [1000] * 10
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(50_000))
    again_train, again_val = stratified_split(real.y_train, 0.2, seed=0)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert not torch.equal(val, stratified_split(real.y_train, 0.2, seed=1)[1])


@pytest.mark.realdata
def test_real_zip_cached_load_is_fast_and_identical(real, real_home, monkeypatch):
    monkeypatch.setenv("CIFARZOO_HOME", str(real_home))
    start = time.perf_counter()
    again = load_dataset(str(REAL_ZIP))
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"cached load took {elapsed:.2f}s"
    assert again.fingerprint == real.fingerprint and torch.equal(again.x_test, real.x_test)
    assert again.description == real.description and again.lossy


# ---------------------------------------------------------------- tiny generated trees


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def tree_files(counts=None, seed=0) -> dict[str, bytes]:
    """{relative path: bytes} of a train/test image-folder tree of random 32x32 RGB PNGs."""
    counts = counts or {"train": {"cat": 3, "ant": 2}, "test": {"cat": 1, "ant": 2}}
    rng = np.random.default_rng(seed)
    return {
        f"{split}/{cls}/{i:03d}.png": png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        for split, classes in counts.items() for cls, n in classes.items() for i in range(n)
    }


def write_folder(root: Path, files: dict[str, bytes], empty_dirs=()) -> Path:
    for name, blob in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    for d in empty_dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "", dirs=()) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for d in dirs:
            z.writestr(prefix + d.rstrip("/") + "/", b"")
        for name, blob in files.items():
            z.writestr(prefix + name, blob)
    return path


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, blob in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return path


def test_folder_zip_wrapped_zip_and_tar_give_the_same_dataset(tmp_path):
    files = tree_files()
    folder = load_dataset(str(write_folder(tmp_path / "tree", files)))
    assert folder.classes == ["ant", "cat"]  # alphabetical = label order
    assert folder.class_counts("train") == [2, 3] and folder.class_counts("test") == [2, 1]
    assert folder.lossy is False and folder.source == "tree"
    # PNG is lossless: the first train image (ant/000.png) comes back bit-exact
    expected = np.asarray(Image.open(io.BytesIO(files["train/ant/000.png"])))
    assert np.array_equal(folder.x_train[0].numpy(), expected) and folder.y_train[0] == 0
    flat = load_dataset(str(write_zip(tmp_path / "flat.zip", files)))
    wrapped = load_dataset(str(write_zip(tmp_path / "wrapped.zip", files, prefix="cifar/", dirs=["", "train"])))
    tarred = load_dataset(str(write_tar(tmp_path / "tree.tar.gz", files)))
    assert folder.fingerprint == flat.fingerprint == wrapped.fingerprint == tarred.fingerprint
    assert "sha256" in flat.description and "flat.zip" in flat.description and str(tmp_path) not in flat.description


def test_hidden_files_and_macos_metadata_are_ignored(tmp_path):
    files = tree_files()
    junk = {**files, "train/cat/.DS_Store": b"junk", "__MACOSX/train/cat/._000.png": b"junk", "README.txt": b"hi"}
    assert load_dataset(str(write_zip(tmp_path / "a.zip", junk))).fingerprint == \
        load_dataset(str(write_zip(tmp_path / "b.zip", files))).fingerprint


def test_a_jpeg_makes_the_source_lossy(tmp_path):
    files = tree_files()
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, format="JPEG", quality=75)
    files["test/cat/099.jpg"] = buf.getvalue()
    ds = load_dataset(str(write_zip(tmp_path / "jpeg.zip", files)))
    assert ds.lossy is True and ds.class_counts("test") == [2, 2]
    assert np.abs(ds.x_test[-1].numpy().astype(int) - 128).max() <= 2


def test_cache_is_written_atomically_and_invalidated_by_a_changed_file(tmp_path, temp_home):
    path = write_zip(tmp_path / "d.zip", tree_files(seed=0))
    first = load_dataset(str(path))
    cached = list((temp_home / "datasets").glob("*.npz"))
    assert len(cached) == 1 and not list((temp_home / "datasets").glob("*.tmp"))
    assert load_dataset(str(path)).fingerprint == first.fingerprint
    write_zip(path, tree_files(seed=1))  # same name, new content: size/mtime change the key
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_dataset(str(path)).fingerprint != first.fingerprint
    assert len(list((temp_home / "datasets").glob("*.npz"))) == 2


def test_cache_false_writes_nothing(tmp_path, temp_home):
    load_dataset(str(write_zip(tmp_path / "d.zip", tree_files())), cache=False)
    assert not list(temp_home.glob("datasets/*"))


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, temp_home):
    path = write_zip(tmp_path / "d.zip", tree_files())
    first = load_dataset(str(path))
    (cache_file,) = (temp_home / "datasets").glob("*.npz")
    cache_file.write_bytes(b"not an npz")
    assert load_dataset(str(path)).fingerprint == first.fingerprint


# ---------------------------------------------------------------- bad input: one CifarzooError naming the file

GREY = png(np.zeros((32, 32), np.uint8), "L")
RGBA = png(np.zeros((32, 32, 4), np.uint8), "RGBA")
SMALL = png(np.zeros((16, 16, 3), np.uint8))


def _bad_sources(tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (source argument, regex the error message must match)."""
    files = tree_files()
    no_test = {k: v for k, v in files.items() if k.startswith("train/")}
    other_classes = {**files, "test/dog/000.png": files["test/cat/000.png"]}
    flat = {f"img{i}.png": v for i, v in enumerate(files.values())}
    (tmp / "notes.txt").write_text("hello")
    return {
        "missing path": (str(tmp / "nowhere.zip"), r"nowhere\.zip does not exist"),
        "unknown word": ("cifar100", r"unknown data source 'cifar100'.*'cifar10'.*'synthetic'"),
        "not an archive": (str(tmp / "notes.txt"), r"notes\.txt is neither a folder nor"),
        "no test folder": (str(write_folder(tmp / "notest", no_test)), r"no test/ folder"),
        "other layout zip": (str(write_zip(tmp / "flat.zip", flat)), r"flat\.zip has no train/ or test/ folder"),
        "class sets differ": (str(write_folder(tmp / "classes", other_classes)), r"different class.*test only: dog"),
        "empty class": (str(write_folder(tmp / "empty", files, ["train/zebra", "test/zebra"])),
                        r"class folder 'train/zebra/'.*is empty"),
        "too small": (str(write_zip(tmp / "small.zip", {**files, "train/cat/small.png": SMALL})),
                      r"'train/cat/small\.png' in .*small\.zip is 16x16 RGB, not 32x32 RGB"),
        "greyscale": (str(write_zip(tmp / "grey.zip", {**files, "test/ant/grey.png": GREY})),
                      r"'test/ant/grey\.png' in .* is 32x32 L, not 32x32 RGB"),
        "rgba": (str(write_folder(tmp / "rgba", {**files, "train/ant/rgba.png": RGBA})),
                 r"rgba/train/ant/rgba\.png is 32x32 RGBA, not 32x32 RGB"),
        "undecodable": (str(write_zip(tmp / "bad.zip", {**files, "train/cat/bad.png": b"\x89PNG garbage"})),
                        r"'train/cat/bad\.png' in .*bad\.zip could not be decoded"),
        "broken jpeg": (str(write_zip(tmp / "badjpg.zip", {**files, "train/cat/bad.jpg": b"\xff\xd8\xff" + b"x" * 50})),
                        r"'train/cat/bad\.jpg' in .*badjpg\.zip could not be decoded"),
        "too deep": (str(write_zip(tmp / "deep.zip", {**files, "train/cat/more/x.png": SMALL})),
                     r"'train/cat/more/x\.png' in .* is nested too deep"),
        "bad zip": (str(tmp / "notes.txt.zip"), r"not a readable zip archive"),
    }


BAD_CASES = [
    "missing path", "unknown word", "not an archive", "no test folder", "other layout zip", "class sets differ",
    "empty class", "too small", "greyscale", "rgba", "undecodable", "broken jpeg", "too deep", "bad zip",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_clear_error(case, tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt.zip").write_bytes(b"PK but not really a zip")
    source, pattern = _bad_sources(tmp_path)[case]
    with pytest.raises(CifarzooError, match=pattern):
        load_dataset(source)
    # the CLI turns it into one line `error: ...` and exit code 2
    monkeypatch.setattr(sys, "argv", ["cifarzoo", "data", "info", "--data", source])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_subprocess_reports_unknown_source_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "cifarzoo", "data", "info", "--data", "imagenet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown data source 'imagenet'") and proc.stderr.count("\n") == 1


def test_the_tests_forked_cli_answers_as_a_new_interpreter_does(tmp_path):
    """helpers.cifarzoo forks from a preloaded server; what it returns must be what `python -m cifarzoo` gives."""
    env = {**os.environ, "CIFARZOO_DATA": "imagenet"}  # the child sees the call's environment, not the server's
    for args in (["data", "info"], ["--version"], ["list", "cnn3*"], ["nosuch"]):
        forked = cifarzoo(*args, env=env, cwd=tmp_path)
        real = subprocess.run([sys.executable, "-m", "cifarzoo", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr), args
    assert cifarzoo("data", "info", env=env).returncode == 2 and cifarzoo("--version").returncode == 0


def test_the_suite_stops_at_a_crashed_worker_and_names_its_test(tmp_path):
    """Under the project's pytest options a worker killed by a segfault fails the run once, at once, naming the
    test: it is not started again on replacement workers (xdist's default), where the run can also hang."""
    (tmp_path / "test_crash.py").write_text("import os, signal\n\ndef test_segfault():\n"
                                            "    os.kill(os.getpid(), signal.SIGSEGV)\n\ndef test_after():\n"
                                            "    pass\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
                           str(tmp_path), "-p", "no:cacheprovider", "-n", "2", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})  # the summary line is cut to the terminal's width
    out = proc.stdout
    assert proc.returncode == 1, out[-2000:]
    # Each start of the test on a worker that then crashes writes one such line; the short summary, one FAILED line.
    crashes = re.findall(r"^worker 'gw\d+' crashed while running 'test_crash.py::test_segfault'$", out, re.M)
    assert len(crashes) == 1, out[-2000:]
    failed = re.findall(r"^FAILED test_crash.py::test_segfault - worker 'gw\d+' crashed", out, re.M)
    assert len(failed) == 1, out[-2000:]
    assert "replacing crashed worker" not in out, out[-2000:]


def test_offline_official_download_fails_fast_with_the_fix(monkeypatch, temp_home):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CifarzooError, match=r"official CIFAR-10 could not be downloaded \(offline\?\).*--data"):
        load_dataset("cifar10")
    assert not list(temp_home.glob("datasets/*.npz"))  # nothing cached from a failed download


def test_really_offline_machine_fails_fast(temp_home):
    try:
        socket.getaddrinfo("www.cs.toronto.edu", 443)
        pytest.skip("this machine is online; the simulated offline test covers the path")
    except OSError:
        pass
    start = time.perf_counter()
    with pytest.raises(CifarzooError, match="could not be downloaded"):
        load_dataset()  # the default source is the official download
    assert time.perf_counter() - start < 60


def test_source_defaults_to_env_var(monkeypatch, temp_home):
    monkeypatch.setenv("CIFARZOO_DATA", "synthetic")
    assert load_dataset().source == "synthetic"
    assert home_dir() == temp_home and temp_home.is_dir()


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_balanced_and_quick():
    start = time.perf_counter()
    ds = synthetic_dataset()
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"synthetic generation took {elapsed:.2f}s"  # ~0.25s idle; slack for a busy CPU
    assert ds.x_train.shape == (2000, 32, 32, 3) and ds.x_test.shape == (500, 32, 32, 3)
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert ds.class_counts("train") == [200] * 10 and ds.class_counts("test") == [50] * 10
    assert ds.source == "synthetic" and ds.lossy is False and "not CIFAR-10" in ds.description
    assert synthetic_dataset().fingerprint == ds.fingerprint != synthetic_dataset(seed=1).fingerprint
    assert ds.x_train.float().std() > 30  # images, not constants


def test_synthetic_is_learnable_by_a_tiny_cnn_in_two_epochs():
    from benchmark.loader import DeviceLoader

    torch.manual_seed(0)
    ds = synthetic_dataset()
    mean, std = channel_stats(ds.x_train)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = DeviceLoader(ds.x_train, ds.y_train, batch_size=64, mean=mean, std=std, shuffle=True)
    for epoch in range(2):
        for x, y in train.epoch(epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    test = DeviceLoader(ds.x_test, ds.y_test, batch_size=500, mean=mean, std=std)
    with torch.no_grad():
        accuracy = sum((model(x).argmax(1) == y).sum().item() for x, y in test) / len(ds.y_test)
    assert accuracy > 0.5, accuracy  # chance is 0.1


# ---------------------------------------------------------------- splits and statistics


def test_stratified_split_keeps_each_class_proportion():
    shuffle = torch.randperm(60, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)[shuffle]
    train, val = stratified_split(labels, 0.2, seed=5)
    assert torch.bincount(labels[val]).tolist() == [2, 4, 6]
    assert torch.bincount(labels[train]).tolist() == [8, 16, 24]
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(60))
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0)


def test_stratified_subset_is_balanced_deterministic_and_refuses_too_much():
    labels = synthetic_dataset().y_train
    subset = stratified_subset(labels, 25, seed=0)
    assert len(subset) == 25 == len(set(subset.tolist()))
    assert sorted(torch.bincount(labels[subset], minlength=10).tolist()) == [2] * 5 + [3] * 5
    assert torch.equal(subset, stratified_subset(labels, 25, seed=0))
    assert not torch.equal(subset, stratified_subset(labels, 25, seed=1))
    with pytest.raises(CifarzooError, match="has only 200"):
        stratified_subset(labels, 2010)


def test_channel_stats_are_exact():
    images = torch.randint(0, 256, (300, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images, chunk=64)
    x = images.double() / 255
    assert np.allclose(mean, x.mean((0, 1, 2)).tolist(), rtol=0, atol=1e-12)
    assert np.allclose(std, x.std((0, 1, 2), unbiased=False).tolist(), rtol=0, atol=1e-12)
    flat_mean, flat_std = channel_stats(torch.full((4, 32, 32, 3), 51, dtype=torch.uint8))
    assert flat_mean == pytest.approx([0.2] * 3) and flat_std == [0.0] * 3


# ---------------------------------------------------------------- CLI


def test_data_info_json_matches_the_dataset():
    result = CliRunner().invoke(cli, ["data", "info", "--data", "synthetic", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    ds = synthetic_dataset()
    assert info["n_train"] == 2000 and info["n_test"] == 500
    assert info["classes"] == list(CIFAR10_CLASSES) and info["fingerprint"] == ds.fingerprint
    assert info["train_counts"]["cat"] == 200 and sum(info["test_counts"].values()) == 500
    assert info["mean"] == pytest.approx(channel_stats(ds.x_train)[0]) and len(info["std"]) == 3
    assert info["source"] == "synthetic" and info["lossy"] is False


def test_data_info_table_lists_every_class():
    result = CliRunner().invoke(cli, ["data", "info", "--data", "synthetic"])
    assert result.exit_code == 0, result.output
    assert "fingerprint" in result.output and "mean (train)" in result.output
    assert all(f"{cls} " in result.output for cls in CIFAR10_CLASSES)
    assert "2,000 train, 500 test" in result.output
