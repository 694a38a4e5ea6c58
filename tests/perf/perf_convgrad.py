"""Convolution weight gradients, oneDNN vs unfold + GEMM, for every convolution shape of the zoo.

    python tests/perf/perf_convgrad.py --threads 2 [--models resnet18-scratch resnet12-aug] [--dtype bfloat16]

For each zoo entry (one per architecture; fine-tunes at 64 px, as perf_train_speed trains them), every
plain convolution (groups 1) at the recipe's batch size, channels_last, fp32 (or `--dtype bfloat16`, the
tensors autocast would hand the kernels on a bf16 host): the best of 3 timings of
torch's weight gradient (`aten.convolution_backward`, oneDNN) and of `benchmark.convgrad`'s unfold + GEMM,
their ratio, the way `convgrad.unfold_wins` takes, and whether that is the faster one on this host (`ok`,
or `MISS` with the time it costs). Each entry's line sums its step's weight-gradient time by oneDNN alone,
by the rule and by the best of both. Not a CI test: a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse

import torch
from perf_train_speed import MODELS, _network
from perfkit import RuleSurvey, best_ms, conv_calls
from torch import nn

import zoo
from benchmark.convgrad import unfold_wins, weight_grad_by_unfold, wrappable
from benchmark.machine import host_line


def conv_shapes(name: str) -> tuple[int, list[tuple[nn.Conv2d, torch.Size, torch.Size]]]:
    """The entry's batch size and its plain convolutions (groups 1, numeric padding) with their shapes."""
    entry = zoo.get_entry(name)
    calls = conv_calls(_network(entry), min(entry.recipe.input_size, 64))
    return entry.recipe.batch_size, [(m, i, o) for m, i, o, _ in calls if wrappable(m)]


def time_both(conv: nn.Conv2d, batch: int, in_shape: torch.Size, out_shape: torch.Size,
              dtype: torch.dtype) -> tuple[float, float]:
    """Milliseconds of the weight gradient by oneDNN and by unfold + GEMM (channels_last, `dtype`)."""
    cl, geometry = torch.channels_last, (conv.stride, conv.padding, conv.dilation)
    x = torch.randn(batch, *in_shape[1:], dtype=dtype).contiguous(memory_format=cl)
    w = conv.weight.detach().to(dtype).contiguous(memory_format=cl)
    g = torch.randn(batch, *out_shape[1:], dtype=dtype).contiguous(memory_format=cl)
    onednn = best_ms(lambda: torch.ops.aten.convolution_backward(
        g, x, w, None, *geometry, False, (0, 0), 1, (False, True, False)))
    return onednn, best_ms(lambda: weight_grad_by_unfold(x, g, w, *geometry))


def survey(name: str, survey_: RuleSurvey, dtype: torch.dtype) -> None:
    batch, shapes = conv_shapes(name)
    for conv, in_shape, out_shape in shapes:
        geometry = (conv.stride, conv.padding, conv.dilation)
        label = (f"{name:<20} B{batch:<4} {conv.in_channels:>4}->{conv.out_channels:<4} k{conv.kernel_size[0]}"
                 f"x{conv.kernel_size[1]} s{conv.stride[0]} {out_shape[2]}x{out_shape[3]} px")
        survey_.layer((batch, tuple(conv.weight.shape), tuple(in_shape[1:]), geometry), label,
                      lambda: time_both(conv, batch, in_shape, out_shape, dtype),  # noqa: B023
                      unfold_wins(conv.weight.shape, out_shape[2] * out_shape[3]))
    survey_.network(name, "weight gradients")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[m for m, _, _ in MODELS])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {host_line()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
          "channels_last")
    survey_ = RuleSurvey("oneDNN", "unfold")
    for name in args.models:
        survey(name, survey_, getattr(torch, args.dtype))


if __name__ == "__main__":
    main()
