"""Tests that read the registry (torchvision test_extended_models style): every architecture and entry."""

from __future__ import annotations

import dataclasses
import math
from urllib.error import URLError

import pytest
import torch
from torch import nn

import zoo
from zoo import registry
from zoo.errors import CifarzooError
from zoo.recipe import NORMALIZATIONS, OPTIMIZERS, SCHEDULERS

ARCHITECTURES = zoo.list_architectures()
# the entries of the five reports (entries promoted from sweeps, report "cifarzoo", may exist beside them)
ENTRIES = [n for n in zoo.list_models() if zoo.get_entry(n).report != "cifarzoo"]
POLICIES = {"norm", "aug", "basic", "basic+erase", "report002", "fliptranslate", "altfliptranslate"}
FAMILIES = {"cnn", "resnet", "rnn", "transformer", "mlp-mixer", "mlp", "pretrained"}


def test_the_zoo_holds_every_report_configuration():
    for arch in ("tinyvgg", "resnet12", "gru", "vit", "mixer"):  # report 000: both recipes each
        assert {f"{arch}-norm", f"{arch}-aug"} <= set(ENTRIES)
    assert {"mlp-s-norm", "mlp-l-norm", "cnn3-basic", "vit-tiny-norm", "mobilenetv3-small-ft",
            "efficientnetv2-s-ft", "resnet18-ft"} <= set(ENTRIES)  # report 001
    assert {"cnn002-aug", "vit002-norm", "resnet18-scratch"} <= set(ENTRIES)  # report 002
    assert {"net003-norm"} <= set(ENTRIES)  # report 003
    assert {"cnn004-leaky-dropout", "cnn004-leaky", "cnn004-relu-dropout", "cnn004-relu"} <= set(ENTRIES)
    assert len(ENTRIES) == 25
    assert [n for n in zoo.list_models("resnet12*") if n in ENTRIES] == ["resnet12-aug", "resnet12-norm"]
    assert [n for n in zoo.list_models("*-ft") if n in ENTRIES] == \
        ["efficientnetv2-s-ft", "mobilenetv3-small-ft", "resnet18-ft"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_runs_forward_and_backward(architecture):
    torch.manual_seed(0)
    model = zoo.create(architecture)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_carries_recipe_and_provenance(name):
    entry = zoo.get_entry(name)
    assert entry.name == name == name.lower()
    assert name.startswith(entry.architecture + "-")
    assert entry.architecture in ARCHITECTURES
    assert entry.report in {"000", "001", "002", "003", "004"}
    assert entry.report_model and entry.family in FAMILIES and entry.kind in {"norm", "aug", "ft"}
    r = entry.recipe
    assert r.optimizer in OPTIMIZERS and r.scheduler in SCHEDULERS and r.normalize in NORMALIZATIONS
    assert r.lr > 0 and r.batch_size > 0 and 0 < r.max_epochs <= 120 and r.min_epochs <= r.max_epochs
    assert r.augment in POLICIES and 0 < r.augment_prob <= 1 and r.input_size in (32, 224, 384)
    assert (r.augment == "norm") == (entry.kind != "aug")
    rep = entry.reported
    assert rep.where.startswith(f"report {entry.report}")
    if rep.accuracy is None:
        assert rep.note, "an entry without a test number says why"
    else:
        assert 0.0 < rep.accuracy < 1.0
    assert rep.loss is None or 0.0 < rep.loss < 3.0
    assert entry.num_params is not None
    record_fields = entry.to_dict()  # what result records store
    assert record_fields["recipe"]["lr"] == r.lr and record_fields["reported"]["where"] == rep.where


@pytest.mark.parametrize("name", ENTRIES)
def test_parameter_counts_are_recomputed_not_trusted(name):
    entry = zoo.get_entry(name)
    kwargs = {k: v for k, v in entry.arch_kwargs.items() if k != "pretrained"}
    with torch.device("meta"):
        model = zoo.create(entry.architecture, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == entry.num_params


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("dropout", [0.5, 0.0])
def test_report004_network_has_exactly_the_tables_parameter_count(activation, dropout):
    model = zoo.create("cnn004", activation=activation, dropout=dropout)
    assert sum(p.numel() for p in model.parameters()) == 1_365_930
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 128, 128]
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [512, 128, 32, 10]
    assert sum(isinstance(m, nn.Dropout) and m.p == dropout for m in model.modules()) == 2


def test_reported_numbers_are_the_reports():
    table = {  # (accuracy, loss)
        "tinyvgg-norm": (0.7582, 1.081), "resnet12-norm": (0.8457, 0.629), "gru-norm": (0.6844, 1.033),
        "vit-norm": (0.6706, 1.105), "mixer-norm": (0.7173, 0.884),
        "tinyvgg-aug": (0.8109, 0.568), "resnet12-aug": (0.8981, 0.340), "gru-aug": (0.7147, 0.845),
        "vit-aug": (0.7509, 0.712), "mixer-aug": (0.7281, 0.782),
        "mlp-s-norm": (0.4242, None), "cnn3-basic": (0.7252, None), "vit-tiny-norm": (0.5408, None),
        "mobilenetv3-small-ft": (0.8316, None), "resnet18-ft": (None, None), "efficientnetv2-s-ft": (None, None),
        "resnet18-scratch": (0.78, 1.49), "cnn002-aug": (0.77, 1.68), "vit002-norm": (0.73, 1.81),
        "net003-norm": (0.84, None),
        "cnn004-leaky-dropout": (0.7765, None), "cnn004-leaky": (0.7522, None),
        "cnn004-relu-dropout": (0.7536, None), "cnn004-relu": (0.7883, None),
    }
    for name, (acc, loss) in table.items():
        rep = zoo.get_entry(name).reported
        assert (rep.accuracy, rep.loss) == (acc, loss), name
    assert "77%" in zoo.get_entry("resnet18-ft").reported.note
    assert zoo.get_entry("cnn004-relu").reported.per_class_accuracy["cat"] == 0.675
    assert zoo.get_entry("resnet12-aug").reported.where == "report 000, table 2"


def test_recipes_follow_the_reports():
    r = zoo.get_entry("resnet12-aug").recipe
    assert (r.optimizer, r.lr, r.batch_size, r.max_epochs, r.augment) == ("adam", 1e-3, 64, 100, "aug")
    assert (r.early_stopping.monitor, r.early_stopping.patience) == ("val_loss", 5)
    assert [zoo.get_entry(f"{a}-norm").recipe.batch_size for a in ("tinyvgg", "gru", "vit", "mixer")] == \
        [128, 64, 32, 32]
    mlp = zoo.get_entry("mlp-s-norm").recipe
    assert (mlp.weight_decay, mlp.normalize, mlp.min_epochs, mlp.early_stopping.monitor) == \
        (0.01, "none", 30, "val_acc")
    ft = zoo.get_entry("efficientnetv2-s-ft")
    assert (ft.recipe.input_size, ft.recipe.normalize, ft.kind, ft.family) == (384, "imagenet", "ft", "pretrained")
    assert ft.arch_kwargs["pretrained"] is True and ft.pretrained == "EfficientNet_V2_S_Weights.IMAGENET1K_V1"
    vit002 = zoo.get_entry("vit002-norm").recipe
    assert (vit002.optimizer, vit002.lr, vit002.weight_decay, vit002.scheduler, vit002.gamma, vit002.eval_every) == \
        ("adamw", 0.000365, 0.1, "exponential", 0.9, 5)
    assert zoo.get_entry("cnn002-aug").recipe.max_epochs == 120
    net = zoo.get_entry("net003-norm").recipe
    assert (net.lr, net.batch_size, net.max_epochs, net.normalize, net.early_stopping) == (5e-4, 60, 20, "half", None)
    stop = zoo.get_entry("cnn004-relu").recipe.early_stopping
    assert (stop.monitor, stop.patience, stop.max_train_val_gap) == ("val_acc", 10, 0.10)


def test_architectures_match_the_reports_shapes():
    vit = zoo.create("vit")
    assert type(vit).__name__ == "VisionTransformer" and len(vit.blocks) == 8
    assert vit.blocks[0].attn.num_heads == 8 and vit.blocks[0].mlp.fc1.out_features == 512
    assert vit.patch_embed.proj.kernel_size == (4, 4)
    mixer = zoo.create("mixer")
    assert type(mixer).__name__ == "MlpMixer" and len(mixer.blocks) == 6
    assert mixer.blocks[0].mlp_tokens.fc1.out_features == 64 and mixer.blocks[0].mlp_channels.fc1.out_features == 128
    v2 = zoo.create("vit002")
    attn = v2.blocks[0].attn
    assert (attn.num_heads, attn.head_dim, attn.qkv.out_features) == (20, 16, 3 * 320)
    assert v2.patch_embed.proj.kernel_size == (2, 2) and v2.pos_embed.shape == (1, 16 * 16 + 1, 32)
    tiny = zoo.create("vit-tiny")
    assert len(tiny.blocks) == 6 and tiny.blocks[0].attn.num_heads == 6 and tiny.pos_embed.shape == (1, 65, 30)
    resnet12 = zoo.create("resnet12", hidden=32)
    assert [b.convs[0].out_channels for b in resnet12.blocks] == [32, 64, 128, 256]
    gru = zoo.create("gru")
    assert (gru.gru.input_size, gru.gru.hidden_size, gru.gru.num_layers) == (96, 128, 4)
    pixels = zoo.create("gru", sequence="pixels", hidden=8, layers=1)
    assert pixels.gru.input_size == 3 and pixels(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_duplicate_names_are_refused():
    before = (zoo.list_architectures(), zoo.list_models())
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("tinyvgg")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_entry(zoo.get_entry("resnet12-aug"))
    with pytest.raises(ValueError, match="unknown architecture"):
        registry.register_entry(dataclasses.replace(zoo.get_entry("resnet12-aug"), name="x-aug", architecture="nope"))
    assert (zoo.list_architectures(), zoo.list_models()) == before


def test_unknown_names_fail_with_one_sentence_listing_close_names():
    with pytest.raises(CifarzooError) as err:
        zoo.get_entry("resnet12-agu")
    message = str(err.value)
    assert "resnet12-aug" in message and "\n" not in message and message.endswith(".")
    with pytest.raises(CifarzooError, match="resnet12"):
        zoo.create("resnet-12")
    with pytest.raises(CifarzooError, match="mobilenetv3-small-ft"):
        zoo.info("mobilenet-ft")


def test_wrong_kwargs_are_user_errors():
    with pytest.raises(CifarzooError, match="widht.*valid: hidden"):
        zoo.create("tinyvgg", widht=64)
    with pytest.raises(CifarzooError, match="activation 'tanh'"):
        zoo.create("cnn004", activation="tanh")
    with pytest.raises(CifarzooError, match="sequence"):
        zoo.create("gru", sequence="columns")
    with pytest.raises(CifarzooError, match="only used with pretrained"):
        zoo.create("resnet18", weights_file="x.pth")


# --- fine-tune path: ImageNet weights from local files, never a silent download ------------------------

def _imagenet_shaped(architecture: str, path) -> dict[str, torch.Tensor]:
    from torchvision import models

    builder = {"resnet18": models.resnet18, "mobilenetv3-small": models.mobilenet_v3_small}[architecture]
    torch.manual_seed(1)
    state = builder(num_classes=1000).state_dict()
    torch.save(state, path)
    return state


@pytest.mark.parametrize("architecture, head", [("mobilenetv3-small", "classifier.3"), ("resnet18", "fc")])
def test_finetune_starts_from_a_local_imagenet_state_dict(tmp_path, architecture, head):
    saved = _imagenet_shaped(architecture, tmp_path / "imagenet.pth")
    model = zoo.create(architecture, pretrained=True, weights_file=str(tmp_path / "imagenet.pth"),
                       freeze_backbone=True)
    state = model.state_dict()
    backbone = [k for k in saved if not k.startswith(head + ".")]
    assert backbone and all(torch.equal(state[k], saved[k]) for k in backbone)
    assert state[f"{head}.weight"].shape[0] == 10 and saved[f"{head}.weight"].shape[0] == 1000
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{head}.weight", f"{head}.bias"}
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # the trained network loads into one built without ImageNet weights: the same keys and shapes
    plain = zoo.create(architecture)
    plain.load_state_dict(state)


def test_imagenet_weights_of_the_wrong_architecture_are_refused(tmp_path):
    _imagenet_shaped("resnet18", tmp_path / "resnet.pth")
    with pytest.raises(CifarzooError, match="do not fit mobilenetv3-small"):
        zoo.create("mobilenetv3-small", pretrained=True, weights_file=str(tmp_path / "resnet.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CifarzooError, match="cannot be read"):
        zoo.create("resnet18", pretrained=True, weights_file=str(tmp_path / "junk.pth"))
    with pytest.raises(CifarzooError, match="does not exist"):
        zoo.create("resnet18", pretrained=True, weights_file=str(tmp_path / "missing.pth"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No ImageNet file anywhere, and a download that fails the way an offline machine does."""
    from zoo import pretrained

    monkeypatch.setenv(pretrained.ENV_DIR, str(tmp_path / "imagenet"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def no_network(url):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(pretrained, "_download", no_network)
    return calls


def test_imagenet_weights_requested_offline_fail_with_one_sentence(offline):
    from zoo.pretrained import imagenet_weights_available

    assert not imagenet_weights_available("resnet18")
    assert offline == []  # availability never downloads
    with pytest.raises(CifarzooError) as err:
        zoo.create("resnet18", pretrained=True)
    message = str(err.value)
    assert "not available offline" in message and "resnet18-f37072fd.pth" in message
    assert "--imagenet-weights" in message and "CIFARZOO_IMAGENET_WEIGHTS" in message and "\n" not in message
    assert offline == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


def test_imagenet_files_are_found_by_name_and_checked_against_the_hash_in_it(tmp_path, offline):
    from zoo.pretrained import imagenet_weights_available, weights_file_name

    name = weights_file_name("mobilenetv3-small")
    assert name == "mobilenet_v3_small-047dcff4.pth"
    (tmp_path / "imagenet").mkdir()
    _imagenet_shaped("mobilenetv3-small", tmp_path / "imagenet" / name)
    assert imagenet_weights_available("mobilenetv3-small")
    # a random state dict under the real name cannot have the real sha256 prefix: refused, not loaded
    with pytest.raises(CifarzooError, match="corrupt.*047dcff4"):
        zoo.create("mobilenetv3-small", pretrained=True)
    assert offline == []


def test_download_cannot_hang():
    from zoo import pretrained

    assert 0 < pretrained.DOWNLOAD_TIMEOUT_S <= 60 and not math.isinf(pretrained.DOWNLOAD_TIMEOUT_S)
