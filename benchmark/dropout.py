"""Dropout with cheap masks on the CPU: 16 random bits per element, drawn 64 at a time.

On the CPU torch draws a dropout mask element by element from its serial Mersenne twister (`bernoulli_`):
6 ms for the 1.1 M attention weights of one vit-aug layer at batch 32 on a 2-core host, 60x the layer's
elementwise work, and `F.dropout` (mask, divide, multiply) 10 ms. In vit-aug's bf16 training step the masks
were 47 % of the time (torch.profiler; the SDPA path draws its attention-dropout mask the same way).

`FastDropout` draws one 64-bit word per four elements and keeps an element when its 16 bits clear a
threshold: the same independent keep-with-probability 1 - p rule, with p rounded to a multiple of 1/65,536
(0.1 becomes 0.100006), and the same 1 / (1 - p) scaling of what is kept; 1.7 ms for that layer. The
masks come from torch's default generator, so a seeded run is reproducible and a resumed one continues
its random stream.

`fast_dropout(model)` is a context manager for a training loop on the CPU: it swaps the model's
`nn.Dropout` modules for `FastDropout` (same p) and turns timm's fused attention off where the attention
has dropout (the unfused path applies `attn_drop`, now a `FastDropout`, to the same softmax weights), and
restores both on exit, so the trained model is the architecture's own modules again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

BITS = 16
LEVELS = 1 << BITS


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """A tensor of 0 and 1 / (1 - p') in `dtype`: each element kept independently with probability 1 - p',
    p' = round(p * 65536) / 65536."""
    n = math.prod(shape)
    # the full 64-bit range (plain `random_()` leaves the sign bit 0, which would bias every fourth element)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)
    bits = words.view(torch.int16)[:n].view(shape)  # each uniform on [-32768, 32767]
    drop_levels = round(p * LEVELS)
    if drop_levels == 0:  # p' = 0 keeps everything (the words are still drawn: the random stream is the same)
        return torch.ones(shape, dtype=dtype, device=device)
    # keep where bits >= threshold: P(keep) = (65536 - drop_levels) / 65536. Clamping the int16 bits to
    # [threshold - 1, threshold] and subtracting threshold - 1 gives the 0/1 mask directly, in the bits' own two
    # bytes: no bool mask (torch's bool -> float copy is not vectorised on the CPU: 1.7 ms vs 0.15 ms for 1.1 M
    # elements, one AVX2 thread) and no fp32 pass (the int16 -> fp32 -> bf16 copies were 7.6 % of vit-aug's bf16
    # step on Zen 4). One conversion to `dtype`, then the scale, rounded to `dtype` as before.
    threshold = drop_levels - LEVELS // 2
    return bits.clamp(threshold - 1, threshold).sub_(threshold - 1).to(dtype).mul_(LEVELS / (LEVELS - drop_levels))


class FastDropout(nn.Dropout):
    """`nn.Dropout` whose mask costs a quarter of the random draws (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return x * 0
        return x * keep_mask(x.shape, self.p, x.dtype, x.device)


@contextmanager
def fast_dropout(model: nn.Module) -> Iterator[int]:
    """Within the block, `model`'s dropout draws cheap masks (see the module docstring); yields how many
    modules were swapped. Only plain `nn.Dropout` with 0 < p < 1 is swapped (not Dropout2d and kin)."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    unfused: list[nn.Module] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout and 0 < child.p < 1:
                swapped.append((parent, name, child))
        attn_drop = getattr(parent, "attn_drop", None)
        if getattr(parent, "fused_attn", False) and isinstance(attn_drop, nn.Dropout) and attn_drop.p > 0:
            unfused.append(parent)
    try:
        for parent, name, child in swapped:
            setattr(parent, name, FastDropout(child.p).train(child.training))
        for attention in unfused:
            attention.fused_attn = False
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for attention in unfused:
            attention.fused_attn = True
