"""Hostile and unlucky input: crafted records, checkpoints, sidecars and data trees; concurrent benches; full
and read-only disks; interrupted builds. One test per finding of the issue, each failing on the code before
its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import cifarzoo
from record_factory import make_record, write_record

import zoo
from benchmark.data import synthetic_dataset
from leaderboard.build import build_site
from zoo.errors import CifarzooError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--data", "synthetic", "--profile", "smoke", "--no-site", "--progress", "plain"]


@pytest.fixture
def home_env(tmp_path):
    home = tmp_path / "home"
    return {**os.environ, "CIFARZOO_HOME": str(home), "CIFARZOO_IMAGENET_WEIGHTS": str(home / "none")}


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MB tmpfs mounted for the test (skipped where this process may not mount)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def everything_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# ----------------------------------------------------------------------------- 1-3: security


def test_1_a_traceback_file_pointing_outside_is_never_copied(tmp_path):
    record = make_record("tinyvgg-norm", status="failed", traceback_file="../../../../etc/passwd")
    write_record(tmp_path / "results", record)
    write_record(tmp_path / "results", make_record("tinyvgg-aug"))
    warnings: list[str] = []
    build_site(tmp_path / "results", tmp_path / "site", warn=warnings.append)
    copied = list((tmp_path / "site").rglob("*"))
    assert not any("root:" in p.read_text(errors="ignore") for p in copied if p.is_file() and p.suffix == ".txt")
    assert any("traceback_file" in w and "not a file name beside the record" in w for w in warnings)


def test_2_a_crafted_entry_name_writes_nothing_outside_the_site(tmp_path):
    write_record(tmp_path / "results", make_record("tinyvgg-norm"))
    evil = make_record("tinyvgg-aug", run_id="tinyvgg-aug--quick--s0--0badc0de")
    evil["entry"]["name"] = "../../../pwned"
    write_record(tmp_path / "results", evil, name="evil.json")
    before = everything_under(tmp_path)
    warnings: list[str] = []
    build_site(tmp_path / "results", tmp_path / "out" / "site", warn=warnings.append)
    created = everything_under(tmp_path) - before
    assert created and all(p.startswith("out/site") or p == "out" for p in created)
    assert not any("pwned" in p for p in everything_under(tmp_path.parent))
    assert any("evil.json" in w and "not a valid entry name" in w for w in warnings)


class _Payload:
    """Unpickling this runs code: what a crafted checkpoint would do under torch.load(weights_only=False)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_3_a_crafted_checkpoint_is_discarded_never_executed(tmp_path, home_env):
    from benchmark.data import load_dataset
    from benchmark.runner import prepare

    results, marker = tmp_path / "results", tmp_path / "pwned"
    run = prepare("cnn3-basic", 0, "smoke", load_dataset("synthetic"))
    ckpt = results / ".checkpoints" / f"{run.run_id}.ckpt"
    ckpt.parent.mkdir(parents=True)
    with open(ckpt, "wb") as f:
        torch.save({"epoch": 1, "model": _Payload(marker), "fast_path": {}, "rng": None}, f)
    out = cifarzoo("bench", "cnn3-basic", *SMOKE, "--results", str(results), env=home_env)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()  # nothing in the file ran
    assert "cannot be loaded safely" in out.stderr and "discarded" in out.stderr
    assert json.loads((results / f"{run.run_id}.json").read_text())["status"] == "ok"  # trained from scratch


# ----------------------------------------------------------------------------- 4-7: losing or mismatching results


def test_4_two_benches_on_one_folder_share_the_work_and_keep_weights_matching(tmp_path, home_env):
    from zoo.files import sha256_file

    results = tmp_path / "results"
    args = ["bench", "cnn3-basic", "mlp-s-norm", *SMOKE, "--seeds", "0,1", "--results", str(results)]
    procs = [subprocess.Popen([sys.executable, "-m", "cifarzoo", *args], cwd=ROOT, env=home_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    for r in records:  # every record's weights file is the one it names, unchanged
        assert sha256_file(Path(home_env["CIFARZOO_HOME"]) / "weights" / r["weights"]["file"]) == r["weights"]["sha256"]
    ran = [sum(": 0." in line or ": 1." in line for line in err.splitlines()) for _, err in outs]
    left = [sum("not run here" in line for line in err.splitlines()) for _, err in outs]
    assert sum(ran) == 4 and all(r + lft == 4 for r, lft in zip(ran, left))  # each run once, the rest reported


def test_5_a_full_disk_leaves_no_temporary_file_and_names_the_file(tmpfs):
    from zoo.files import write_atomic

    (tmpfs / "old.json").write_text("{}")
    with pytest.raises(CifarzooError, match=f"the disk is full while writing {tmpfs / 'big.bin'}"):
        write_atomic(tmpfs / "big.bin", b"x" * (4 << 20))
    assert sorted(p.name for p in tmpfs.iterdir()) == ["old.json"]  # the temp file is gone, the old file kept


def test_5_a_full_disk_during_a_checkpoint_leaves_nothing_half_written(tmpfs):
    from benchmark.fastpath import FastPath
    from benchmark.train import TrainState, save_checkpoint
    from zoo.recipe import Recipe

    model = torch.nn.Linear(1024, 1024)  # 4 MB of weights (8 MB with Adam's state): more than the disk holds
    state = TrainState(model, Recipe(), 1, FastPath("fp32", False, "recipe"))
    with pytest.raises(CifarzooError, match="disk is full while writing .*run.ckpt"):
        save_checkpoint(state, tmpfs / "run.ckpt")
    assert list(tmpfs.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_5_written_files_get_the_umasks_mode_not_a_private_one(tmp_path, umask, mode):
    """Records, weights and ONNX files were written 0600 (mkstemp's mode, kept by the rename): unreadable to
    the other users of a shared results folder, or of a package a root install copied them into."""
    from benchmark.onnx_export import export_onnx
    from zoo.files import write_atomic

    saved = os.umask(umask)
    try:
        write_atomic(tmp_path / "record.json", "{}")
        assert export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)),
                           tmp_path / "m.onnx", input_size=8).ok
    finally:
        os.umask(saved)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "record.json": oct(mode), "m.onnx": oct(mode)}


def test_5_stale_leftovers_of_killed_processes_are_cleaned(tmp_path, home_env):
    results = tmp_path / "results"
    results.mkdir()
    dead = 2**22 + 12345  # beyond pid_max on most systems: no such process
    leftovers = [results / f".x.json.tmp-{dead}-abcd", tmp_path / f".site.building-{dead}"]
    leftovers[0].write_text("{half")
    leftovers[1].mkdir()
    young = results / f".y.json.tmp-{dead}-efgh"
    young.write_text("{")  # may be another host's write in progress: kept
    old = time.time() - 3600
    for path in leftovers:
        os.utime(path, (old, old))
    out = cifarzoo("bench", "cnn3-basic", "--data", "synthetic", "--profile", "smoke", "--results", str(results),
                   "--site", str(tmp_path / "site"), "--progress", "quiet", env=home_env)
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in leftovers) and young.exists()


def _failing_weights_store(home: Path, entry: str) -> Path:
    """Make saving `entry`'s weights fail: a file where its store folder should be."""
    blocker = home / "weights" / entry
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    return blocker


def test_6_failed_runs_count_in_the_exit_code_and_can_be_retried(tmp_path, home_env):
    results = tmp_path / "results"
    blocker = _failing_weights_store(Path(home_env["CIFARZOO_HOME"]), "cnn3-basic")
    args = ["bench", "cnn3-basic", *SMOKE, "--results", str(results)]
    first = cifarzoo(*args, env=home_env)
    assert first.returncode == 1 and "recorded as failed" in first.stderr
    again = cifarzoo(*args, env=home_env)  # nothing to run, but the plan holds a failed run
    assert again.returncode == 1 and "1 already recorded" in again.stderr
    blocker.unlink()
    retried = cifarzoo(*args, "--retry-failed", env=home_env)
    assert retried.returncode == 0, retried.stderr
    [record] = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert record["status"] == "ok"
    kept = list((results / ".failed").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "failed"
    assert list((results / ".failed").glob("*.traceback.txt"))


def test_7_an_interrupted_site_swap_leaves_a_site_in_place(tmp_path, monkeypatch):
    write_record(tmp_path / "results", make_record("tinyvgg-norm"))
    site = tmp_path / "site"
    build_site(tmp_path / "results", site)
    calls = {"n": 0}
    real_replace = os.replace

    def killed_on_second_rename(src, dst):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise KeyboardInterrupt("killed between the renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_on_second_rename)
    monkeypatch.setattr(os, "rename", killed_on_second_rename)
    try:
        build_site(tmp_path / "results", site)
    except KeyboardInterrupt:
        pass
    assert (site / "index.html").is_file()  # the old site or the new, never none


# ----------------------------------------------------------------------------- 8: one sentence, exit 2


@pytest.mark.parametrize(("field", "value", "says"), [
    (("test", "accuracy"), "0.9", "test.accuracy"), (("seed",), "zero", "seed"), (("seed",), -3, "seed")])
def test_8_a_record_with_wrong_types_is_skipped_naming_the_field(tmp_path, field, value, says):
    record = make_record("tinyvgg-norm")
    target = record
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    write_record(tmp_path / "results", record, name="typed.json")
    write_record(tmp_path / "results", make_record("tinyvgg-aug"))
    warnings: list[str] = []
    report = build_site(tmp_path / "results", tmp_path / "site", warn=warnings.append)
    assert report.records == 1 and any("typed.json" in w and says in w for w in warnings)


def test_8_a_list_or_versionless_json_fails_a_strict_build(tmp_path):
    from leaderboard.build import StrictBuildError

    write_record(tmp_path / "results", make_record("tinyvgg-norm"))
    (tmp_path / "results" / "list.json").write_text("[1, 2]")
    with pytest.raises(StrictBuildError) as err:
        build_site(tmp_path / "results", tmp_path / "site", strict=True)
    assert any("list.json is a JSON list without a schema_version" in w for w in err.value.warnings)


def test_8_a_sidecar_with_wrong_types_is_one_sentence(tmp_path, monkeypatch):
    from zoo.weights import save_weights

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))
    path, _ = save_weights(zoo.create("cnn3"), "cnn3-basic", "run", {"profile": "full", "data_source": "x.zip"})
    side = path.with_suffix(".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "mean": "x"}))
    with pytest.raises(CifarzooError, match=rf"sidecar {side} is not a valid weights sidecar \('mean' is not three"):
        zoo.load("cnn3-basic", weights=str(path))


def test_8_site_output_on_a_read_only_disk_is_one_sentence(tmp_path, tmpfs, home_env):
    write_record(tmp_path / "results", make_record("tinyvgg-norm"))
    build_site(tmp_path / "results", tmpfs / "site")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    out = cifarzoo("leaderboard", "build", "--results", str(tmp_path / "results"), "--out", str(tmpfs / "site"),
                   env=home_env)
    assert out.returncode == 2 and "read-only or permission denied" in out.stderr and "Traceback" not in out.stderr
    assert (tmpfs / "site" / "index.html").is_file()  # the old site stays


def test_8_a_full_disk_during_the_site_build_is_one_sentence(tmp_path, tmpfs, home_env):
    for k in range(40):  # enough pages and plots to fill 2 MB
        write_record(tmp_path / "results", make_record(f"tinyvgg-k{k}", accuracy=0.5 + k / 100))
    out = cifarzoo("leaderboard", "build", "--results", str(tmp_path / "results"), "--out", str(tmpfs / "site"),
                   env=home_env)
    assert out.returncode == 2 and "the disk is full while building the site" in out.stderr
    assert "Traceback" not in out.stderr and not any(p.name.startswith(".site.building") for p in tmpfs.iterdir())


@pytest.mark.parametrize("seeds", ["-1", "99999999999999999999"])
def test_8_a_negative_or_huge_seed_is_refused(tmp_path, home_env, seeds):
    out = cifarzoo("bench", "cnn3-basic", *SMOKE, "--seeds", seeds, "--results", str(tmp_path / "r"), env=home_env)
    assert out.returncode == 2 and "out of range" in out.stderr and "Traceback" not in out.stderr
    assert not list((tmp_path / "r").glob("*.json")) if (tmp_path / "r").exists() else True


def test_8_a_site_folder_that_is_not_a_site_is_refused_before_training(tmp_path, home_env):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("x")
    out = cifarzoo("bench", "cnn3-basic", "--data", "synthetic", "--profile", "smoke", "--results",
                   str(tmp_path / "results"), "--site", str(tmp_path / "thesis"), env=home_env)
    assert out.returncode == 2 and "holds no cifarzoo site" in out.stderr
    assert not list((tmp_path / "results").glob("*.json"))  # refused before any run


# ----------------------------------------------------------------------------- 9: sidecars


def test_9_a_corrupt_or_missing_sidecar_stops_with_the_files_name(tmp_path, monkeypatch):
    from zoo.weights import save_weights

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))
    meta = {"profile": "full", "data_source": "x.zip", "metrics": {"val_accuracy": 0.5}}
    save_weights(zoo.create("cnn3"), "cnn3-basic", "a", meta)
    path, _ = save_weights(zoo.create("cnn3"), "cnn3-basic", "b", {**meta, "metrics": {"val_accuracy": 0.9}})
    path.with_suffix(".json").write_text("{broken")
    with pytest.raises(CifarzooError, match=f"sidecar {path.with_suffix('.json')} is not valid JSON"):
        zoo.load("cnn3-basic", weights="local")  # not silently the other run
    path.with_suffix(".json").unlink()
    with pytest.raises(CifarzooError, match=f"weights file {path} has no sidecar"):
        zoo.load("cnn3-basic", weights="local")


# ----------------------------------------------------------------------------- 10: data folders


def _tree(root: Path, classes: list[str], per_class: int = 2) -> Path:
    from PIL import Image

    data = synthetic_dataset(n_train=40, n_test=40)
    for split, x in (("train", data.x_train), ("test", data.x_test)):
        for k, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(x[k * per_class + i].numpy()).save(folder / f"{i}.png")
    return root


def test_10_a_symlinked_class_folder_is_followed(tmp_path):
    from benchmark.data import load_dataset
    from zoo.cifar10 import CLASSES

    tree = _tree(tmp_path / "tree", list(CLASSES))
    real = tmp_path / "elsewhere-cat"
    os.replace(tree / "train" / "cat", real)
    (tree / "train" / "cat").symlink_to(real, target_is_directory=True)
    data = load_dataset(str(tree), cache=False)
    assert data.class_counts("train") == [2] * 10


@pytest.mark.parametrize("n_classes", [9, 11])
def test_10_a_class_set_unlike_the_entrys_is_refused_with_both_lists(tmp_path, home_env, n_classes):
    from zoo.cifar10 import CLASSES

    names = list(CLASSES)[:9] if n_classes == 9 else [*CLASSES, "zebra"]
    tree = _tree(tmp_path / "tree", names)
    out = cifarzoo("bench", "cnn3-basic", "--data", str(tree), "--profile", "smoke", "--no-site", "--results",
                   str(tmp_path / "results"), env=home_env)
    assert out.returncode == 2 and "classes" in out.stderr and "'truck'" in out.stderr and "Traceback" not in out.stderr
    assert not list((tmp_path / "results").glob("*.json"))


def test_10_a_decode_error_names_the_member_file(tmp_path):
    import zipfile

    from benchmark.data import load_dataset
    from zoo.cifar10 import CLASSES

    tree = _tree(tmp_path / "tree", list(CLASSES))
    (tree / "train" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in tree.rglob("*.png"):
            z.write(path, path.relative_to(tree).as_posix())
    with pytest.raises(CifarzooError) as err:
        load_dataset(str(archive), cache=False)
    assert "'train/dog/1.png' in" in str(err.value) and "BytesIO" not in str(err.value)
