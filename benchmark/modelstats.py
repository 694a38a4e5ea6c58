"""Model statistics for the leaderboard: parameter count and FLOPs per image.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` on one image in eval mode: it counts a
multiply-add as 2 FLOPs and covers matmul, convolution, attention and (decomposed) RNN cells; pure
element-wise work (activations, normalisation, pooling) is not counted, as in most papers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not); buffers such as BatchNorm statistics excluded."""
    from zoo.hub import num_parameters

    return num_parameters(model)


def flops_per_image(model: nn.Module, input_size: int = 32) -> int:
    """FLOPs of one forward pass on a single 3 x input_size x input_size image, eval mode, no grad."""
    from torch.utils.flop_counter import FlopCounterMode

    net = cpu_fp32_eval(model)
    image = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(image)
    return int(counter.get_total_flops())


def cpu_fp32_eval(model: nn.Module) -> nn.Module:
    """The model as an fp32, eval-mode CPU module: itself if it already is one, else a copy.

    A copy leaves the caller's model (on the GPU, in train mode, in bf16) as it was.
    """
    model = _unwrap(model)
    tensors = [*model.parameters(), *model.buffers()]
    on_cpu_fp32 = all(t.device.type == "cpu" and t.dtype != torch.bfloat16 and t.dtype != torch.float16
                      for t in tensors)
    if on_cpu_fp32 and not model.training:
        return model
    return copy.deepcopy(model).cpu().float().eval()


def _unwrap(model: nn.Module) -> nn.Module:
    """The eager module behind a `torch.compile` wrapper (exports and counters need the original)."""
    return getattr(model, "_orig_mod", model)
