"""benchmark.winograd: 3x3 convolutions by Winograd (F(2x2, 3x3) and F(4x4, 3x3)), its rule, its place in the step."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark import convgrad, winograd

CL = torch.channels_last


def _both_ways(x_shape, cout, bias, x_grad=True, w_grad=True, dtype=torch.float64, tiles=winograd.F2):
    """Output and gradients of F.conv2d and of winograd.conv3x3 on the same random tensors."""
    torch.manual_seed(0)
    x = torch.randn(x_shape, dtype=dtype).contiguous(memory_format=CL).requires_grad_(x_grad)
    w = torch.randn(cout, x_shape[1], 3, 3, dtype=dtype).contiguous(memory_format=CL).requires_grad_(w_grad)
    b = torch.randn(cout, dtype=dtype, requires_grad=True) if bias else None
    g = torch.randn(x_shape[0], cout, *x_shape[2:], dtype=dtype)
    results = []
    for conv in (lambda: F.conv2d(x, w, b, padding=1), lambda: winograd.conv3x3(x, w, b, dtype, tiles)):
        out = conv()
        wanted = [t for t in (x, w, b) if t is not None and t.requires_grad]
        results.append((out, torch.autograd.grad(out, wanted, g) if wanted else ()))
    return results


def _assert_same(results) -> None:
    """The output and every gradient of `_both_ways`'s two results agree to float64 rounding."""
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tiles", [winograd.F2, winograd.F4], ids=["F2", "F4"])
@pytest.mark.parametrize(("x_shape", "cout", "bias"), [
    ((2, 3, 4, 8), 5, True),  # maps that are whole tiles of either size
    ((3, 5, 8, 8), 4, False),
    ((2, 3, 5, 7), 4, True),  # odd maps: a last row and column of tiles partly on padding, cropped
    ((2, 3, 9, 14), 4, True),
    ((2, 6, 3, 3), 5, False),
    ((1, 2, 1, 2), 3, True),  # a single tile
])
def test_conv3x3_is_the_convolution_with_its_gradients(x_shape, cout, bias, tiles) -> None:
    results = _both_ways(x_shape, cout, bias, tiles=tiles)
    assert results[1][0].is_contiguous(memory_format=CL)
    _assert_same(results)  # output; x, weight (and bias) gradients


def test_chunks_split_the_batch_by_the_transformed_size() -> None:
    per_image = winograd.CHUNK_BYTES // 3
    assert winograd._chunks(7, per_image) == [slice(0, 3), slice(3, 6), slice(6, 7)]  # 7 images: 3 chunks
    assert winograd._chunks(6, per_image) == [slice(0, 3), slice(3, 6)]
    assert winograd._chunks(4, 1) == [slice(0, 4)]  # small layers: one chunk, the whole batch
    assert winograd._chunks(3, 10 * winograd.CHUNK_BYTES) == [slice(0, 1), slice(1, 2), slice(2, 3)]


@pytest.mark.parametrize("tiles", [winograd.F2, winograd.F4], ids=["F2", "F4"])
@pytest.mark.parametrize(("x_grad", "w_grad"), [(True, True), (False, True), (True, False)])
def test_a_batch_in_chunks_is_the_same_convolution(monkeypatch, tiles, x_grad, w_grad) -> None:
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one image a chunk; the filter gradient summed over them
    results = _both_ways((5, 3, 9, 7), 4, True, x_grad, w_grad, tiles=tiles)
    assert len(winograd._chunks(5, 1)) == 5 and results[1][0].is_contiguous(memory_format=CL)
    _assert_same(results)


@pytest.mark.parametrize(("x_grad", "w_grad"), [(False, True), (True, False)])
def test_only_the_gradients_the_step_needs(x_grad, w_grad) -> None:
    # a first layer (the image needs no gradient) and a frozen layer under trained ones
    results = _both_ways((2, 4, 6, 6), 3, False, x_grad, w_grad)
    assert len(results[1][1]) == 1
    _assert_same(results)


def test_a_frozen_layer_on_the_image_has_no_backward() -> None:
    (_, _), (out, grads) = _both_ways((2, 4, 6, 6), 3, False, x_grad=False, w_grad=False)
    assert not out.requires_grad and grads == ()


def test_fp32_takes_the_larger_tiles_and_stays_within_fp32_rounding() -> None:
    assert winograd.tiles_for(torch.float32) is winograd.F4 and winograd.tiles_for(torch.float64) is winograd.F4
    assert winograd.tiles_for(torch.bfloat16) is winograd.F2 and winograd.tiles_for(torch.float16) is winograd.F2
    torch.manual_seed(0)
    x = torch.randn(8, 128, 16, 16).contiguous(memory_format=CL)
    w = torch.randn(128, 128, 3, 3) / 34
    ref = F.conv2d(x.double(), w.double(), padding=1)
    for tiles in (winograd.F2, winograd.F4):  # F4's transforms have coefficients up to 8: a few times F2's error
        assert _rel(winograd.conv3x3(x, w, None, torch.float32, tiles), ref) < 1e-5
    assert _rel(F.conv2d(x, w, padding=1), ref) < 2e-6


@pytest.mark.parametrize(("cin", "cout", "size", "stride", "bf16", "fp32"), [
    (128, 128, 32, 1, True, True),  # tinyvgg-aug, resnet12-aug
    (256, 512, 16, 1, True, True),  # net003-norm
    (128, 128, 8, 1, False, True),  # cnn004-relu: F2 ties on 8x8 below 256 input channels
    (256, 256, 8, 1, True, True),
    (1024, 1024, 4, 1, True, True),  # a small map, wide enough
    (128, 128, 4, 1, False, True),  # resnet18-scratch: F4 pays here, F2 does not
    (64, 128, 16, 1, False, True),  # net003-norm's 64 channels: F4 only
    (64, 128, 8, 1, False, True),  # cnn004-relu: F4 from 64 input channels where the output is wider
    (64, 64, 16, 1, False, False),  # but not 64 -> 64
    (256, 256, 7, 1, False, True),  # an odd map (airnet-fast): F4 only
    (256, 256, 2, 1, False, False),  # less than one window
    (32, 64, 16, 1, False, False),  # too narrow
    (256, 256, 16, 2, False, False),  # strided
])
def test_the_rule(cin, cout, size, stride, bf16, fp32) -> None:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    x = torch.empty(1, cin, size, size).contiguous(memory_format=CL)
    assert winograd.winograd_fits(conv, x, torch.bfloat16) is bf16
    assert winograd.winograd_fits(conv, x, torch.float32) is fp32
    assert not winograd.winograd_fits(conv, torch.empty(2, cin, size, size), torch.float32)  # NCHW: not measured
    assert not winograd.computable(nn.Conv2d(cin, cout, 3, padding=2, dilation=2), x)
    assert not winograd.computable(nn.Conv2d(cin, cout, 5, padding=2), x)


def _wide_net() -> nn.Sequential:
    # maps: 16x16 from a 32x32 image; the 128 -> 128 layer is the one the rule takes
    return nn.Sequential(nn.Conv2d(3, 128, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 3)).to(memory_format=CL)


def _step(model, x, y, precision):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(x)
    F.cross_entropy(out.float(), y).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _rel(a, b) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_in_the_engines_step_the_wide_layer_goes_by_winograd(precision) -> None:
    torch.manual_seed(0)
    model = _wide_net()
    x, y = torch.randn(4, 3, 32, 32).contiguous(memory_format=CL), torch.tensor([0, 1, 2, 0])
    ref_out, ref = _step(model.double(), x.double(), y, "fp32")  # the float64 reference
    model.float()
    direct_out, direct = _step(model, x, y, precision)  # torch's own convolutions
    with convgrad.unfold_conv_grads(model) as wrapped:
        out, got = _step(model, x, y, precision)
    assert wrapped.winograd == {"2"} and not wrapped.unfolded and not wrapped.as_matmul
    assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert all(g.dtype == torch.float32 for g in got.values())  # fp32 parameters get fp32 gradients
    pairs = [(out, direct_out, ref_out), *((got[n], direct[n], ref[n]) for n in ref)]
    for winograd_, direct_, ref_ in pairs:
        if precision == "fp32":  # another order of the same sums
            assert _rel(winograd_, ref_) < 1e-5
        else:  # bf16 rounds in more places than torch's bf16 convolution: the whole step's error grows by
            assert _rel(winograd_, ref_) < 2 * _rel(direct_, ref_)  # 1.0-1.3x here (first layer's gradient 6-7 %)


def test_fit_records_winograd_layers_and_resumes_bit_identically(tmp_path) -> None:
    from helpers import assert_resumes_bit_identically
    from test_train import RECIPE, loaders

    from benchmark.train import fit

    def net():
        torch.manual_seed(0)
        return _wide_net()

    recipe = RECIPE.replace(max_epochs=3, channels_last=True)
    full = assert_resumes_bit_identically(lambda **kw: fit(net(), recipe, *loaders(), **kw), tmp_path)
    assert full.fast_path["winograd_convs"] == 1
