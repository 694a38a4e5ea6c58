"""Convolution weight gradients by unfold + one matmul where oneDNN's kernel is slow: small output maps, CPU.

On the CPU torch computes a convolution's weight gradient with oneDNN, whose kernel is built for large
feature maps. On a small one it is slow by an order of magnitude: ResNet-18 at 32 px (the ImageNet stem
leaves layer4 a 1x1 map) spent 144 ms of its 2-core fp32 step (batch 128) in the weight gradient of each
512 -> 512 3x3 convolution whose forward takes 6 ms, three of them 64 % of the whole step. The same gradient
as a matmul of the output gradient with the unfolded input (im2col: `F.unfold`, then one GEMM of
cout x (batch * pixels) by (batch * pixels) x (cin * kh * kw)) took 9 ms. On large maps it is the other way
round (tinyvgg's 128 -> 128 at 32 px: oneDNN 558 ms, unfold 1,819 ms), and between the two it depends on the
channels as much as on the map (AVX2 host, batch 128 or 64: 4x4 maps with 128 channels favour oneDNN 1.4x,
with 1,024 channels unfold 2.5x). So nothing is assumed: the first time a layer shape is seen, both ways are
timed on its real tensors (best of a few repeats, `fastpath.race`) and the faster kept, in a cache under
`$CIFARZOO_HOME/machine/` keyed like the precision probe's (CPU model and flags, torch version); a resumed
run on the same machine therefore makes the same choice and stays bit-identical. Only maps of at most
`MAX_PIXELS` output pixels are raced: on larger ones unfold never won and its im2col copy costs memory.

`unfold_conv_grads(model)` is a context manager for a training loop on the CPU in fp32: within it each
plain `nn.Conv2d` (groups 1, zero padding given as numbers) runs its forward through `_Conv2dFn`: the same
`F.conv2d` forward and input gradient as torch's, the weight gradient by whichever way won for its shape.
The weight gradients agree with oneDNN's to fp32 rounding (the sums are taken in another order), so a run
with it is not bit-identical to a run without. Not used under bf16 autocast (not measured: the AVX2 hosts
emulate bf16), on a GPU (cuDNN has its own algorithm search) or when compiled.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

MAX_PIXELS = 16  # output pixels (h * w) up to which the two ways are raced

_choices: dict[str, dict[str, Any]] = {}  # this process's view of the cache: shape key -> figures and choice


def weight_grad_by_unfold(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                          padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """d loss / d weight of `F.conv2d(x, weight, stride=, padding=, dilation=)` (groups 1), as im2col + GEMM,
    in `weight`'s memory layout."""
    cout, cin, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # B, cin*kh*kw, L
    g = grad_out.reshape(len(x), cout, -1).transpose(0, 1).reshape(cout, -1)  # cout, B*L
    if weight.is_contiguous() or cin == 1:
        return (g @ cols.transpose(1, 2).reshape(-1, cin * kh * kw)).view(cout, cin, kh, kw)
    # channels_last weights: order the columns (kh, kw, cin) so that the product is already in that layout;
    # transposing a 512x512x3x3 gradient afterwards took as long as computing it (9 ms, AVX2)
    cols = cols.view(len(x), cin, kh * kw, -1).permute(0, 3, 2, 1).reshape(-1, kh * kw * cin)
    return (g @ cols).view(cout, kh, kw, cin).permute(0, 3, 1, 2)


def _onednn_grads(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, geometry: tuple,
                  mask: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    stride, padding, dilation = geometry
    grad_in, grad_w, _ = torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, stride, padding, dilation, False, (0, 0), 1, (mask[0], mask[1], False))
    return grad_in, grad_w


class _Conv2dFn(torch.autograd.Function):
    """F.conv2d (groups 1) whose weight gradient takes the way chosen for its shape."""

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
        unfold = need_w and _unfold_wins(x, grad_out, weight, ctx.geometry)
        grad_in, grad_w = _onednn_grads(x, grad_out, weight, ctx.geometry, (need_in, need_w and not unfold))
        if unfold:
            grad_w = weight_grad_by_unfold(x, grad_out, weight, *ctx.geometry)
            name, unfolded = ctx.report
            unfolded.add(name)
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias and need_b else None
        return grad_in, grad_w, grad_b, None, None


def _shape_key(x: torch.Tensor, weight: torch.Tensor, geometry: tuple) -> str:
    layout = "cl" if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 else "nchw"
    return json.dumps([list(x.shape), list(weight.shape), [list(g) for g in geometry], str(x.dtype), layout])


def _unfold_wins(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, geometry: tuple) -> bool:
    if grad_out.shape[2] * grad_out.shape[3] > MAX_PIXELS:
        return False
    key = _shape_key(x, weight, geometry)
    if key not in _choices:
        _load()
    if key not in _choices:
        _choices[key] = _race_shape(x, grad_out, weight, geometry)
        _save()
    return bool(_choices[key]["unfold"])


def _race_shape(x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, geometry: tuple) -> dict[str, Any]:
    from benchmark.fastpath import race

    ms = race({"onednn": lambda: _onednn_grads(x, grad_out, weight, geometry, (False, True)),
                "unfold": lambda: weight_grad_by_unfold(x, grad_out, weight, *geometry)})
    return {"onednn_ms": round(ms["onednn"], 3), "unfold_ms": round(ms["unfold"], 3),
            "unfold": ms["unfold"] < ms["onednn"]}


def cache_path() -> Path:
    from benchmark.fastpath import cache_key
    from zoo.weights import home

    return home() / "machine" / f"convgrad-{cache_key('cpu')}.json"


def _load() -> None:
    path = cache_path()
    try:
        cached = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        log.warning("conv-gradient cache %s is unreadable; shapes are timed again", path)
        cached = {}
    if isinstance(cached, dict):
        _choices.update({k: v for k, v in cached.items() if isinstance(v, dict) and "unfold" in v})


def _save() -> None:
    from zoo.files import write_atomic

    path = cache_path()
    try:
        _load()  # another process may have added shapes since
        write_atomic(path, json.dumps(_choices, indent=1, sort_keys=True) + "\n")
    except Exception as err:  # an unwritable home only costs a race in the next process
        log.warning("could not cache conv-gradient choices in %s: %s", path, err)


def _eligible(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


@dataclass
class Wrapped:
    """What `unfold_conv_grads` did: how many convolutions it wrapped, and the names of those whose weight
    gradient went by unfold (their shape raced faster that way)."""

    convs: int = 0
    unfolded: set[str] = field(default_factory=set)


def _forward(conv: nn.Conv2d, name: str, wrapped: Wrapped, x: torch.Tensor) -> torch.Tensor:
    return _Conv2dFn.apply(x, conv.weight, conv.bias, (conv.stride, conv.padding, conv.dilation),
                           (name, wrapped.unfolded))


@contextmanager
def unfold_conv_grads(model: nn.Module) -> Iterator[Wrapped]:
    """Within the block, `model`'s plain convolutions take the faster weight gradient for their shape (see
    the module docstring). On exit they are the architecture's own modules again."""
    convs = [(name, m) for name, m in model.named_modules() if _eligible(m)]
    wrapped = Wrapped(convs=len(convs))
    try:
        for name, conv in convs:  # an instance attribute: popping it restores the class's forward
            conv.forward = functools.partial(_forward, conv, name, wrapped)
        yield wrapped
    finally:
        for _, conv in convs:
            conv.__dict__.pop("forward", None)
