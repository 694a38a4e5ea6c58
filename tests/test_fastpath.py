"""The fast path keeps the meaning of a model: bf16 + channels_last and torch.compile vs plain fp32 eager;
and the flagship (airnet) whitens, learns, and gets its own optimizer groups."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import stop_after

import zoo
from benchmark.evaluate import predict
from benchmark.fastpath import autocast
from benchmark.train import build_optimizer, fit
from zoo.recipe import Recipe

CPU = torch.device("cpu")
# (architecture, kwargs): a plain CNN, a residual net, a transformer, an MLP-Mixer, a BN CNN, the flagship
ARCHS = [("tinyvgg", {}), ("resnet12", {"hidden": 32}), ("vit", {}), ("mixer", {}), ("cnn004", {}),
         ("airnet", {"widths": (32, 64, 64)})]


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Normalised-looking images with spatial structure (smoothed noise), so the nets see image-like inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 36, 36, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1)  # 32x32, neighbouring pixels correlated
    return (x - x.mean()) / x.std()


def _built(arch: str, kwargs: dict, images: torch.Tensor) -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.create(arch, **kwargs)
    with torch.no_grad():  # zero-initialised heads (timm's Mixer) would make every logit 0 and the test vacuous
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.02)
    if hasattr(model, "data_init"):
        model.data_init(images)
    return model.eval()


@pytest.mark.parametrize(("arch", "kwargs"), ARCHS, ids=[a for a, _ in ARCHS])
def test_fast_path_predicts_like_fp32(arch: str, kwargs: dict) -> None:
    x = _images(32)
    model = _built(arch, kwargs, x)
    with torch.inference_mode():
        ref = model(x).float()
        fast_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        seen = []  # the dtype each conv / linear layer computes in under the fast path
        for layer in fast_model.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        with autocast(CPU, "bf16"):
            fast = fast_model(x.contiguous(memory_format=torch.channels_last)).float()
    # every layer computes in bf16, except airnet's whitening stem, whose bias add stays fp32 while it trains
    assert seen and seen.count(torch.bfloat16) >= len(seen) - (arch == "airnet"), f"layers ran in {seen}"
    scale = ref.std().item()
    err = (fast - ref).abs().max().item()
    assert err > 1e-5 * scale, "bf16 logits equal fp32 ones: the bf16 path did not run"
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op); a few percent of the logits' spread is the
    # bound for a network of 5-20 layers, where fp32 vs fp32-channels_last alone is ~1e-6
    assert err <= 0.05 * scale, f"max |bf16 - fp32| = {err:.4f} for logits of std {scale:.4f}"
    top2 = ref.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * err  # fp32 margin larger than the bf16 error: must agree
    agree = fast.argmax(1) == ref.argmax(1)
    assert agree[clear].all(), f"{(~agree[clear]).sum()} clear-margin predictions changed under bf16"
    assert agree.float().mean() >= 0.9


def test_compiled_model_matches_eager() -> None:
    """torch.compile (inductor: generated C++ kernels on this CPU) gives the eager outputs and gradients."""
    x = _images(32)
    model = _built("airnet", {"widths": (16, 32, 32)}, x).train()  # one graph: training mode, forward + backward
    compiled = torch.compile(model)
    y = torch.arange(len(x)) % 10
    eager_out = model(x)
    torch.nn.functional.cross_entropy(eager_out, y).backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.load_state_dict(_built("airnet", {"widths": (16, 32, 32)}, x).state_dict())  # undo BN stat updates
    model.zero_grad(set_to_none=True)
    compiled_out = compiled(x)
    torch.nn.functional.cross_entropy(compiled_out, y).backward()
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-4, atol=1e-4)
    compiled_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert compiled_grads.keys() == eager_grads.keys() and len(eager_grads) > 0
    for name, grad in compiled_grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-3, atol=1e-5, msg=name)


# ----------------------------------------------------------------------------- the flagship


def test_whitening_conv_whitens_patches() -> None:
    x = _images(128)
    model = zoo.create("airnet", widths=(16, 32, 32))
    model.data_init(x)
    conv = model.whiten
    half = conv.out_channels // 2
    torch.testing.assert_close(conv.weight[half:], -conv.weight[:half])  # +v and -v filters
    # covariance of the whitened 2x2 patches (the first half of the filters) is ~ identity
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x, conv.weight[:half]).permute(0, 2, 3, 1).reshape(-1, half).double()
    out = out - out.mean(0)
    cov = out.T @ out / len(out)
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    eigenvalues = torch.linalg.eigvalsh(torch.cov(patches.T, correction=0))
    expected = torch.diag(eigenvalues / (eigenvalues + conv.eps))  # eps regularises the smallest directions
    torch.testing.assert_close(cov, expected, rtol=0, atol=2e-3)
    assert (cov.diagonal() > 0.9).sum() >= 10  # all but the weakest directions have unit variance
    assert not conv.weight.requires_grad and conv.bias.requires_grad


def test_airnet_forward_backward_and_optimizer_groups() -> None:
    x = _images(16)
    model = zoo.create("airnet", widths=(16, 32, 32))
    model.data_init(x)
    out = model(x)
    assert out.shape == (16, 10)
    torch.nn.functional.cross_entropy(out, torch.arange(16) % 10).backward()
    assert model.whiten.weight.grad is None  # frozen whitening filters
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trained)
    recipe = Recipe(optimizer="sgd", lr=0.5, weight_decay=1e-3)
    optimizer, _ = build_optimizer(model, recipe)
    weights, biases = optimizer.param_groups
    assert biases["lr"] == 0.5 * model.bias_lr_scale and weights["lr"] == 0.5
    assert biases["weight_decay"] * biases["lr"] == pytest.approx(weights["weight_decay"] * weights["lr"])
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in model.modules()
                                                 if isinstance(m, torch.nn.BatchNorm2d)}
    assert optimizer.defaults["nesterov"]


def test_airnet_fit_learns_synthetic_data() -> None:
    from benchmark.augment import get_policy
    from benchmark.data import synthetic_dataset
    from benchmark.loader import DeviceLoader

    data = synthetic_dataset(n_train=768, n_test=256)
    mean, std = [0.4] * 3, [0.3] * 3
    # 5 epochs: at 3 this tiny net is mid-climb (fp32 0.80, bf16 0.63-0.46 depending on the seed); by 5 it has
    # learned the task in either precision (1.00 / 1.00), so the test says the same on every kind of host
    recipe = zoo.get_entry("airnet-fast").recipe.replace(max_epochs=5, batch_size=128)
    train = DeviceLoader(data.x_train, data.y_train, batch_size=128, mean=mean, std=std, shuffle=True,
                         policy=get_policy(recipe.augment))  # the entry's own: alternating flip + translate
    test = DeviceLoader(data.x_test, data.y_test, batch_size=256, mean=mean, std=std)
    torch.manual_seed(0)
    model = zoo.create("airnet", widths=(16, 32, 32))
    model.data_init(train.plain(500))
    assert recipe.val_fraction == 0.0  # the flagship trains on the whole train split: no validation loader
    result = fit(model, recipe, train, None)
    assert result.best_epoch == 5 and all("val_acc" not in row for row in result.history)
    logits, labels = predict(result.model, test, CPU, "fp32", tta="flip+translate")
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.8, f"test accuracy {accuracy:.3f} after 5 epochs (chance is 0.1)"
    print(f"airnet on synthetic data: test accuracy {accuracy:.3f}")
    from benchmark.fastpath import choose

    # "auto" recipe: this machine's measured choice (or CIFARZOO_PRECISION's, where the suite runs under it to
    # take an AVX2 host's path), and the record says so
    expected = choose("auto", None, "cpu")
    assert result.fast_path["chosen_by"] == expected.source in ("probe", "environment")
    assert (result.fast_path["precision"], result.fast_path["channels_last"]) == (expected.precision,
                                                                                  expected.channels_last)


def test_lookahead_changes_training_and_resumes_exactly(tmp_path) -> None:
    from benchmark.data import synthetic_dataset
    from benchmark.loader import DeviceLoader

    data = synthetic_dataset(n_train=256, n_test=10)

    def run(recipe: Recipe, **kwargs):
        train = DeviceLoader(data.x_train, data.y_train, batch_size=32, mean=[0.4] * 3, std=[0.3] * 3,
                             shuffle=True, seed=1)
        torch.manual_seed(0)
        model = zoo.create("airnet", widths=(8, 16, 16))
        model.data_init(next(iter(train.epoch(0)))[0])
        return fit(model, recipe, train, None, **kwargs)

    recipe = Recipe(optimizer="sgd", lr=0.2, momentum=0.85, batch_size=32, max_epochs=3, scheduler="onecycle",
                    warmup_epochs=1, val_fraction=0.0, lookahead=True)
    full = run(recipe, checkpoint=tmp_path / "full.ckpt")
    plain = run(recipe.replace(lookahead=False))
    changed = [k for k, v in full.model.state_dict().items() if not torch.equal(v, plain.model.state_dict()[k])]
    assert changed, "lookahead left every weight as plain SGD had it"
    ckpt = tmp_path / "killed.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(recipe, checkpoint=ckpt, on_epoch=stop_after(2))
    assert torch.load(ckpt, weights_only=True)["lookahead"] is not None  # the slow weights are checkpointed
    resumed = run(recipe, checkpoint=ckpt)
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_airnet_progressive_resizing_shrinks_only_early_training_batches() -> None:
    model = zoo.create("airnet", widths=(8, 16, 16), small_size=16, small_epochs=2)
    model.data_init(_images(32))
    seen: list[int] = []
    model.groups.register_forward_pre_hook(lambda _m, args: seen.append(args[0].size(-1)))
    x = _images(8)
    for epoch in (1, 2, 3):
        model.start_epoch(epoch)
        model.train()
        model(x)
        model.eval()
        model(x)
    # 2x2 whitening without padding: 16 px -> 15, 32 px -> 31; evaluation always at full size
    assert seen == [15, 31, 15, 31, 31, 31]
