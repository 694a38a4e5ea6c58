"""Winograd F(2x2, 3x3) convolutions for the CPU training step: 2.25x fewer multiplications on wide layers.

On a CPU without AMX the zoo's widest networks are bound by their 3x3 convolutions: oneDNN's direct
convolution already runs them at the machine's peak multiply-add rate (resnet12-aug's fast step was 97 %
convolutions, net003-norm's 89 %, on a Zen 4 host in bf16, and the same in fp32 with AVX2 kernels), so no
layout or precision choice could make them faster. Fewer multiplications can. Lavin & Gray's minimal
filtering (Fast Algorithms for Convolutional Neural Networks, 2016) computes each 2x2 block of output from
the 4x4 input tile around it as 16 products per input/output channel pair instead of 36: the tile
transformed by B^T d B, the filter by G g G^T, an element-wise product summed over the input channels,
which is 16 batched matmuls (tiles x cin by cin x cout), and the result transformed back by A^T m A. The
transforms are additions (and halvings, on the filter) over tensors a few times the activation's size, so
the trade pays where the channels are wide and the matmuls dominate. This is what cuDNN does on a GPU;
oneDNN dropped its Winograd kernels (v3.0), so here the transforms are torch's element-wise ops and the
products `torch.bmm`.

The backward is the same algorithm transposed: the output gradient transformed by A, the input gradient a
batched matmul with the transformed filters followed by the transpose of the tile transform (overlapping
tiles summed), and the filter gradient a batched matmul of the output gradient with the transformed tiles
kept from the forward, transformed back by G^T. All three matmuls have the reduced size.

Measured forward + backward against the engine's own path (oneDNN, with `benchmark.convgrad`'s weight
gradients), one layer at a time, 2 threads, channels_last (`tests/perf/perf_winograd.py` prints this survey
for every 3x3 shape of the zoo and whether the rule picks the faster way on the host it runs on):

| layer (batch, cin -> cout, map) | Zen 4, bf16 | Zen 4 with AVX2 kernels, fp32 |
|---|---:|---:|
| 64, 1024 -> 1024, 4x4 (resnet12-aug) | 149 -> 101 ms (1.49x) | 404 -> 177 ms (2.28x) |
| 64, 512 -> 512, 8x8 (resnet12-aug) | 125 -> 87 ms (1.44x) | 311 -> 165 ms (1.89x) |
| 60, 256 -> 512, 16x16 (net003-norm) | 234 -> 166 ms (1.41x) | 542 -> 326 ms (1.66x) |
| 64, 128 -> 128, 32x32 (resnet12-aug) | 136 -> 130 ms (1.05x) | 305 -> 254 ms (1.20x) |
| 60, 64 -> 128, 16x16 (net003-norm) | 17 -> 23 ms (0.75x) | 36 -> 37 ms (0.96x) |

The rule, fixed so that a run gives the same numbers wherever it runs (as convgrad's): a plain 3x3
convolution with stride 1, padding 1 and no dilation, on an even-sized channels_last map, with at least
`MIN_CHANNELS` input and output channels. Narrower layers lose (the transforms are not paid back).

Accuracy: fp32 results differ from a direct convolution's by about 1e-6 relative (the sums are taken in
another order). Under bf16 autocast the transformed tiles and products are rounded to bf16 as a direct
convolution's inputs are, and the output's relative error is about 7e-3 against 2e-3 for oneDNN's bf16
convolution (both measured against fp32): the filter transform runs in fp32 and is rounded once, but the
tiles' sums and the output transform's cancellations cost about two bits. Not bit-identical to a direct
convolution; deterministic, so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 128  # input and output channels below which the transforms cost more than the products save
MIN_PIXELS = 64  # on smaller maps (fewer tiles per image) only layers of at least WIDE_CHANNELS inputs win
WIDE_CHANNELS = 512


def winograd_fits(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """The rule (module docstring): True where `conv` on `x` runs as Winograd F(2x2, 3x3) on this CPU path."""
    if not computable(conv, x) or min(conv.in_channels, conv.out_channels) < MIN_CHANNELS:
        return False
    h, w = x.shape[2:]
    return h % 2 == 0 and w % 2 == 0 and (h * w >= MIN_PIXELS or conv.in_channels >= WIDE_CHANNELS)


def computable(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether `conv3x3` can compute `conv` on `x` at all: a 3x3 kernel, stride 1, padding 1, no dilation, groups
    1, on a channels_last map."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` by Winograd F(2x2, 3x3), computed in `dtype` (the filter transform
    in `weight`'s dtype, rounded once); the output is channels_last. Gradients flow to all three."""
    y = _Winograd.apply(x.to(dtype), _FilterTransform.apply(weight, dtype))
    return y if bias is None else y + bias.to(dtype).view(1, -1, 1, 1)


# --- the three transforms, each written as element-wise ops over strided views (no tile copies) ---------

def _bt(d0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor, out: torch.Tensor) -> None:
    """B^T along one axis: the four taps of every tile (views) into out[0..3]."""
    torch.sub(d0, d2, out=out[0])
    torch.add(d1, d2, out=out[1])
    torch.sub(d2, d1, out=out[2])
    torch.sub(d1, d3, out=out[3])


def _bt_transposed(g: torch.Tensor, dim: int) -> torch.Tensor:
    """The transpose of `_bt` over tiles of stride 2 along `dim`, cropped to the unpadded input: `g` holds the
    four transformed taps (g[0..3]) of `t` tiles along `dim`; the result has 2t positions there. Input 2m is tap
    1 of tile m and tap 3 of tile m - 1; input 2m + 1 is tap 2 of tile m and tap 0 of tile m + 1."""
    g0, g1, g2, g3 = g.unbind(0)
    t = g0.shape[dim]
    out = g0.new_empty(*g0.shape[:dim + 1], 2, *g0.shape[dim + 1:])
    even, odd = out.select(dim + 1, 0), out.select(dim + 1, 1)
    torch.add(g1 - g2, g3, out=even)  # tap 1 = g1 - g2 + g3
    even.narrow(dim, 1, t - 1).sub_(g3.narrow(dim, 0, t - 1))  # tap 3 = -g3
    torch.sub(g1 + g2, g0, out=odd)  # tap 2 = g1 + g2 - g0
    odd.narrow(dim, 0, t - 1).add_(g0.narrow(dim, 1, t - 1))  # tap 0 = g0
    return out.flatten(dim, dim + 1)


def _tiles(h: int, w: int) -> tuple[int, int]:
    """Tiles down and across: 2x2 outputs each; an odd map gets a last row (column) of tiles half outside it,
    computed on zero padding and cropped."""
    return (h + 1) // 2, (w + 1) // 2


def _input_transform(x: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) -> V (16, N * tiles, C): B^T d B of every 4x4 tile (stride 2) of the zero-padded map."""
    n, c, h, w = x.shape
    th, tw = _tiles(h, w)
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + w % 2, 1, 1 + h % 2))  # (N, 2th + 2, 2tw + 2, C)
    rows = padded.new_empty(4, n, th, 2 * tw + 2, c)
    _bt(*(padded[:, i:i + 2 * th:2] for i in range(4)), out=rows)
    tiles = padded.new_empty(4, 4, n, th, tw, c)
    for a in range(4):
        _bt(*(rows[a, :, :, j:j + 2 * tw:2] for j in range(4)), out=tiles[a])
    return tiles.view(16, n * th * tw, c)


def _input_transform_transposed(grad_v: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """The gradient of `_input_transform`: (16, N * tiles, C) -> (N, C, H, W), channels_last."""
    g = grad_v.view(4, 4, n, *_tiles(h, w), -1)
    rows = torch.stack([_bt_transposed(g[a], 2) for a in range(4)])  # (4, N, th, 2tw, C)
    return _crop(_bt_transposed(rows, 1), h, w)


def _crop(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, 2th, 2tw, C) -> (N, C, H, W), channels_last: a view where the map is even, a copy where it is odd."""
    if y.shape[1:3] == (h, w):
        return y.permute(0, 3, 1, 2)
    return y[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _output_transform(m: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """M (16, N * tiles, K) -> y (N, K, H, W), channels_last: A^T m A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    th, tw = _tiles(h, w)
    m = m.view(4, 4, n, th, tw, -1)
    out = m.new_empty(n, th, 2, tw, 2, m.shape[-1])
    for p, s in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):
        torch.add(s[0] + s[1], s[2], out=out[:, :, p, :, 0])
        torch.sub(s[1] - s[2], s[3], out=out[:, :, p, :, 1])
    return _crop(out.view(n, 2 * th, 2 * tw, -1), h, w)


def _output_transform_transposed(grad_y: torch.Tensor) -> torch.Tensor:
    """The gradient of `_output_transform`: (N, K, H, W) -> (16, N * tiles, K)."""
    n, k, h, w = grad_y.shape
    (th, tw), g = _tiles(h, w), grad_y.permute(0, 2, 3, 1)
    if h % 2 or w % 2:  # the cropped outputs' gradient is zero
        g = F.pad(g, (0, 0, 0, w % 2, 0, h % 2))
    g = g.reshape(n, th, 2, tw, 2, k)
    out = g.new_empty(4, 4, n, th, tw, k)
    for a, r in enumerate(_a_transposed(g[:, :, 0], g[:, :, 1])):
        q0, q1 = r[:, :, :, 0], r[:, :, :, 1]
        out[a, 0].copy_(q0)
        torch.add(q0, q1, out=out[a, 1])
        torch.sub(q0, q1, out=out[a, 2])
        torch.neg(q1, out=out[a, 3])
    return out.view(16, -1, k)


def _a_transposed(g0: torch.Tensor, g1: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return g0, g0 + g1, g0 - g1, -g1


def _g(w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, out: torch.Tensor) -> None:
    """G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] along one axis, into out[0..3] (any dtype:
    computed in the inputs' dtype and rounded once on the way out)."""
    ends = w0 + w2
    out[0].copy_(w0)
    out[1].copy_((ends + w1).mul_(0.5))
    out[2].copy_((ends - w1).mul_(0.5))
    out[3].copy_(w2)


def _g_transposed(g: torch.Tensor, dim: int) -> torch.Tensor:
    """The transpose of `_g`: four taps g[0..3] -> three, stacked along `dim`."""
    g0, g1, g2, g3 = g.unbind(0)
    half = 0.5 * (g1 + g2)
    return torch.stack((g0 + half, 0.5 * (g1 - g2), g3 + half), dim)


class _FilterTransform(torch.autograd.Function):
    """weight (K, C, 3, 3) -> U (16, K, C) in `dtype`: G g G^T for every filter."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        k, c = weight.shape[:2]
        taps = weight.permute(0, 2, 3, 1)  # (K, 3, 3, C): a view of a channels_last weight
        rows = weight.new_empty(4, k, 3, c)
        _g(taps[:, 0], taps[:, 1], taps[:, 2], rows)
        u = weight.new_empty(4, 4, k, c, dtype=dtype)
        for a in range(4):
            _g(rows[a, :, 0], rows[a, :, 1], rows[a, :, 2], u[a])
        ctx.weight_dtype = weight.dtype
        return u.view(16, k, c)

    @staticmethod
    def backward(ctx: Any, grad_u: torch.Tensor) -> tuple[torch.Tensor, None]:
        k, c = grad_u.shape[1:]
        g = grad_u.to(ctx.weight_dtype).view(4, 4, k, c)
        rows = torch.stack([_g_transposed(g[a], 1) for a in range(4)])  # (4, K, 3, C)
        return _g_transposed(rows, 1).permute(0, 3, 1, 2), None  # (K, 3, 3, C) seen as (K, C, 3, 3)


class _Winograd(torch.autograd.Function):
    """y = conv(x, filters) from the transformed filters U (16, K, C); keeps only what the backward needs (the
    transformed tiles for the filter gradient, U for the input gradient)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        v = _input_transform(x)
        ctx.save_for_backward(v if ctx.needs_input_grad[1] else None, u if ctx.needs_input_grad[0] else None)
        ctx.shape = (n, h, w)
        return _output_transform(torch.bmm(v, u.transpose(1, 2)), n, h, w)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        v, u = ctx.saved_tensors
        grad_m = _output_transform_transposed(grad_y)
        grad_x = _input_transform_transposed(torch.bmm(grad_m, u), *ctx.shape) if u is not None else None
        grad_u = torch.bmm(grad_m.transpose(1, 2), v) if v is not None else None
        return grad_x, grad_u
