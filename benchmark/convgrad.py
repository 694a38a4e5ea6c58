"""Convolution weight gradients by unfold + one matmul where oneDNN's kernel is slow: small output maps, CPU.

On the CPU torch computes a convolution's weight gradient with oneDNN, whose kernel is built for large
feature maps. On a small one it is slow by an order of magnitude: ResNet-18 at 32 px (the ImageNet stem
leaves layer4 a 1x1 map) spent 144 ms of its 2-core fp32 step (batch 128) in the weight gradient of each
512 -> 512 3x3 convolution whose forward takes 6 ms, three of them 64 % of the whole step. The same gradient
as a matmul of the output gradient with the unfolded input (im2col: `F.unfold`, then one GEMM of
cout x (batch * pixels) by (batch * pixels) x (cin * kh * kw)) took 9 ms. On large maps it is the other way
round (tinyvgg's 128 -> 128 at 32 px: oneDNN 558 ms, unfold 1,819 ms), and between the two it depends on the
channels as much as on the map (AVX2 host, batch 128 or 64: 4x4 maps with 128 channels favour oneDNN 1.4x,
with 1,024 channels unfold 2.5x). The rule, from timing both ways
on every convolution shape of the zoo at its recipe's batch size (`tests/perf/perf_convgrad.py` prints that
survey and whether the rule picks the faster way on the host it runs on): unfold for kernels larger than
1x1 on output maps of at most 4 pixels, or of at most 16 with at least 4,096 inputs per output
(cin * kh * kw); oneDNN everywhere else (on 1x1 kernels it was a coin toss, 0.3-1.9x). The rule is fixed,
not raced at run time: a timed choice can flip between two processes on a near tie, and a run must give
the same numbers wherever it runs (a Ray worker, a resumed process, the process of another seed).

The same survey in bf16 (`--dtype bfloat16`, AVX512-BF16 host, the tensors autocast hands the kernels) has
the same shape, smaller: ResNet-18's 512 -> 512 3x3 on the 1x1 map 9.6 ms by oneDNN, 2.8 ms by unfold; the
rule takes the faster way for every 3x3 shape there too, and the weight gradients of ResNet-18's step go
from 65 to 34 ms.

One shape needs no convolution at all: an output of one pixel whose window holds the whole input map (ResNet-18's
layer4 at 32 px: a 3x3 kernel, padding 1, on a 1x1 or, at stride 2, a 2x2 map). Every other tap of the kernel
meets zero padding, so the layer is exactly one matmul of the flattened input with the taps that meet it
(the centre tap on a 1x1 map): 1/9 of the work oneDNN does forward, for the input gradient and by unfold for the
weight's, whose other taps get exactly zero gradient either way. ResNet-18 trains 13-16 % faster for it (bf16,
Zen 4, 2 threads, in-process A/B); sums in another order, so not bit-identical to the convolution.

`unfold_conv_grads(model)` is a context manager for a training loop on the CPU in fp32 or under bf16
autocast: within it each plain convolution (`wrappable`: an `nn.Conv2d`, or a subclass that keeps its forward,
groups 1, zero padding given as numbers) takes the fastest of three ways for its shape: one matmul for a
one-pixel output (above), Winograd for a wide 3x3 layer (`benchmark.winograd`, by its own fixed
rule), else `_Conv2dFn`: the same `F.conv2d` forward and input gradient as torch's, the weight gradient by the
rule's way for its shape.
The weight gradients agree with oneDNN's to fp32 rounding (the sums are taken in another order), so a run
with it is not bit-identical to a run without (under bf16 they agree to bf16 rounding; layers left to oneDNN
are bit-identical). Not used on a GPU (cuDNN has its own algorithm search) or when compiled.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.winograd import conv3x3, winograd_fits

MAX_PIXELS = 16  # output pixels (h * w): on larger maps oneDNN won every shape surveyed
MIN_INPUTS = 4096  # cin * kh * kw from which unfold won on 5-16 pixel maps (ResNet-12's 512 and 1,024 channels)


def unfold_wins(weight_shape: torch.Size | tuple[int, ...], out_pixels: int) -> bool:
    """The rule (module docstring): True where a weight gradient goes by unfold on this CPU path."""
    _, cin, kh, kw = weight_shape
    if kh * kw == 1:
        return False
    return out_pixels <= 4 or (out_pixels <= MAX_PIXELS and cin * kh * kw >= MIN_INPUTS)


def weight_grad_by_unfold(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                          padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """d loss / d weight of `F.conv2d(x, weight, stride=, padding=, dilation=)` (groups 1), as im2col + GEMM,
    in `weight`'s memory layout."""
    cout, cin, kh, kw = weight.shape
    if weight.is_contiguous() or cin == 1:
        cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # B, cin*kh*kw, L
        g = grad_out.reshape(len(x), cout, -1).transpose(0, 1).reshape(cout, -1)  # cout, B*L
        return (g @ cols.transpose(1, 2).reshape(-1, cin * kh * kw)).view(cout, cin, kh, kw)
    # channels_last weights: columns ordered (kh, kw, cin), so that the product is already in that layout
    # (transposing a 512x512x3x3 gradient afterwards took as long as computing it: 9 ms, AVX2)
    return (_output_rows(grad_out).t() @ _windows_nhwc(x, (kh, kw), stride, padding, dilation)).view(
        cout, kh, kw, cin).permute(0, 3, 1, 2)


def _output_rows(grad_out: torch.Tensor) -> torch.Tensor:
    """The output gradient as (B*L, cout) rows: a view of a channels_last gradient."""
    return grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1])


def _windows_nhwc(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, ...], padding: tuple[int, ...],
                  dilation: tuple[int, ...]) -> torch.Tensor:
    """im2col with the columns ordered (kh, kw, cin): (B*L, kh*kw*cin), read from a channels_last copy of the
    padded input through one strided view and one copy. `F.unfold` then a permute copied the columns three
    times (unfold, its contiguous input, the permute): 62.7 -> 50.9 ms for ResNet-12's 1024 -> 1024 3x3 on
    4x4 maps at batch 64 in bf16, 154 -> 137 ms in fp32, the same bits (Zen 4)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    padded = F.pad(x, (pw, pw, ph, ph)).contiguous(memory_format=torch.channels_last)
    batch, cin, height, width = padded.shape
    out_h, out_w = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    step_b, step_c, step_h, step_w = padded.stride()
    windows = padded.as_strided((batch, out_h, out_w, kh, kw, cin),
                                (step_b, step_h * sh, step_w * sw, step_h * dh, step_w * dw, step_c),
                                padded.storage_offset())
    return windows.reshape(batch * out_h * out_w, kh * kw * cin)


def _onednn_grads(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, geometry: tuple,
                  mask: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    stride, padding, dilation = geometry
    grad_in, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, stride, padding, dilation, False, (0, 0), 1, (mask[0], mask[1], False))
    return grad_in, grad_w


class _Conv2dFn(torch.autograd.Function):
    """F.conv2d (groups 1) whose weight gradient takes the rule's way for its shape."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: tuple,
                report: tuple[str, set[str]]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.has_bias, ctx.report = geometry, bias is not None, report
        stride, padding, dilation = geometry
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        need_in, need_w, need_b = ctx.needs_input_grad[:3]
        unfold = need_w and unfold_wins(weight.shape, grad_out.shape[2] * grad_out.shape[3])
        grad_in, grad_w = _onednn_grads(x, grad_out, weight, ctx.geometry, (need_in, need_w and not unfold))
        if unfold:
            grad_w = weight_grad_by_unfold(x, grad_out, weight, *ctx.geometry)
            name, unfolded = ctx.report
            unfolded.add(name)
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias and need_b else None
        return grad_in, grad_w, grad_b, None, None


def wrappable(module: nn.Module) -> bool:
    """A plain convolution: nn.Conv2d or a subclass with its forward (airbench's 3x3 convs), groups 1, zero
    padding given as numbers."""
    return (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward and module.groups == 1
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))


@dataclass
class Wrapped:
    """What `unfold_conv_grads` did: how many convolutions it wrapped, and the names of those whose weight
    gradient went by unfold."""

    convs: int = 0
    unfolded: set[str] = field(default_factory=set)
    as_matmul: set[str] = field(default_factory=set)  # one-pixel outputs computed as one matmul
    winograd: set[str] = field(default_factory=set)  # wide 3x3 layers computed by benchmark.winograd


def one_pixel_taps(conv: nn.Conv2d, height: int, width: int) -> tuple[slice, slice] | None:
    """The kernel taps that meet a `height` x `width` input where `conv` gives a one-pixel output whose window
    holds the whole input (every other tap meets zero padding); None for any other shape."""
    (kh, kw), (ph, pw), (sh, sw) = conv.kernel_size, conv.padding, conv.stride
    one_pixel = (height + 2 * ph - kh) // sh == 0 and (width + 2 * pw - kw) // sw == 0
    if conv.dilation != (1, 1) or not one_pixel or height + ph > kh or width + pw > kw:
        return None
    return slice(ph, ph + height), slice(pw, pw + width)


def _as_matmul(conv: nn.Conv2d, x: torch.Tensor, taps: tuple[slice, slice]) -> torch.Tensor:
    # on a 1x1 map reshape is a view in either layout; autocast casts only the taps used, as it would for conv2d
    weight = conv.weight[:, :, taps[0], taps[1]].reshape(conv.out_channels, -1)
    return F.linear(x.reshape(len(x), -1), weight, conv.bias).view(len(x), -1, 1, 1)


def _forward(conv: nn.Conv2d, name: str, wrapped: Wrapped, x: torch.Tensor) -> torch.Tensor:
    taps = one_pixel_taps(conv, x.shape[-2], x.shape[-1])
    if taps is not None:
        wrapped.as_matmul.add(name)
        return _as_matmul(conv, x, taps)
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else conv.weight.dtype
    if winograd_fits(conv, x, dtype):
        wrapped.winograd.add(name)
        with torch.autocast(device, enabled=False):  # its own casts, as below
            return conv3x3(x, conv.weight, conv.bias, dtype)
    geometry, report = (conv.stride, conv.padding, conv.dilation), (name, wrapped.unfolded)
    if not torch.is_autocast_enabled(device):
        return _Conv2dFn.apply(x, conv.weight, conv.bias, geometry, report)
    # cast as autocast would for F.conv2d, outside the Function: the casts' own backward then hands the fp32
    # parameters their gradients, so a layer left to oneDNN steps exactly as it does unwrapped
    bias = None if conv.bias is None else conv.bias.to(dtype)
    with torch.autocast(device, enabled=False):
        return _Conv2dFn.apply(x.to(dtype), conv.weight.to(dtype), bias, geometry, report)


@contextmanager
def unfold_conv_grads(model: nn.Module) -> Iterator[Wrapped]:
    """Within the block, `model`'s plain convolutions take the faster weight gradient for their shape (see
    the module docstring). On exit they are the architecture's own modules again."""
    convs = [(name, m) for name, m in model.named_modules() if wrappable(m)]
    wrapped = Wrapped(convs=len(convs))
    try:
        for name, conv in convs:  # an instance attribute: popping it restores the class's forward
            conv.forward = functools.partial(_forward, conv, name, wrapped)
        yield wrapped
    finally:
        for _, conv in convs:
            conv.__dict__.pop("forward", None)
