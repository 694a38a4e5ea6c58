"""benchmark.optim: Newton-Schulz orthogonalisation, the Muon optimizer (SGD-Nesterov for plain groups), and Adam /
AdamW handing the fused kernel contiguous views."""

from __future__ import annotations

import pytest
import torch
from helpers import stop_after
from torch import nn
from torch.profiler import profile

import zoo
from benchmark.optim import Adam, AdamW, Muon, dense_order, orthogonalize
from benchmark.train import build_optimizer
from zoo.recipe import Recipe


@pytest.mark.parametrize("shape", [(32, 216), (128, 1152), (300, 40)])
def test_orthogonalize_flattens_the_spectrum(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    # a badly conditioned matrix: singular values spread over three orders of magnitude
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g))
    k = min(shape)
    s = torch.logspace(0, -3, k)
    m = u[:, :k] @ torch.diag(s) @ v[:, :k].T
    out = orthogonalize(m)
    assert out.shape == m.shape
    sv = torch.linalg.svdvals(out)
    # the quintic iteration lands singular values in roughly [0.7, 1.2] (not exactly 1) -- except the
    # smallest, which five steps cannot lift all the way from 1e-3 of the largest
    assert sv.max() < 1.25 and (sv[: k // 2] > 0.65).all()
    # same singular vectors: the output is U f(S) V^T with f increasing
    assert torch.sum(out * (u[:, :k] @ v[:, :k].T)) > 0.7 * k


def test_muon_plain_groups_step_exactly_like_torch_sgd_nesterov() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours = Muon([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1, momentum=0.85, weight_decay=1e-2)
    ref = torch.optim.SGD([{"params": [a2]}, {"params": [b2], "lr": 0.3}], lr=0.1, momentum=0.85,
                          weight_decay=1e-2, nesterov=True)
    for step in range(4):
        for opt, (x, y) in ((ours, (a, b)), (ref, (a2, b2))):
            opt.zero_grad()
            ((x.sin() * (step + 1)).sum() + (y**2).sum()).backward()
            opt.step()
    torch.testing.assert_close(a, a2)
    torch.testing.assert_close(b, b2)


def test_muon_filters_keep_their_norm_and_take_orthogonal_steps() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    opt = Muon([{"params": [w], "orthogonal": True, "lr": 0.1, "momentum": 0.0}], lr=1.0)
    w.grad = torch.randn_like(w) * torch.logspace(0, -2, 16).view(16, 1, 1, 1)  # badly scaled rows
    before = w.detach().clone()
    opt.step()
    normalised = before * 16**0.5 / before.norm()
    step = (normalised - w.detach()).reshape(16, -1) / 0.1
    sv = torch.linalg.svdvals(step)
    assert sv.min() > 0.6 and sv.max() < 1.25  # every direction moved, none dominated by the gradient scale
    assert w.detach().norm() == pytest.approx(16**0.5, rel=0.1)


def test_muon_takes_its_newton_schulz_steps_from_the_group() -> None:
    """ns_steps reaches orthogonalize: three steps (airbench94_muon's) lift a small singular value less than five."""
    torch.manual_seed(0)
    grad = torch.randn(16, 8, 3, 3) * torch.logspace(0, -2, 16).view(16, 1, 1, 1)
    steps = {}
    for ns in (3, 5):
        w = torch.nn.Parameter(torch.full((16, 8, 3, 3), 4 / 1152**0.5))  # norm sqrt(16): renormalising keeps it
        opt = Muon([{"params": [w], "orthogonal": True, "lr": 1.0, "momentum": 0.0, "ns_steps": ns}], lr=1.0)
        w.grad = grad.clone()
        opt.step()
        steps[ns] = (4 / 1152**0.5 - w.detach()).reshape(16, -1)
        torch.testing.assert_close(steps[ns], orthogonalize(grad.reshape(16, -1), ns))
    assert torch.linalg.svdvals(steps[3]).min() < torch.linalg.svdvals(steps[5]).min() - 0.1


def test_a_muon_checkpoint_from_before_ns_steps_resumes_with_five() -> None:
    w = torch.nn.Parameter(torch.randn(4, 2, 3, 3))
    saved = Muon([{"params": [w], "orthogonal": True}], lr=0.1).state_dict()
    del saved["param_groups"][0]["ns_steps"]  # as a checkpoint written before the option existed
    opt = Muon([{"params": [w], "orthogonal": True, "ns_steps": 3}], lr=0.1)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["ns_steps"] == 5
    w.grad = torch.randn_like(w)
    opt.step()


def test_build_optimizer_muon_groups_for_airnet_and_refuses_unmarked_models() -> None:
    model = zoo.create("airnet", widths=(16, 32, 32), filter_lr=0.2, filter_momentum=0.6, filter_ns_steps=3)
    recipe = Recipe(optimizer="muon", lr=0.5, momentum=0.85, weight_decay=1e-3)
    optimizer, _ = build_optimizer(model, recipe)
    assert isinstance(optimizer, Muon)
    ortho = [g for g in optimizer.param_groups if g["orthogonal"]]
    assert len(ortho) == 1 and ortho[0]["lr"] == 0.2 and ortho[0]["momentum"] == 0.6 and ortho[0]["ns_steps"] == 3
    filters = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad}
    assert {id(p) for p in ortho[0]["params"]} == filters and len(filters) == 6
    every = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each once
    with pytest.raises(ValueError, match="marks none"):
        build_optimizer(zoo.create("tinyvgg"), recipe)


def test_fit_with_muon_learns_and_resumes_exactly(tmp_path) -> None:
    from benchmark.data import synthetic_dataset
    from benchmark.evaluate import predict
    from benchmark.loader import DeviceLoader
    from benchmark.train import fit

    data = synthetic_dataset(n_train=512, n_test=256)

    def run(**kwargs):
        train = DeviceLoader(data.x_train, data.y_train, batch_size=64, mean=[0.4] * 3, std=[0.3] * 3,
                             shuffle=True, seed=1)
        torch.manual_seed(0)
        model = zoo.create("airnet", widths=(8, 16, 16))
        model.data_init(train.plain(256))
        return fit(model, recipe, train, None, **kwargs)

    recipe = Recipe(optimizer="muon", lr=0.2, momentum=0.85, weight_decay=1e-3, batch_size=64, max_epochs=3,
                    scheduler="onecycle", val_fraction=0.0, label_smoothing=0.2)
    full = run(checkpoint=tmp_path / "full.ckpt")
    test = DeviceLoader(data.x_test, data.y_test, batch_size=256, mean=[0.4] * 3, std=[0.3] * 3)
    logits, labels = predict(full.model, test, torch.device("cpu"), "bf16")
    assert (logits.argmax(1) == labels).float().mean() > 0.5  # chance is 0.1
    ckpt = tmp_path / "killed.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=ckpt, on_epoch=stop_after(2))
    resumed = run(checkpoint=ckpt)
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_dense_order_finds_the_layout_of_dense_tensors_only() -> None:
    w = torch.zeros(8, 4, 3, 3)
    assert dense_order(w) is None  # contiguous already
    assert dense_order(w.contiguous(memory_format=torch.channels_last)) == [0, 2, 3, 1]
    assert dense_order(torch.zeros(6, 5).t()) == [1, 0]
    assert dense_order(torch.zeros(8, 8)[:, ::2]) is None  # strided, not dense: no order lays it out


SHAPES = [(64, 32, 3, 3), (7, 5, 3, 3), (33, 17, 1, 1), (10, 48), (64,)]  # (7, 5, 3, 3): 315, no whole vector


def _filters_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


@pytest.mark.parametrize("ours, theirs", [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_adam_on_views_is_torchs_adam_bit_for_bit_without_copying_filters(ours: type, theirs: type, amsgrad: bool,
                                                                         fused: bool) -> None:
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in SHAPES]
    runs = []
    for cls in (ours, theirs):
        params = [nn.Parameter(_filters_last(t.clone())) for t in start]
        kind = {"fused": True} if fused else {"foreach": True}
        runs.append((params, cls(params, lr=1e-2, weight_decay=1e-2, amsgrad=amsgrad, **kind)))
    for _ in range(4):
        grads = [_filters_last(torch.randn(s, generator=g)) for s in SHAPES]
        for (params, optimizer), name in zip(runs, ("ours", "theirs")):
            for p, grad in zip(params, grads):
                p.grad = grad.clone(memory_format=torch.preserve_format)
            with profile(record_shapes=True) as prof:
                optimizer.step()
            copied = [e.input_shapes[0] for e in prof.events() if e.name in ("aten::copy_", "aten::clone")]
            filters = [shape for shape in copied if len(shape) == 4]
            if name == "ours":
                assert not filters, copied
            elif fused:  # what the views avoid: torch's fused kernel copies each channels_last filter
                assert len(filters) >= len([s for s in SHAPES if len(s) == 4]), copied
    (ours_p, ours_opt), (theirs_p, theirs_opt) = runs
    for a, b in zip(ours_p, theirs_p):
        assert torch.equal(a, b) and a.stride() == b.stride()
        for key, value in ours_opt.state[a].items():  # the moments keep the parameter's layout
            assert torch.equal(value, theirs_opt.state[b][key]) and value.stride() == theirs_opt.state[b][key].stride()
    assert ours_opt.state_dict()["state"].keys() == theirs_opt.state_dict()["state"].keys()


def test_build_optimizer_hands_adam_and_adamw_the_views() -> None:
    model = zoo.create("tinyvgg")
    for name, cls in (("adam", Adam), ("adamw", AdamW)):
        optimizer, fused = build_optimizer(model, Recipe(optimizer=name))
        assert type(optimizer) is cls and fused
