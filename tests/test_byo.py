"""Bring your own: a model file, a module or a timm name benched like any entry; entry files that outlive the
process; preprocessing that travels (transform, ONNX metadata, predict); TensorBoard and MLflow read back;
torch.hub and model cards. Every new input path has its bad-input test: one sentence, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import cifarzoo

import zoo

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--data", "synthetic", "--profile", "smoke", "--no-site", "--progress", "quiet"]
MODEL = '''from torch import nn


def build(width: int = 8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))


def wrong():
    return nn.Linear(3, 7)
'''


@pytest.fixture
def user(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mynet.py").write_text(MODEL)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "nets.py").write_text(MODEL)
    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    return tmp_path, env


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in folder.glob("*.json")]


def test_a_model_file_is_benched_saved_as_an_entry_and_loadable_later(user):
    tmp, env = user
    out = cifarzoo("bench", "--model", "nets/mynet.py:build", "--name", "mynet", *SMOKE, "--results",
                   str(tmp / "r"), env=env, cwd=tmp)
    assert out.returncode == 0, out.stderr
    [record] = records(tmp / "r")
    assert record["status"] == "ok" and record["entry"]["name"] == "mynet" and record["model"]["params"] == 314
    assert record["entry"]["architecture"] == f"{(tmp / 'nets' / 'mynet.py').resolve()}:build"
    saved = tmp / "home" / "entries" / "mynet.toml"
    assert saved.is_file()
    listed = cifarzoo("list", "mynet", "--json", env=env)
    assert json.loads(listed.stdout)[0]["architecture"].endswith("mynet.py:build")
    weights = tmp / "home" / "weights" / record["weights"]["file"]
    probe = (f"import zoo, torch; m = zoo.load('mynet', weights={str(weights)!r}); "
             "print(sum(p.numel() for p in m.parameters()))")
    loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "314", loaded.stderr  # another process knows it


def test_a_module_function_and_a_timm_name_with_recipes(user):
    tmp, env = user
    (tmp / "fast.toml").write_text("[recipe]\nlr = 0.005\nmax_epochs = 1\n")
    out = cifarzoo("bench", "--model", "pkg.nets:build", "--recipe", str(tmp / "fast.toml"), *SMOKE,
                   "--results", str(tmp / "r"), env=env)
    assert out.returncode == 0, out.stderr
    [mod] = records(tmp / "r")
    assert mod["entry"]["name"] == "nets-build" and mod["recipe"]["lr"] == 0.005 and len(mod["history"]) == 1
    out = cifarzoo("bench", "--model", "timm:test_resnet", "--recipe-from", "cnn3-basic", *SMOKE, "--results",
                   str(tmp / "t"), env=env)
    assert out.returncode == 0, out.stderr
    [timm_rec] = records(tmp / "t")
    import timm

    expected = sum(p.numel() for p in timm.create_model("test_resnet", num_classes=10).parameters())
    assert timm_rec["entry"]["name"] == "timm-test_resnet" and timm_rec["model"]["params"] == expected
    assert timm_rec["recipe"]["augment"] == zoo.get_entry("cnn3-basic").recipe.augment


@pytest.mark.parametrize(("args", "says"), [
    (["--model", "nets/nothere.py:build"], "does not exist"),
    (["--model", "nets/mynet.py:missing"], "has no function 'missing'"),
    (["--model", "nets/mynet.py:wrong"], "did not build and run"),
    (["--model", "nosuchpkg.mod:build"], "cannot import module 'nosuchpkg.mod'"),
    (["--model", "timm:not_a_net"], "timm has no architecture 'not_a_net'"),
    (["--model", "nets/mynet.py:build", "--name", "Bad/Name"], "not a valid entry name"),
    (["--model", "nets/mynet.py:build", "--name", "cnn3-basic"], "already has an entry 'cnn3-basic'"),
    (["--recipe-from", "cnn3-basic", "cnn3-basic"], "go with --model"),
])
def test_bad_model_input_is_one_sentence_and_writes_nothing(user, args, says):
    tmp, env = user
    out = cifarzoo("bench", *args, *SMOKE, "--results", str(tmp / "r"), env=env, cwd=tmp)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp / "r").exists() and not list((tmp / "home" / "entries").glob("*.toml"))


def test_entry_files_register_everywhere_and_bad_ones_name_file_and_field(user):
    tmp, env = user
    folder = tmp / "myentries"
    folder.mkdir()
    (folder / "tiny-mine.toml").write_text(
        'name = "tiny-mine"\narchitecture = "tinyvgg"\nrecipe_from = "tinyvgg-aug"\ndescription = "mine"\n'
        '[arch_kwargs]\nhidden = 8\n[recipe]\nmax_epochs = 3\n[provenance]\nreport = "me"\n'
        '[reported]\naccuracy = 0.5\n')
    info = cifarzoo("--entries", str(folder), "info", "tiny-mine", "--json", env=env)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert (data["arch_kwargs"], data["recipe"]["max_epochs"], data["recipe"]["augment"], data["report"]) == (
        {"hidden": 8}, 3, "aug", "me")
    (folder / "tiny-mine.toml").write_text('name = "tiny-mine"\narchitecture = "tinyvgg"\n[recipe]\nlr = "fast"\n')
    bad = cifarzoo("--entries", str(folder), "list", env=env)
    assert bad.returncode == 2 and f"entry file {folder / 'tiny-mine.toml'}: recipe.lr:" in bad.stderr
    (folder / "tiny-mine.toml").write_text('name = "tiny-mine"\narchitecture = "tinyvgg"\nrecipe = {batchsize = 3}\n')
    bad = cifarzoo("--entries", str(folder), "list", env=env)
    assert bad.returncode == 2 and "recipe: Additional properties are not allowed ('batchsize'" in bad.stderr
    (folder / "tiny-mine.toml").write_text('name = "tiny-mine"\n')
    bad = cifarzoo("--entries", str(folder), "list", env=env)
    assert bad.returncode == 2 and "'architecture' is a required property" in bad.stderr


def test_transform_gives_what_the_evaluation_loader_gives(tmp_path, monkeypatch):
    from benchmark.data import synthetic_dataset
    from benchmark.loader import DeviceLoader
    from zoo.weights import save_weights

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))
    for entry, size in (("cnn3-basic", 32), ("mobilenetv3-small-ft", 224)):
        spec = zoo.get_entry(entry)
        mean, std = [0.4, 0.45, 0.5], [0.2, 0.25, 0.3]
        path, _ = save_weights(zoo.create(spec.architecture), entry, "r", {"mean": mean, "std": std,
                                                                          "input_size": size})
        card = zoo.load(entry, weights=str(path)).cifarzoo
        images = synthetic_dataset(n_train=10, n_test=4).x_test
        loader = DeviceLoader(images, torch.zeros(4), batch_size=4, mean=mean, std=std, input_size=size,
                              channels_last=False)
        expected = next(iter(loader.epoch(0)))[0]
        from PIL import Image

        for i, image in enumerate(images):  # a uint8 HWC tensor, its array, and the PIL image all work
            for given in (image, image.numpy(), Image.fromarray(image.numpy())):
                torch.testing.assert_close(card.transform()(given), expected[i], atol=1e-5, rtol=1e-5)


def test_onnx_files_carry_their_preprocessing(tmp_path, monkeypatch):
    import onnx

    from zoo.weights import save_weights

    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path))
    path, sha = save_weights(zoo.create("cnn3"), "cnn3-basic", "r", {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]})
    out = cifarzoo("export", "cnn3-basic", "--weights", str(path), "--out", str(tmp_path / "m.onnx"),
                   env={**os.environ, "CIFARZOO_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["entry"] == "cnn3-basic" and json.loads(meta["mean"]) == [0.1, 0.2, 0.3]
    assert json.loads(meta["classes"])[3] == "cat" and meta["weights_sha256"] == sha and meta["input_size"] == "32"


def test_predict_prints_top_k_and_refuses_unreadable_images(tmp_path):
    from PIL import Image

    from benchmark.data import synthetic_dataset
    from zoo.weights import save_weights

    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path)}
    os.environ["CIFARZOO_HOME"] = str(tmp_path)
    try:
        torch.manual_seed(0)
        path, _ = save_weights(zoo.create("cnn3"), "cnn3-basic", "r", {"mean": [0.4] * 3, "std": [0.25] * 3})
    finally:
        os.environ.pop("CIFARZOO_HOME")
    image = synthetic_dataset(n_train=10, n_test=2).x_test[0].numpy()
    Image.fromarray(image).resize((320, 240)).save(tmp_path / "big.jpg")
    Image.fromarray(image).save(tmp_path / "small.png")
    out = cifarzoo("predict", "cnn3-basic", str(tmp_path / "small.png"), str(tmp_path / "big.jpg"), "--weights",
                   str(path), "-k", "2", "--json", env=env)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [len(line["top"]) for line in lines] == [2, 2]
    model = zoo.load("cnn3-basic", weights=str(path))
    with torch.no_grad():
        probs = model(model.cifarzoo.transform()(Image.open(tmp_path / "small.png"))[None]).softmax(1)[0]
    assert lines[0]["top"][0] == {"class": zoo.get_entry("cnn3-basic").classes[int(probs.argmax())],
                                  "probability": round(float(probs.max()), 4)}
    (tmp_path / "broken.png").write_bytes(b"not an image")
    bad = cifarzoo("predict", "cnn3-basic", str(tmp_path / "broken.png"), "--weights", str(path), env=env)
    assert bad.returncode == 2 and f"image {tmp_path / 'broken.png'} cannot be read" in bad.stderr


def test_tensorboard_and_mlflow_hold_the_runs_curves(tmp_path):
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path / "home")}
    out = cifarzoo("bench", "cnn3-basic", *SMOKE, "--results", str(tmp_path / "r"), "--tensorboard",
                   str(tmp_path / "tb"), "--mlflow", env=env)
    assert out.returncode == 0, out.stderr
    [record] = records(tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "tb" / record["run_id"]))
    events.Reload()
    assert [e.value for e in events.Scalars("epoch/val_acc")] == pytest.approx(
        [r["val_acc"] for r in record["history"]])
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(record["test"]["accuracy"])
    client = MlflowClient(f"sqlite:///{(tmp_path / 'r' / 'mlflow.db').resolve()}")
    [run] = client.search_runs([client.get_experiment_by_name("cifarzoo").experiment_id])
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [r["train_loss"] for r in record["history"]])
    assert run.data.metrics["test_accuracy"] == pytest.approx(record["test"]["accuracy"])
    assert run.data.params["recipe.batch_size"] == str(record["recipe"]["batch_size"])
    artifact = client.download_artifacts(run.info.run_id, "record.json", str(tmp_path))
    assert json.loads(Path(artifact).read_text())["run_id"] == record["run_id"]


@pytest.fixture
def published_folder(tmp_path, monkeypatch):
    """Publish cnn3-basic from a record into a temporary package folder (zoo.published.FOLDER)."""
    from benchmark.data import load_dataset
    from benchmark.publish import publish
    from zoo import published

    env = {**os.environ, "CIFARZOO_HOME": str(tmp_path / "home")}
    assert cifarzoo("bench", "cnn3-basic", *SMOKE, "--results", str(tmp_path / "r"), env=env).returncode == 0
    monkeypatch.setenv("CIFARZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(published, "FOLDER", tmp_path / "package")
    return publish("cnn3-basic", tmp_path / "r", load_dataset("synthetic"), profile="smoke")


def test_torch_hub_loads_the_published_weights(published_folder):
    model = torch.hub.load(str(ROOT), "cnn3_basic", source="local", pretrained=True, trust_repo=True)
    assert model.cifarzoo.weights == str(published_folder.path) and not model.training
    untrained = torch.hub.load(str(ROOT), "cnn3_basic", source="local", trust_repo=True)
    assert not hasattr(untrained, "cifarzoo")
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert {name.replace("-", "_") for name in zoo.list_models()} <= set(dir(hubconf))  # an entry point each


def test_a_model_card_carries_the_published_accuracy(published_folder, tmp_path):
    import yaml

    from benchmark.card import write_card

    folder = write_card("cnn3-basic", tmp_path / "card" / "cnn3-basic")
    text = (folder / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    [result] = header["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test" and result["task"]["type"] == "image-classification"
    assert result["metrics"][0]["value"] == round(100 * published_folder.metrics["test_accuracy"], 2)
    assert (folder / "model.safetensors").read_bytes() == published_folder.path.read_bytes()
    assert json.loads((folder / "config.json").read_text())["classes"][0] == "airplane"
