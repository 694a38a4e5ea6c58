"""3x3 convolutions by Winograd vs the engine's direct path, for every 3x3 shape of the zoo.

    python tests/perf/perf_winograd.py --threads 2 [--models resnet12-aug net003-norm] [--precision bf16]

For each zoo entry (one per architecture; fine-tunes at 64 px, as perf_train_speed trains them), every plain
3x3 convolution with stride 1 and padding 1 (`winograd.computable`), at the recipe's batch size, channels_last, in fp32
or under bf16 autocast as `fit` runs it: the best of 3 timings of one training step of that layer alone
(forward and backward, with the gradients the network's step needs) by the engine's direct path (oneDNN, with
`benchmark.convgrad`'s weight gradients) and by `benchmark.winograd`, their ratio, the way
`winograd.winograd_fits` takes, and whether that is the faster one on this host (`ok`, or `MISS` with the time
it costs). Each entry's line sums its step's 3x3 layers by the direct path alone, by the rule and by the best
of both. Not a CI test: a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import functools
from unittest import mock

import torch
from perf_train_speed import MODELS, _network
from perfkit import RuleSurvey, best_ms, conv_calls, train_conv
from torch import nn

import zoo
from benchmark import convgrad
from benchmark.cpumemory import keep_freed_memory
from benchmark.machine import host_line
from benchmark.winograd import computable, winograd_fits


def layer_ms(conv: nn.Conv2d, x: torch.Tensor, precision: str, winograd: bool) -> float:
    """One training step of `conv` alone on `x` as `fit` runs it (benchmark.convgrad's wrapper, its input gradient
    only where `x` requires one), with the Winograd rule forced on or off, in ms."""
    with mock.patch.object(convgrad, "winograd_fits", return_value=winograd), convgrad.unfold_conv_grads(conv):
        return best_ms(functools.partial(train_conv, conv, x, precision))


def survey(name: str, survey_: RuleSurvey, precision: str) -> None:
    entry = zoo.get_entry(name)
    batch, dtype = entry.recipe.batch_size, torch.bfloat16 if precision == "bf16" else torch.float32
    for conv, in_shape, _, needs_grad in conv_calls(_network(entry), min(entry.recipe.input_size, 64)):
        conv = conv.to(memory_format=torch.channels_last)
        x = torch.randn(batch, *in_shape[1:]).contiguous(memory_format=torch.channels_last).requires_grad_(needs_grad)
        one_pixel = convgrad.one_pixel_taps(conv, *in_shape[2:]) is not None  # one matmul, before any rule
        if not convgrad.wrappable(conv) or not computable(conv, x) or one_pixel:
            continue
        label = f"{name:<20} B{batch:<4} {conv.in_channels:>4}->{conv.out_channels:<4} {in_shape[2]}x{in_shape[3]} px"
        survey_.layer((batch, tuple(conv.weight.shape), tuple(in_shape[1:]), needs_grad), label,
                      lambda: (layer_ms(conv, x, precision, False), layer_ms(conv, x, precision, True)),  # noqa: B023
                      winograd_fits(conv, x, dtype))
    survey_.network(name, "its 3x3 layers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[m for m, _, _ in MODELS])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as fit does: without it every large temporary is a fresh, page-faulting mmap
    print(f"machine: {host_line()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}, "
          "channels_last")
    survey_ = RuleSurvey("direct", "Winograd")
    for name in args.models:
        survey(name, survey_, args.precision)


if __name__ == "__main__":
    main()
