"""benchmark.convgrad: weight gradients by unfold + matmul on the small maps where that is faster (CPU, fp32
and bf16 autocast)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark import convgrad

GEOMETRIES = [  # x shape, weight shape, stride, padding, dilation
    ((4, 8, 1, 1), (16, 8, 3, 3), (1, 1), (1, 1), (1, 1)),  # ResNet-18's layer4 at 32 px
    ((3, 5, 4, 4), (6, 5, 3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 4, 5, 6), (3, 4, 2, 3), (1, 2), (0, 1), (1, 1)),  # non-square kernel, stride and map
    ((2, 3, 7, 7), (4, 3, 3, 3), (1, 1), (2, 2), (2, 2)),  # dilated
    ((5, 1, 3, 3), (2, 1, 1, 1), (1, 1), (0, 0), (1, 1)),  # one input channel, 1x1 kernel
]


def _autograd_weight_grad(x, w, g, stride, padding, dilation):
    w = w.detach().requires_grad_()
    F.conv2d(x, w, None, stride, padding, dilation).backward(g)
    return w.grad


@pytest.mark.parametrize(("x_last", "w_last"), [(False, False), (True, True), (False, True), (True, False)])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_the_unfold_weight_gradient_is_torchs_in_the_weights_layout(geometry, x_last, w_last) -> None:
    xs, ws, stride, padding, dilation = geometry
    torch.manual_seed(0)
    fmt = {True: torch.channels_last, False: torch.contiguous_format}
    x = torch.randn(xs, dtype=torch.float64).contiguous(memory_format=fmt[x_last])
    w = torch.randn(ws, dtype=torch.float64).contiguous(memory_format=fmt[w_last])
    g = torch.randn_like(F.conv2d(x, w, None, stride, padding, dilation))
    grad = convgrad.weight_grad_by_unfold(x, g, w, stride, padding, dilation)
    torch.testing.assert_close(grad, _autograd_weight_grad(x, w, g, stride, padding, dilation))
    if ws[1] > 1:  # a one-channel weight's two layouts have the same strides up to size-1 dims
        assert grad.stride() == w.stride()


@pytest.mark.parametrize(("weight", "pixels", "unfold"), [
    ((512, 512, 3, 3), 1, True),  # ResNet-18's layer4 at 32 px: oneDNN 144 ms, unfold 9 ms
    ((256, 256, 3, 3), 4, True),  # its layer3: 1.4x faster by unfold
    ((128, 128, 3, 3), 16, False),  # its layer2: oneDNN 1.4x faster
    ((1024, 1024, 3, 3), 16, True),  # ResNet-12's last stage: unfold 2.5x faster
    ((512, 512, 3, 3), 64, False),  # larger maps: oneDNN
    ((512, 256, 1, 1), 1, False),  # 1x1 kernels: a coin toss, left to oneDNN
])
def test_the_rule_takes_the_way_that_was_faster_for_the_surveyed_shapes(weight, pixels, unfold) -> None:
    assert convgrad.unfold_wins(weight, pixels) is unfold


ONE_PIXEL = [  # input (h, w), kernel, stride, padding: taps that meet the input, or None (a convolution)
    ((1, 1), (3, 3), (1, 1), (1, 1), (slice(1, 2), slice(1, 2))),  # ResNet-18's layer4 at 32 px: the centre tap
    ((2, 2), (3, 3), (2, 2), (1, 1), (slice(1, 3), slice(1, 3))),  # its first layer4 conv: stride 2 on a 2x2 map
    ((3, 3), (3, 3), (1, 1), (0, 0), (slice(0, 3), slice(0, 3))),  # the window is the whole map
    ((1, 2), (1, 3), (1, 2), (0, 1), (slice(0, 1), slice(1, 3))),  # non-square
    ((2, 2), (1, 1), (2, 2), (0, 0), None),  # one pixel out, but the input reaches past the 1x1 window
    ((4, 4), (3, 3), (4, 4), (1, 1), None),  # one pixel out, 9 of the 16 inputs seen
    ((2, 2), (3, 3), (1, 1), (1, 1), None),  # a 2x2 output
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "taps"), ONE_PIXEL)
def test_a_one_pixel_convolution_is_one_matmul_with_the_convolutions_gradients(size, kernel, stride, padding, taps,
                                                                               channels_last) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 4, kernel, stride, padding).double()
    assert convgrad.one_pixel_taps(conv, *size) == taps
    if taps is None:
        return
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    x = torch.randn(3, 5, *size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    ref = conv(x)
    g = torch.randn_like(ref)
    expected = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    with convgrad.unfold_conv_grads(conv) as wrapped:
        out = conv(x)
    assert wrapped.as_matmul == {""} and not wrapped.unfolded
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out, (x, conv.weight, conv.bias), g)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    # the taps that meet only padding get exactly zero either way
    assert grads[1].count_nonzero() == expected[1].count_nonzero() == 4 * 5 * size[0] * size[1]


def _net() -> nn.Sequential:
    # maps: 8x8 (oneDNN), 2x2 (unfold), then a one-pixel output (a matmul); the last conv has a bias
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=4, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=True), nn.Flatten(),
                         nn.Linear(6, 10))


def _grads(model, x, y):
    model.zero_grad()
    out = model(x)
    F.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _unwrapped_then_wrapped(grads=_grads) -> tuple:
    """One net's outputs and gradients plain, then within unfold_conv_grads: (model, batch, out, ref, out2, got,
    wrapped)."""
    torch.manual_seed(0)
    model = _net()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([1, 2, 3, 4])
    out, ref = grads(model, x, y)
    with convgrad.unfold_conv_grads(model) as wrapped:
        out2, got = grads(model, x, y)
    return model, (x, y), out, ref, out2, got, wrapped


def test_wrapped_convolutions_give_torchs_gradients_and_are_restored() -> None:
    model, _, out, ref, out2, got, wrapped = _unwrapped_then_wrapped()
    assert wrapped.convs == 3
    assert (wrapped.unfolded, wrapped.as_matmul) == ({"2"}, {"4"})  # the 2x2 map, the one-pixel output
    torch.testing.assert_close(out2, out)  # torch's convolutions, and a matmul in another order
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6)
    assert all("forward" not in m.__dict__ for m in model.modules())


def _autocast_grads(model, x, y):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return _grads(model, x, y)


def test_under_bf16_autocast_oneDNN_layers_are_bit_identical_and_the_others_close(monkeypatch) -> None:
    model, batch, out, ref, out2, got, wrapped = _unwrapped_then_wrapped(_autocast_grads)
    assert (wrapped.unfolded, wrapped.as_matmul) == ({"2"}, {"4"}) and out2.dtype == torch.bfloat16
    assert all(got[n].dtype == torch.float32 for n in got)  # the fp32 parameters get fp32 gradients
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=2e-2, atol=2e-2)  # bf16: 8 bits of mantissa
    monkeypatch.setattr(convgrad, "one_pixel_taps", lambda *_: None)  # the last layer a convolution again
    with convgrad.unfold_conv_grads(model) as unfold_only:
        out3, got3 = _autocast_grads(model, *batch)
    assert unfold_only.unfolded == {"2", "4"}
    assert torch.equal(out, out3)  # the forward is autocast's own bf16 convolution
    assert torch.equal(got3["0.weight"], ref["0.weight"])  # the 8x8 layer stays oneDNN's
    monkeypatch.setattr(convgrad, "unfold_wins", lambda *_: False)  # every layer to oneDNN: autocast exactly
    with convgrad.unfold_conv_grads(model):
        _, same = _autocast_grads(model, *batch)
    assert all(torch.equal(same[n], ref[n]) for n in ref)


def test_fit_records_unfolded_and_matmul_convolutions_in_either_precision() -> None:
    from benchmark.loader import DeviceLoader
    from benchmark.train import fit
    from zoo.recipe import Recipe

    torch.manual_seed(0)
    x = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    loader = DeviceLoader(x, y, batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, input_size=8)
    for precision in ("fp32", "bf16"):
        recipe = Recipe(max_epochs=1, val_fraction=0.0, precision=precision, channels_last=False, input_size=8)
        result = fit(_net(), recipe, loader, None)
        assert (result.fast_path["unfolded_conv_grads"], result.fast_path["matmul_convs"]) == (1, 1)
        assert all("forward" not in m.__dict__ for m in result.model.modules())


def test_a_killed_and_resumed_run_with_unfolded_gradients_matches_the_uninterrupted_one(tmp_path) -> None:
    from helpers import assert_resumes_bit_identically
    from test_train import RECIPE, loaders

    from benchmark.train import fit

    def net():
        torch.manual_seed(0)  # maps 32x32 (oneDNN), 2x2 (unfold), a one-pixel output (a matmul)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=16, padding=1),
                             nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8, 3))

    full = assert_resumes_bit_identically(lambda **kw: fit(net(), RECIPE, *loaders(), **kw), tmp_path)
    assert (full.fast_path["unfolded_conv_grads"], full.fast_path["matmul_convs"]) == (1, 1)
