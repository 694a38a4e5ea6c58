"""The weights store and zoo.load: round trips, provenance in the sidecar, and every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import CifarzooError
from zoo.weights import find_best, read_weights, save_weights, sha256_file, store_dir

ENTRY = "cnn004-relu"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def trained(entry: str = ENTRY, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    e = zoo.get_entry(entry)
    model = zoo.create(e.architecture, **e.arch_kwargs)
    with torch.no_grad():  # move the BatchNorm statistics off their defaults, as training would
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def meta(test_accuracy: float = 0.7, val_accuracy: float = 0.72) -> dict:
    return {"recipe": zoo.get_entry(ENTRY).recipe.to_dict(), "seed": 3, "data_fingerprint": "abc123",
            "classes": CLASSES, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "input_size": 32,
            "metrics": {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy, "test_loss": 0.9}}


def test_store_lives_under_cifarzoo_home(home):
    assert store_dir() == home / "weights"


def test_save_then_load_reproduces_identical_logits(home):
    model = trained()
    path, sha = save_weights(model, ENTRY, "run-1", meta())
    assert path == home / "weights" / ENTRY / "run-1.safetensors" and sha == sha256_file(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    loaded = zoo.load(ENTRY)
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    info = loaded.cifarzoo
    assert (info.entry, info.classes, info.input_size, info.weights) == (ENTRY, tuple(CLASSES), 32, str(path))
    assert info.mean == (0.49, 0.48, 0.45) and info.std == (0.25, 0.24, 0.26)
    assert info.metrics["test_accuracy"] == 0.7
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.entry = "other"
    explicit = zoo.load(ENTRY, weights=str(path))  # an explicit file resolves first
    with torch.no_grad():
        assert torch.equal(explicit(x), expected)


def test_sidecar_records_provenance(home):
    path, sha = save_weights(trained(), ENTRY, "run-1", meta())
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["entry"] == ENTRY and side["run_id"] == "run-1" and side["sha256"] == sha
    assert side["seed"] == 3 and side["data_fingerprint"] == "abc123" and side["recipe"]["batch_size"] == 256
    assert side["metrics"] == {"val_accuracy": 0.72, "test_accuracy": 0.7, "test_loss": 0.9}
    assert side["created_at"].endswith("+00:00") and side["classes"] == CLASSES
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_find_best_picks_the_highest_test_then_validation_accuracy(home):
    assert find_best(ENTRY) is None
    save_weights(trained(seed=1), ENTRY, "a", meta(0.70, 0.80))
    best, _ = save_weights(trained(seed=2), ENTRY, "b", meta(0.75, 0.70))
    save_weights(trained(seed=3), ENTRY, "c", meta(0.75, 0.60))
    assert find_best(ENTRY) == best
    assert zoo.load(ENTRY).cifarzoo.weights == str(best)


def test_the_store_never_overwrites(home):
    path, sha = save_weights(trained(seed=1), ENTRY, "run-1", meta())
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    with pytest.raises(CifarzooError, match="already exist"):
        save_weights(trained(seed=2), ENTRY, "run-1", meta(0.9))
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before
    _, new_sha = save_weights(trained(seed=2), ENTRY, "run-1", meta(0.9), overwrite=True)
    assert new_sha != sha and sha256_file(path) == new_sha


def test_no_weights_says_how_to_produce_them(home):
    with pytest.raises(CifarzooError, match=r"no trained weights for 'tinyvgg-norm'.*`cifarzoo train tinyvgg-norm`"):
        zoo.load("tinyvgg-norm")
    with pytest.raises(CifarzooError, match="does not exist"):
        zoo.load(ENTRY, weights=str(home / "nowhere.safetensors"))


def test_truncated_file_is_refused_and_kept(home):
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CifarzooError, match="sha256"):
        zoo.load(ENTRY)
    path.with_suffix(".json").unlink()  # without a sidecar the file itself is found unreadable
    with pytest.raises(CifarzooError, match="not a readable safetensors file"):
        zoo.load(ENTRY, weights=str(path))
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CifarzooError, match="not a readable safetensors file"):
        read_weights(path)
    assert path.exists()  # errors never delete anything


def test_sha256_mismatch_is_refused(home):
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # same length, one flipped bit in the last tensor
    path.write_bytes(bytes(blob))
    with pytest.raises(CifarzooError, match="does not match the sha256 in its sidecar"):
        zoo.load(ENTRY)


def test_weights_of_another_entry_are_refused(home):
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    with pytest.raises(CifarzooError, match="belongs to entry 'cnn004-relu', not 'cnn004-leaky'"):
        zoo.load("cnn004-leaky", weights=str(path))
    path.with_suffix(".json").unlink()  # the entry is in the safetensors header too
    with pytest.raises(CifarzooError, match="belongs to entry 'cnn004-relu'"):
        zoo.load("cnn004-leaky", weights=str(path))


def test_weights_of_another_shape_are_refused(home):
    other = trained("cnn3-basic")  # the wrong network, stored under this entry's name
    path, _ = save_weights(other, ENTRY, "run-1", meta())
    with pytest.raises(CifarzooError, match=f"{path}.*does not fit entry '{ENTRY}'"):
        zoo.load(ENTRY)


def test_pinned_weights_are_fetched_and_checked_by_sha256(home, tmp_path):
    source, sha = save_weights(trained(), ENTRY, "published", meta())
    served = tmp_path / "served.safetensors"
    served.write_bytes(source.read_bytes())
    source.unlink()
    source.with_suffix(".json").unlink()
    entry = dataclasses.replace(zoo.get_entry(ENTRY), weights_url=served.as_uri(), weights_sha256="0" * 64)
    with pytest.raises(CifarzooError, match="fail their sha256 check"):
        hub._resolve(entry, None)
    assert not list((store_dir() / ENTRY).iterdir())  # nothing stored
    entry = dataclasses.replace(entry, weights_sha256=sha)
    path = hub._resolve(entry, None)
    assert path.parent == store_dir() / ENTRY and sha256_file(path) == sha
    state, _ = read_weights(path, ENTRY)
    assert set(state) == set(trained().state_dict())


def test_info_reports_parameters_and_stored_weights(home):
    data = zoo.info(ENTRY)
    assert data["params"] == 1_365_930 and data["weights_present"] is False and data["weights"] is None
    assert data["report"] == "004" and data["recipe"]["batch_size"] == 256 and data["reported"]["accuracy"] == 0.7883
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    data = zoo.info(ENTRY)
    assert data["weights_present"] is True and data["weights"] == str(path)


def test_finetune_entries_load_without_imagenet_weights(home, monkeypatch):
    from zoo import pretrained

    monkeypatch.setattr(pretrained, "_download", lambda url: pytest.fail("load must not fetch ImageNet weights"))
    e = zoo.get_entry("mobilenetv3-small-ft")
    torch.manual_seed(0)
    model = zoo.create(e.architecture).eval()  # stands in for a fine-tuned network
    save_weights(model, e.name, "run-1", {"metrics": {"test_accuracy": 0.8}})
    loaded = zoo.load(e.name)
    assert loaded.cifarzoo.input_size == 224 and loaded.cifarzoo.mean == (0.485, 0.456, 0.406)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
