"""The weights store and zoo.load: round trips, provenance in the sidecar, and every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import CifarzooError
from zoo.weights import find_best, read_weights, save_weights, sha256_file, store_dir

ENTRY = "net003-norm"  # no published weights: zoo.load(ENTRY) falls back to the local store (checked below)
VERIFY_ENTRY = "cnn3-basic"  # the smallest network: the verify tests score it on 1,500 images several times
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


def meta(test_accuracy: float = 0.7, val_accuracy: float | None = 0.72, profile: str = "full",
         data_source: str = "cifar10-jpeg.zip") -> dict:
    return {"recipe": zoo.get_entry(ENTRY).recipe.to_dict(), "seed": 3, "data_fingerprint": "abc123",
            "profile": profile, "data_source": data_source,
            "classes": CLASSES, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "input_size": 32,
            "metrics": {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy, "test_loss": 0.9}}


def test_the_local_store_tests_use_an_entry_without_published_weights():
    """Publishing ENTRY would turn the local-store tests into tests of the package's file: choose another."""
    assert zoo.get_weights(ENTRY).DEFAULT is None, f"{ENTRY} has published weights now; set ENTRY to one without"


def test_store_lives_under_cifarzoo_home(home):
    assert store_dir() == home / "weights"


def test_save_then_load_reproduces_identical_logits(home):
    model = trained()
    path, sha = save_weights(model, ENTRY, "run-1", meta())
    assert path.parent == home / "weights" / ENTRY and path.name.startswith("run-1.") and sha == sha256_file(path)
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
    assert side["seed"] == 3 and side["data_fingerprint"] == "abc123" and side["recipe"]["batch_size"] == 60
    assert side["metrics"] == {"val_accuracy": 0.72, "test_accuracy": 0.7, "test_loss": 0.9}
    assert side["created_at"].endswith("+00:00") and side["classes"] == CLASSES
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_local_selection_never_reads_the_test_split(home):
    assert find_best(ENTRY) is None
    save_weights(trained(seed=1), ENTRY, "smoke", meta(0.99, 0.99, profile="smoke"))  # never chosen for you
    save_weights(trained(seed=1), ENTRY, "synthetic", meta(0.99, 0.99, data_source="synthetic"))
    assert find_best(ENTRY) is None
    quick, _ = save_weights(trained(seed=1), ENTRY, "quick", meta(0.95, 0.95, profile="quick"))
    assert find_best(ENTRY) == quick
    save_weights(trained(seed=2), ENTRY, "a", meta(0.90, 0.70))  # higher test accuracy, lower validation
    best, _ = save_weights(trained(seed=3), ENTRY, "b", meta(0.60, 0.80))
    assert find_best(ENTRY) == best  # full beats quick; then validation accuracy decides
    assert zoo.load(ENTRY).cifarzoo.weights == str(best)
    assert zoo.load(ENTRY, weights="local").cifarzoo.weights == str(best)
    with torch.no_grad():  # a smoke run loads when asked for by file
        zoo.load(ENTRY, weights=str(next((home / "weights" / ENTRY).glob("smoke.*.safetensors"))))


def test_every_attempt_gets_its_own_file(home):
    path, sha = save_weights(trained(seed=1), ENTRY, "run-1", meta())
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    other, new_sha = save_weights(trained(seed=2), ENTRY, "run-1", meta(0.9))
    assert other != path and new_sha != sha and sha256_file(other) == new_sha
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before


def test_no_weights_says_how_to_produce_them(home):
    with pytest.raises(CifarzooError, match=r"no trained weights for 'tinyvgg-norm'.*`cifarzoo train tinyvgg-norm"):
        zoo.load("tinyvgg-norm")
    with pytest.raises(CifarzooError, match="does not exist"):
        zoo.load(ENTRY, weights=str(home / "nowhere.safetensors"))


def test_truncated_file_is_refused_and_kept(home):
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CifarzooError, match="sha256"):
        zoo.load(ENTRY)
    path.with_suffix(".json").unlink()  # without a sidecar nothing vouches for the file: refused
    with pytest.raises(CifarzooError, match="has no sidecar"):
        zoo.load(ENTRY, weights=str(path))
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CifarzooError, match="not a readable safetensors file"):
        read_weights(path, sha256=sha256_file(path))
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
    with pytest.raises(CifarzooError, match=f"belongs to entry '{ENTRY}', not 'cnn004-leaky'"):
        zoo.load("cnn004-leaky", weights=str(path))
    sha = sha256_file(path)
    path.with_suffix(".json").unlink()  # the entry is in the safetensors header too
    with pytest.raises(CifarzooError, match=f"belongs to entry '{ENTRY}'"):
        read_weights(path, "cnn004-leaky", sha256=sha)


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
    path, expected, _ = hub._resolve(entry, None)
    assert expected == sha
    assert path.parent == store_dir() / ENTRY and sha256_file(path) == sha
    state, _ = read_weights(path, ENTRY, sha256=expected)
    assert set(state) == set(trained().state_dict())


def test_info_reports_parameters_and_stored_weights(home):
    data = zoo.info(ENTRY)
    assert data["params"] == 2_753_546 and data["weights_present"] is False and data["weights"] is None
    assert data["report"] == "003" and data["recipe"]["batch_size"] == 60 and data["reported"]["accuracy"] == 0.84
    path, _ = save_weights(trained(), ENTRY, "run-1", meta())
    data = zoo.info(ENTRY)
    assert data["weights_present"] is True and data["weights"] == str(path)


def test_finetune_entries_load_without_imagenet_weights(home, monkeypatch):
    from zoo import pretrained

    monkeypatch.setattr(pretrained, "_download", lambda url: pytest.fail("load must not fetch ImageNet weights"))
    e = zoo.get_entry("mobilenetv3-small-ft")
    torch.manual_seed(0)
    model = zoo.create(e.architecture).eval()  # stands in for a fine-tuned network
    save_weights(model, e.name, "run-1", {"profile": "full", "data_source": "cifar10-jpeg.zip",
                                          "metrics": {"test_accuracy": 0.8}})
    loaded = zoo.load(e.name)
    assert loaded.cifarzoo.input_size == 224 and loaded.cifarzoo.mean == (0.485, 0.456, 0.406)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# ----------------------------------------------------------------------------- published weights


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A package folder of published weights holding one float16 file of ENTRY."""
    from safetensors.torch import save

    from zoo import published

    folder = tmp_path / "published"
    folder.mkdir()
    monkeypatch.setattr(published, "FOLDER", folder)
    model = trained()
    blob = save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
                metadata={"entry": ENTRY})
    (folder / f"{ENTRY}.safetensors").write_bytes(blob)
    record = published.Weights(
        entry=ENTRY, file=f"{ENTRY}.safetensors", sha256=hashlib.sha256(blob).hexdigest(), dtype="float16",
        profile="full", run_id="r", seed=1, seeds=(0, 1, 2), data={"source": "cifar10-jpeg.zip"},
        metrics={"test_accuracy": 0.8, "val_accuracy": 0.79}, recipe={}, num_params=1_365_930,
        classes=tuple(CLASSES), mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2), input_size=32, tta="none", default=True)
    published.write_manifest([record], folder)
    return folder, model, record


def test_published_default_loads_offline_in_float32(shipped, home):
    folder, model, record = shipped
    weights = zoo.get_weights(ENTRY)
    assert weights.DEFAULT == record and len(weights) == 1 and zoo.get_weights("cnn3-basic").DEFAULT is None
    loaded = zoo.load(ENTRY)  # no local runs at all: the package's file
    assert loaded.cifarzoo.weights == str(folder / record.file) and loaded.cifarzoo.metrics["test_accuracy"] == 0.8
    assert loaded.cifarzoo.mean == (0.4, 0.4, 0.4) and all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # float16 storage: equal to the float32 net within float16 rounding
        torch.testing.assert_close(loaded(x), model(x), rtol=2e-2, atol=2e-2)
    save_weights(trained(seed=5), ENTRY, "local", meta())
    assert zoo.load(ENTRY).cifarzoo.weights == str(folder / record.file)  # the published DEFAULT comes first
    assert zoo.load(ENTRY, weights="local").cifarzoo.weights != str(folder / record.file)


def test_a_tampered_published_file_is_refused(shipped):
    folder, _, record = shipped
    blob = bytearray((folder / record.file).read_bytes())
    blob[-1] ^= 0xFF
    (folder / record.file).write_bytes(bytes(blob))
    with pytest.raises(CifarzooError, match="does not match the sha256 in its published record"):
        zoo.load(ENTRY)
    with pytest.raises(CifarzooError, match="publishes no weights for 'cnn3-basic'"):
        zoo.load("cnn3-basic", weights="published")


def _shipped_records():
    from zoo.published import read_manifest

    return read_manifest()


def test_the_package_ships_weights_within_its_size_budget():
    records = _shipped_records()
    assert records, "no weights are published in zoo/published_weights"
    total = sum(w.path.stat().st_size for w in records)
    assert total <= 20e6, f"published weights take {total / 1e6:.1f} MB, over the 20 MB budget"
    assert len({w.entry for w in records if w.default}) == len([w for w in records if w.default])  # one DEFAULT each


@pytest.mark.parametrize("record", _shipped_records(), ids=lambda w: w.entry)
def test_each_published_record_is_true(record):
    """torchvision's meta-test habit: what a record says is recomputed from the file, not trusted."""
    from safetensors import safe_open

    entry = zoo.get_entry(record.entry)
    assert record.path.is_file() and sha256_file(record.path) == record.sha256
    with safe_open(str(record.path), framework="pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys() if f.get_tensor(k).is_floating_point()}
        assert f.metadata()["entry"] == record.entry
    assert dtypes == {f"torch.{record.dtype}"}
    model = zoo.load(record.entry, weights=record)
    assert sum(p.numel() for p in model.parameters()) == record.num_params == entry.num_params
    assert record.profile == "full" and record.seed in record.seeds and record.data["lossy"] in (True, False)
    assert (record.input_size, record.tta) == (entry.recipe.input_size, entry.recipe.tta)
    m = record.metrics
    assert 0 < m["test_accuracy"] <= 1 and abs(m["test_accuracy"] - m["test_accuracy_fp32"]) <= 0.0005
    assert m["n_seeds"] == len(record.seeds)


@pytest.mark.realdata
@pytest.mark.parametrize("record", [w for w in _shipped_records() if w.default], ids=lambda w: w.entry)
def test_published_weights_score_their_number_on_the_data_they_name(record, real):
    """zoo.load(entry) on a fresh install gives the test accuracy its record (and `cifarzoo list`) states:
    exactly, on the file's two check blocks (1,000 images), or on all 10,000 with CIFARZOO_FULL_WEIGHTS_CHECK=1
    (airnet-fast's six TTA views over all of them took 250-300 s of the suite on a 2-core AVX2 CPU)."""
    import os

    from benchmark.verify import verify

    if real.fingerprint != record.data["fingerprint"]:
        pytest.skip(f"{record.entry}'s weights come from another data copy ({record.data['source']})")
    full = bool(os.environ.get("CIFARZOO_FULL_WEIGHTS_CHECK"))
    check = verify(record, real, full=full)
    assert check.stated is not None and check.measured == check.stated
    assert check.images == (10_000 if full else 1_000) and check.ok
    if full:
        assert check.accuracy == record.metrics["test_accuracy"]


def test_each_published_record_states_block_counts_that_add_up_to_its_accuracy():
    from benchmark.evaluate import BLOCK

    for record in _shipped_records():
        blocks = record.metrics["test_correct_by_block"]
        assert len(blocks) == record.metrics["n_test_blocks"] == 20 and all(0 <= c <= BLOCK for c in blocks)
        assert sum(blocks) / (BLOCK * len(blocks)) == record.metrics["test_accuracy"], record.entry


# ----------------------------------------------------------------------------- verify: blocks and the CLI


@pytest.fixture
def verifiable(tmp_path, monkeypatch):
    """A package folder publishing a small untrained network under VERIFY_ENTRY, whose record states its
    accuracy and block counts on 1,500 synthetic test images."""
    from safetensors.torch import save

    from benchmark.data import synthetic_dataset
    from benchmark.evaluate import evaluate_model
    from benchmark.verify import block_metrics
    from zoo import published

    folder = tmp_path / "published"
    folder.mkdir()
    monkeypatch.setattr(published, "FOLDER", folder)
    blob = save(trained(VERIFY_ENTRY).state_dict(), metadata={"entry": VERIFY_ENTRY})
    (folder / "v.safetensors").write_bytes(blob)
    data = synthetic_dataset(n_train=10, n_test=1_500)
    record = published.Weights(
        entry=VERIFY_ENTRY, file="v.safetensors", sha256=hashlib.sha256(blob).hexdigest(), dtype="float32",
        profile="full", run_id="r", seed=0, seeds=(0,), data={"source": "synthetic", "fingerprint": data.fingerprint},
        metrics={"test_accuracy": 0.0}, recipe={}, num_params=0, classes=tuple(CLASSES), mean=(0.5,) * 3,
        std=(0.25,) * 3, input_size=32, tta="none", default=True)
    published.write_manifest([record], folder)
    report = evaluate_model(zoo.load(VERIFY_ENTRY), data)
    record = dataclasses.replace(record, metrics={"test_accuracy": report["accuracy"],
                                                  **block_metrics(report["correct_by_block"])})
    published.write_manifest([record], folder)
    return data, record, report


def test_a_block_scored_alone_counts_what_it_counts_in_the_whole_split(verifiable):
    from benchmark.evaluate import count_blocks

    data, record, report = verifiable
    blocks = report["correct_by_block"]
    assert len(blocks) == 3 and sum(blocks) == round(report["accuracy"] * 1_500)
    assert count_blocks(zoo.load(VERIFY_ENTRY), data, [2, 0, 1]) == {0: blocks[0], 1: blocks[1], 2: blocks[2]}
    with pytest.raises(ValueError, match="block 3 is outside the 1500 test images"):
        count_blocks(zoo.load(VERIFY_ENTRY), data, [3])


def test_verify_scores_the_files_own_blocks_and_catches_a_wrong_count(verifiable):
    from benchmark.verify import quick_blocks, verify

    data, record, report = verifiable
    check = verify(record, data)
    assert sorted(check.measured) == quick_blocks(record) and len(check.measured) == 2 and check.ok
    full = verify(record, data, full=True)
    assert full.ok and full.images == 1_500 and full.accuracy == report["accuracy"]
    block = quick_blocks(record)[0]
    wrong = list(report["correct_by_block"])
    wrong[block] += 1
    lying = dataclasses.replace(record, metrics={**record.metrics, "test_correct_by_block": wrong})
    assert not verify(lying, data).ok and not verify(lying, data, full=True).ok
    other = _cli("verify", VERIFY_ENTRY, "--data", "synthetic")  # 500 test images: another data copy, one sentence
    assert isinstance(other.exception, CifarzooError) and "not on this data" in str(other.exception)


def _cli(*args: str):
    from click.testing import CliRunner

    from cifarzoo.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_verify_command_says_as_published_or_different_and_records_counts(verifiable, monkeypatch):
    import benchmark.data
    from zoo import published

    data, record, report = verifiable
    monkeypatch.setattr(benchmark.data, "load_dataset", lambda source: data)
    ok = _cli("verify", VERIFY_ENTRY)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"{VERIFY_ENTRY}: ") and "of 1,000 test images correct" in ok.output
    assert ok.output.rstrip().endswith("as published")
    wrong = [c + 1 for c in report["correct_by_block"]]
    published.write_manifest([dataclasses.replace(record, metrics={**record.metrics,
                                                                   "test_correct_by_block": wrong})], published.FOLDER)
    bad = _cli("verify", VERIFY_ENTRY)
    assert bad.exit_code == 1 and "DIFFERENT from the record" in bad.output
    bare = {k: v for k, v in record.metrics.items() if k not in ("test_correct_by_block", "n_test_blocks")}
    published.write_manifest([dataclasses.replace(record, metrics=bare)], published.FOLDER)
    assert isinstance(_cli("verify", VERIFY_ENTRY, "--record").exception, CifarzooError)  # --record needs --full
    filled = _cli("verify", VERIFY_ENTRY, "--full", "--record")
    assert filled.exit_code == 0 and "no block counts stated" in filled.output and "recorded in" in filled.output
    assert zoo.get_weights(VERIFY_ENTRY).DEFAULT.metrics["test_correct_by_block"] == report["correct_by_block"]
    assert "unknown" in str(_cli("verify", "no-such-entry").exception).lower()
