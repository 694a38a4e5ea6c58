"""Fused attention in fp32 under bf16 autocast on the CPU.

torch's CPU flash-attention kernel (`F.scaled_dot_product_attention`) runs slower in bf16 than in fp32 on the
AVX512-BF16 hosts measured (AMD EPYC Zen 4, 2026-12-05, forward + backward, 2 threads, best of 3): vit002's
shape (batch 128, 20 heads, 257 tokens, head dim 16) 0.91 s in bf16 against 0.52 s in fp32; (128, 8, 65, 8)
0.105 vs 0.031 s; (64, 3, 65, 64) 0.041 vs 0.019 s; (32, 12, 197, 64) 0.178 vs 0.139 s. Its blocked GEMMs are
as deep as the head dimension, too shallow for the bf16 dot-product instructions to pay for their packing.
So while `fit` trains in bf16 on the CPU, `fp32_attention(model)` runs every fused attention call in fp32
(the inputs upcast, autocast off for the call, the output cast back to the inputs' dtype): the rest of the
step stays bf16, and the attention itself is computed more exactly, not less. Only models with a module that
takes the fused path (timm's `fused_attn`) are touched; the mode is a `TorchFunctionMode`, scoped to the block.
An AMX host was not measured: there bf16 may win, and this rule would cost time, not correctness.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def _up(a: Any) -> Any:
    return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a


class _Fp32Attention(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        query = args[0] if args else kwargs.get("query")
        if func is not F.scaled_dot_product_attention or query.dtype != torch.bfloat16:
            return func(*args, **kwargs)
        # every floating input goes up, by position or keyword (a float attn_mask must match the query)
        with torch.autocast("cpu", enabled=False):
            out = func(*map(_up, args), **{k: _up(v) for k, v in kwargs.items()})
        return out.to(torch.bfloat16)


def fused_attention_modules(model: nn.Module) -> int:
    """How many of `model`'s modules take timm's fused attention path now."""
    return sum(bool(getattr(m, "fused_attn", False)) for m in model.modules())


@contextmanager
def fp32_attention(model: nn.Module) -> Iterator[int]:
    """Within the block, fused attention runs in fp32 (module docstring); yields how many modules use it
    (0: nothing is changed)."""
    n = fused_attention_modules(model)
    if not n:
        yield 0
        return
    with _Fp32Attention():
        yield n
