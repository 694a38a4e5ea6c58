"""Winograd convolutions for the CPU training step: 4x (fp32) or 2.25x (bf16) fewer multiplications on 3x3 layers.

On a CPU without AMX the zoo's widest networks are bound by their 3x3 convolutions: oneDNN's direct
convolution already runs them at the machine's peak multiply-add rate (resnet12-aug's fast step was 97 %
convolutions, net003-norm's 89 %, on a Zen 4 host in bf16, and the same in fp32 with AVX2 kernels), so no
layout or precision choice could make them faster. Fewer multiplications can. Lavin & Gray's minimal
filtering (Fast Algorithms for Convolutional Neural Networks, 2016), F(m x m, 3 x 3), computes each m x m block
of output from the (m + 2) x (m + 2) input tile around it with (m + 2)^2 products per input/output channel pair
instead of 9 m^2: the tile transformed by B^T d B, the filter by G g G^T, an element-wise product summed over
the input channels, which is (m + 2)^2 batched matmuls (tiles x cin by cin x cout), and the result transformed
back by A^T m A. F(2x2, 3x3) does 16 products for 36, F(4x4, 3x3) 36 for 144. The transforms are additions and
small multiples over tensors a few times the activation's size, so the trade pays where the channels are wide
and the matmuls dominate. This is what cuDNN does on a GPU; torch asks oneDNN for its direct algorithm on the
CPU, so here the transforms are torch's element-wise ops over strided views (no tile is copied) and the
products `torch.bmm`. One implementation serves both tile sizes: the three matrices drive it (`Tiles`).

The backward is the same algorithm transposed, written out rather than left to autograd: the output gradient
transformed by A, the input gradient a batched matmul with the transformed filters followed by the transpose of
the tile transform (overlapping tiles summed), and the filter gradient a batched matmul of the output gradient
with the transformed tiles kept from the forward, transformed back by G^T. All three matmuls have the reduced size.
Both directions go a chunk of images at a time (`_chunks`: about 32 MB of transformed tiles each), so that each
transform's passes read what the previous pass left in the last-level cache; the filter gradient is summed over
the chunks in a fixed order.

Which tiles: F(4x4, 3x3) where the products are fp32 (its transforms have coefficients up to 8 and sums of up to
36 terms: 2-3e-6 relative error against 1e-6 for the direct convolution, both against float64), F(2x2, 3x3)
under bf16 autocast, where the larger tiles' error was 4-5e-2 (F(2x2, 3x3): 7e-3, against 3e-3 for oneDNN's
bf16 convolution: the tiles' sums and the output transform's cancellations cost about a bit). The filter
transform runs in fp32 and is rounded once. Over a whole bf16 step the gradients' error grew 1.0-1.3x
(`tests/test_winograd.py`). Not bit-identical to a direct convolution; deterministic, so a resumed run is
bit-identical to an uninterrupted one.

The rule (`winograd_fits`), fixed so that a run gives the same numbers wherever it runs (as convgrad's), comes
from timing both ways, forward and backward, one layer at a time, on every 3x3 shape of the zoo at its recipe's
batch size (`tests/perf/perf_winograd.py`, which prints that survey and whether the rule takes the faster way on
the host it runs on). Zen 4, 2 threads, channels_last, against the engine's own path (oneDNN with
`benchmark.convgrad`'s weight gradients):

| layer (batch, cin -> cout, map) | bf16, F(2x2, 3x3) | fp32 with AVX2 kernels, F(4x4, 3x3) |
|---|---:|---:|
| resnet12-aug: 64, 1024 -> 1024, 4x4 | 124.4 -> 99.5 ms (1.25x) | 350.7 -> 147.8 ms (2.37x) |
| resnet12-aug: 64, 512 -> 512, 8x8 | 119.7 -> 81.3 ms (1.47x) | 278.3 -> 105.5 ms (2.64x) |
| resnet12-aug: 64, 128 -> 128, 32x32 | 135.0 -> 122.8 ms (1.10x) | 297.4 -> 174.5 ms (1.70x) |
| net003-norm: 60, 256 -> 512, 16x16 | 232.4 -> 154.2 ms (1.51x) | 523.2 -> 204.1 ms (2.56x) |
| net003-norm: 60, 64 -> 128, 16x16 | 16.7 -> 18.5 ms (0.90x: direct) | 33.2 -> 26.6 ms (1.25x) |
| airnet-fast: 2000, 256 -> 256, 7x7 | 734.2 -> 752.3 ms (0.98x: direct) | 1,603 -> 974 ms (1.65x) |
| airnet-fast: 2000, 64 -> 256, 15x15 | 996.5 -> 1,144.5 ms (0.87x: direct) | 1,903 -> 1,622 ms (1.17x) |
| cnn004-relu: 256, 128 -> 128, 8x8 | 33.6 -> 38.0 ms (0.88x: direct) | 84.9 -> 80.7 ms (1.05x) |
| resnet18-scratch: 128, 256 -> 256, 2x2 | 5.8 -> 8.0 ms (0.72x: direct) | 10.4 -> 19.7 ms (0.53x: direct) |

The two airnet-fast rows in fp32 are with the batch in chunks (`_chunks`); on the whole batch at once they read
1.27x and 0.85x (the survey before the change, 17 minutes earlier on the same VM).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def winograd_fits(conv: nn.Conv2d, x: torch.Tensor, dtype: torch.dtype) -> bool:
    """The rule (module docstring): True where `conv` on `x`, computed in `dtype`, runs by Winograd on this CPU
    path (F(2x2, 3x3) in bf16, F(4x4, 3x3) in fp32: `tiles_for`). The transforms cost per tile and channel, the
    products save per channel pair: narrow layers and small maps (few tiles per filter transform) lose."""
    if not computable(conv, x):
        return False
    cin, (h, w) = conv.in_channels, x.shape[2:]
    narrow, pixels = min(cin, conv.out_channels), h * w
    if tiles_for(dtype) is F2:  # odd maps lost here (airnet-fast's 7x7 and 3x3: 0.98x and 0.78x), and 8x8 maps
        # below 256 input channels (cnn004's 128 -> 128 at batch 256: 0.88-1.02x in four surveys)
        wide_enough = cin >= 512 or pixels >= 256 or (pixels >= 64 and cin >= 256)
        return h % 2 == 0 and w % 2 == 0 and narrow >= 128 and wide_enough
    # F(4x4, 3x3) saves more: 128 channels pay on any map of at least one 3x3 window (resnet18's 128 -> 128 on
    # 4x4: 1.13x, airnet's 256 -> 256 on 3x3: 1.30x; its 256 -> 256 on 2x2 lost, 0.57x), 64 input channels from
    # 8x8 where the output is wider (cnn004's 64 -> 128 on 8x8: 1.18x, airnet's 64 -> 256 on 15x15: 1.17x),
    # not 64 -> 64 (airnet's on 15x15: 0.92x, resnet18's on 8x8: 0.85x)
    return (narrow >= 128 and pixels >= 9) or (narrow >= 64 and conv.out_channels >= 128 and pixels >= 64)


def computable(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether `conv3x3` can compute `conv` on `x` at all: a 3x3 kernel, stride 1, padding 1, no dilation, groups
    1, on a channels_last map."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype,
            tiles: Tiles | None = None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` by Winograd, computed in `dtype` with `tiles` (default: the tiles for
    `dtype`, `tiles_for`); the filter transform runs in `weight`'s dtype and is rounded once. The output is
    channels_last. Gradients flow to all three."""
    tiles = tiles or tiles_for(dtype)
    y = _Winograd.apply(x.to(dtype), _FilterTransform.apply(weight, dtype, tiles), tiles)
    return y if bias is None else y + bias.to(dtype).view(1, -1, 1, 1)


@dataclass(frozen=True)
class Tiles:
    """Winograd F(m x m, 3 x 3): m x m outputs from each (m + 2) x (m + 2) input tile, tiles m apart. `bt`, `g`
    and `at` are B^T, G and A^T (Lavin & Gray, section 4)."""

    m: int
    bt: tuple[tuple[float, ...], ...]
    g: tuple[tuple[float, ...], ...]
    at: tuple[tuple[float, ...], ...]

    @property
    def size(self) -> int:  # alpha: the input tile's side, the number of products per tile side
        return self.m + 2


F2 = Tiles(2, bt=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
           g=((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
           at=((1, 1, 1, 0), (0, 1, -1, -1)))
F4 = Tiles(4, bt=((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
                  (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
           g=((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
              (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
           at=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)))


def tiles_for(dtype: torch.dtype) -> Tiles:
    """F(4x4, 3x3) where the products are fp32 (or wider), F(2x2, 3x3) in bf16 and fp16, whose 8 (11) bits of
    mantissa the larger tiles' transforms (coefficients up to 8, sums of up to 36 terms) would eat."""
    return F4 if torch.finfo(dtype).bits >= 32 else F2


# --- the transforms: linear maps along one axis of strided views, as element-wise ops (no tile copies) ---

def _combine(matrix: tuple[tuple[float, ...], ...], xs: list[torch.Tensor], out: Sequence[torch.Tensor]) -> None:
    """out[a] = sum_i matrix[a][i] * xs[i] for every row a of `matrix`."""
    for row, dest in zip(matrix, out, strict=True):
        _linear(row, xs, dest)


def _linear(row: tuple[float, ...], xs: list[torch.Tensor], out: torch.Tensor) -> None:
    """out = sum_i row[i] * xs[i], skipping zeros; a term of coefficient 1 first, so that the first two terms are
    one `add` (most rows of B^T and A^T are two terms)."""
    (c0, x0), *rest = sorted(((c, x) for c, x in zip(row, xs, strict=True) if c != 0), key=lambda t: t[0] != 1)
    if c0 == 1 and rest:
        (c1, x1), *rest = rest
        torch.add(x0, x1, alpha=c1, out=out)
    else:
        torch.mul(x0, c0, out=out)
    for c, x in rest:
        out.add_(x, alpha=c)


def _transposed(matrix: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(zip(*matrix, strict=True))


def _tile_counts(h: int, w: int, m: int) -> tuple[int, int]:
    """Tiles down and across; a map that is no multiple of m gets a last row (column) of tiles partly outside
    it, computed on zero padding and cropped."""
    return -(-h // m), -(-w // m)


def _input_transform(x: torch.Tensor, tiles: Tiles, v: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W) -> V (alpha^2, N * tiles, C): B^T d B of every tile of the zero-padded map, written into `v`
    (alpha, alpha, N, tiles down, tiles across, C), a view of it returned."""
    (n, c, h, w), m, a = x.shape, tiles.m, tiles.size
    th, tw = _tile_counts(h, w, m)
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, m * tw + 1 - w, 1, m * th + 1 - h))  # (N, m th + 2, m tw + 2, C)
    rows = padded.new_empty(a, n, th, m * tw + 2, c)
    _combine(tiles.bt, [padded[:, i:i + m * th:m] for i in range(a)], rows)
    for r in range(a):
        _combine(tiles.bt, [rows[r, :, :, j:j + m * tw:m] for j in range(a)], v[r])
    return v.view(a * a, n * th * tw, c)


def _scatter(g: torch.Tensor, dim: int, length: int, tiles: Tiles, out: torch.Tensor | None = None) -> torch.Tensor:
    """The transpose of one axis of `_input_transform`: g (alpha, ...) holds the transformed taps of t tiles along
    `dim` (of g[0]); returns the gradient of the unpadded input along it (`length` positions). Tap i of tile t
    reads input position m t + i - 1 (padding 1): taps 1..m cover every position once and are written, taps 0
    and m + 1 overlap the neighbouring tiles and are added; positions in the padding are dropped. Into `out`
    where given."""
    m, t = tiles.m, g.shape[dim + 1]
    taps_t = _transposed(tiles.bt)  # row i: tap i's gradient as a combination of the alpha transformed taps
    if out is None:
        out = g.new_empty(*g.shape[1:dim + 1], length, *g.shape[dim + 2:])
    for i in (*range(1, m + 1), 0, m + 1):  # written before added to
        first_tile = 1 if i == 0 else 0  # tile 0's tap 0 reads the padding
        count = min(t, (length - i + m) // m) - first_tile  # tiles whose tap i reads inside the map
        if count <= 0:
            continue
        dest = torch.ops.aten.slice(out, dim, m * first_tile + i - 1, length, m).narrow(dim, 0, count)
        xs = [x.narrow(dim, first_tile, count) for x in g.unbind(0)]
        if 1 <= i <= m:
            _linear(taps_t[i], xs, dest)
        else:
            for c, x in zip(taps_t[i], xs, strict=True):
                if c != 0:
                    dest.add_(x, alpha=c)
    return out


def _input_transform_transposed(grad_v: torch.Tensor, tiles: Tiles, out: torch.Tensor) -> None:
    """The gradient of `_input_transform`: (alpha^2, N * tiles, C) -> `out` (N, H, W, C)."""
    a, (n, h, w, _) = tiles.size, out.shape
    g = grad_v.view(a, a, n, *_tile_counts(h, w, tiles.m), -1)
    rows = torch.stack([_scatter(g[r], 2, w, tiles) for r in range(a)])  # (alpha, N, th, W, C)
    _scatter(rows, 1, h, tiles, out)


def _output_transform(prod: torch.Tensor, tiles: Tiles, out: torch.Tensor) -> None:
    """M (alpha^2, N * tiles, K) -> `out` (N, tiles down, m, tiles across, m, K): A^T m A of every tile."""
    (n, th, m, tw, _, k), a = out.shape, tiles.size
    prod = prod.view(a, a, n, th, tw, k)
    rows = prod.new_empty(m, a, n, th, tw, k)
    _combine(tiles.at, list(prod.unbind(0)), rows)
    for p in range(m):  # out[:, :, p] seen as (q, N, th, tw, K)
        _combine(tiles.at, list(rows[p].unbind(0)), out[:, :, p].permute(3, 0, 1, 2, 4))


def _crop(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, m th, m tw, C) -> (N, C, H, W), channels_last: a view where the map fills the tiles, else a copy."""
    if y.shape[1:3] == (h, w):
        return y.permute(0, 3, 1, 2)
    return y[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _output_transform_transposed(grad_y: torch.Tensor, tiles: Tiles) -> torch.Tensor:
    """The gradient of `_output_transform`: (N, K, H, W) -> (alpha^2, N * tiles, K)."""
    (n, k, h, w), m, a = grad_y.shape, tiles.m, tiles.size
    th, tw = _tile_counts(h, w, m)
    g = grad_y.permute(0, 2, 3, 1)
    if (m * th, m * tw) != (h, w):  # the cropped outputs' gradient: zero
        g = F.pad(g, (0, 0, 0, m * tw - w, 0, m * th - h))
    g = g.reshape(n, th, m, tw, m, k)
    a_t = _transposed(tiles.at)
    rows = g.new_empty(a, n, th, tw, m, k)
    _combine(a_t, list(g.unbind(2)), rows)
    out = g.new_empty(a, a, n, th, tw, k)
    for r in range(a):
        _combine(a_t, list(rows[r].unbind(3)), out[r])
    return out.view(a * a, -1, k)


class _FilterTransform(torch.autograd.Function):
    """weight (K, C, 3, 3) -> U (alpha^2, K, C) in `dtype`: G g G^T of every filter, in the weight's dtype."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, dtype: torch.dtype, tiles: Tiles) -> torch.Tensor:
        (k, c), a = weight.shape[:2], tiles.size
        taps = weight.permute(0, 2, 3, 1)  # (K, 3, 3, C): a view of a channels_last weight
        rows = weight.new_empty(a, k, 3, c)
        _combine(tiles.g, list(taps.unbind(1)), rows)
        u = weight.new_empty(a, a, k, c)
        for r in range(a):
            _combine(tiles.g, list(rows[r].unbind(1)), u[r])
        ctx.weight_dtype, ctx.tiles = weight.dtype, tiles
        return u.view(a * a, k, c).to(dtype)

    @staticmethod
    def backward(ctx: Any, grad_u: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        tiles, (k, c) = ctx.tiles, grad_u.shape[1:]
        a, g_t = tiles.size, _transposed(tiles.g)
        g = grad_u.to(ctx.weight_dtype).view(a, a, k, c)
        rows = g.new_empty(a, k, 3, c)
        for r in range(a):  # rows[r] seen as (j, K, C)
            _combine(g_t, list(g[r].unbind(0)), rows[r].permute(1, 0, 2))
        grad_w = g.new_empty(k, 3, 3, c)
        _combine(g_t, list(rows.unbind(0)), grad_w.permute(1, 0, 2, 3))
        return grad_w.permute(0, 3, 1, 2), None, None  # (K, 3, 3, C) seen as (K, C, 3, 3)


CHUNK_BYTES = 32 << 20


def _chunks(n: int, bytes_per_image: int) -> list[slice]:
    """Images in near-equal chunks whose largest transformed tensor is about CHUNK_BYTES: the transforms are
    passes over tensors 2.25-9x the activation's size, and a chunk's stay in the last-level cache between the
    passes instead of going out to memory and back (airnet-fast's 64 -> 256 on 15x15 at batch 2,000, forward
    alone in fp32 with AVX2 kernels: 1,163 ms whole, 625-660 ms in chunks of 96-128 images). A function of the
    shapes only, so a run's sums are the same on every machine."""
    count = max(1, min(n, -(-n * bytes_per_image // CHUNK_BYTES)))
    size = -(-n // count)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class _Winograd(torch.autograd.Function):
    """y = conv(x, filters) from the transformed filters U (alpha^2, K, C), a chunk of images at a time
    (`_chunks`); keeps only what the backward needs (the transformed tiles for the filter gradient, U for the
    input gradient)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, u: torch.Tensor, tiles: Tiles) -> torch.Tensor:
        (n, c, h, w), k, m, a = x.shape, u.shape[1], tiles.m, tiles.size
        th, tw = _tile_counts(h, w, m)
        chunks = _chunks(n, a * a * th * tw * max(c, k) * x.element_size())
        keep = ctx.needs_input_grad[1]  # the filter gradient reads every chunk's tiles again; else one chunk's room
        v = x.new_empty(a, a, n if keep else chunks[0].stop, th, tw, c)
        y = x.new_empty(n, th, m, tw, m, k)
        for s in chunks:
            vs = v[:, :, s] if keep else v[:, :, :s.stop - s.start]
            _output_transform(torch.bmm(_input_transform(x[s], tiles, vs), u.transpose(1, 2)), tiles, y[s])
        ctx.save_for_backward(v if keep else None, u if ctx.needs_input_grad[0] else None)
        ctx.chunks, ctx.tiles, ctx.channels = chunks, tiles, c
        return _crop(y.view(n, m * th, m * tw, k), h, w)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        v, u = ctx.saved_tensors
        (n, _, h, w), a = grad_y.shape, ctx.tiles.size
        grad_x = grad_y.new_empty(n, h, w, ctx.channels) if u is not None else None
        grad_u = None
        for s in ctx.chunks:
            grad_m = _output_transform_transposed(grad_y[s], ctx.tiles)
            if grad_x is not None:
                _input_transform_transposed(torch.bmm(grad_m, u), ctx.tiles, grad_x[s])
            if v is not None:  # summed over the chunks in a fixed order
                vs = v[:, :, s].view(a * a, -1, ctx.channels)  # the chunk's tiles are contiguous
                grad_u = (torch.bmm(grad_m.transpose(1, 2), vs) if grad_u is None
                          else grad_u.baddbmm_(grad_m.transpose(1, 2), vs))
        return None if grad_x is None else grad_x.permute(0, 3, 1, 2), grad_u, None
