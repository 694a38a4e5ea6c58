"""Pieces shared by the performance scripts: the machine's name and the classic per-image PIL pipeline
(the baseline that the device-resident loader and the fast training path are measured against)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


class PilDataset(torch.utils.data.Dataset):
    """The classic per-image pipeline: uint8 HWC array -> PIL image -> torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.numpy(), labels.numpy(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def accuracy(model: torch.nn.Module, loader, precision: str = "fp32", tta: str = "none") -> float:
    """Top-1 accuracy of `model` over a non-shuffled DeviceLoader (benchmark.evaluate.predict)."""
    from benchmark.evaluate import predict

    logits, labels = predict(model, loader, loader.device, precision, tta=tta)
    return (logits.argmax(1) == labels).float().mean().item()


def train_flops_per_image(model: torch.nn.Module, input_size: int = 32) -> float:
    """FLOPs of one training step per image: forward and backward on a batch of two, counted by
    FlopCounterMode on a copy (multiply-add = 2; element-wise work not counted, so this is the GEMM part)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).float().train()
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(2, 3, input_size, input_size)).float().sum().backward()
    return counter.get_total_flops() / 2


def peak_gflops(precision: str = "fp32", n: int = 2048, repeats: int = 8) -> float:
    """The best rate this machine's dense kernels reach at this precision, GFLOP/s: the faster of an n x n x n
    matmul and a 3x3 convolution (128 -> 128 channels, 32 x 32, channels_last, forward), best of `repeats` each
    (oneDNN's convolutions can beat the BLAS matmul). The ceiling on what any loop gets out of GEMM-bound work."""
    import time

    from benchmark.fastpath import autocast

    a, b = torch.randn(n, n), torch.randn(n, n)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(64, 128, 32, 32).contiguous(memory_format=torch.channels_last)
    kernels = [(lambda: a @ b, 2 * n**3), (lambda: conv(x), 2 * 64 * 32 * 32 * 128 * 128 * 9)]
    best_rate = 0.0
    with torch.no_grad(), autocast("cpu", precision):
        for kernel, flops in kernels:
            for _ in range(repeats):
                t0 = time.perf_counter()
                kernel()
                best_rate = max(best_rate, flops / (time.perf_counter() - t0))
    return best_rate / 1e9


def conv_step_ms(model: torch.nn.Module, batch: int, input_size: int, precision: str, channels_last: bool,
                 engine: bool = False, repeats: int = 3) -> float:
    """Milliseconds one training step of `model` spends in its convolutions alone: each `nn.Conv2d`, at the shape
    it sees in the network, forward and backward (the input, weight and bias gradients the step needs), with
    `precision` autocast and `channels_last` as a loop would run it, and with `engine` the way `fit` runs them
    on the CPU (benchmark.convgrad); best of `repeats` after a warm-up, summed. Timed one convolution at a time,
    so a floor: a step with all of its other work free would still take this long."""
    import copy
    import functools
    from contextlib import nullcontext

    from benchmark.convgrad import unfold_conv_grads

    layout = torch.channels_last if channels_last else torch.contiguous_format
    total = 0.0
    for conv, in_shape, _, needs_grad in conv_calls(model, input_size):
        conv = copy.deepcopy(conv).float().to(memory_format=layout)
        x = torch.randn(batch, *in_shape[1:]).contiguous(memory_format=layout).requires_grad_(needs_grad)
        with unfold_conv_grads(conv) if engine else nullcontext():
            total += best_ms(functools.partial(train_conv, conv, x, precision), repeats)
    return total


def conv_calls(model: torch.nn.Module, input_size: int) -> list[tuple[torch.nn.Conv2d, torch.Size, torch.Size, bool]]:
    """Every `nn.Conv2d` call (airbench's subclasses too) of one forward pass of a copy of `model` (eval mode) on
    a batch of two images: the copy's module, its input and output shapes, and whether the step needs its
    input's gradient (not the image's, nor below a fine-tune's frozen layers: autograd is on, so it says)."""
    import copy

    net, seen = copy.deepcopy(model).float().eval(), []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape, o.shape, i[0].requires_grad)))
             for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    net(torch.randn(2, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    return seen


def train_conv(conv: torch.nn.Conv2d, x: torch.Tensor, precision: str) -> None:
    from benchmark.fastpath import autocast

    with autocast("cpu", precision):
        out = conv(x)
    if out.requires_grad:  # a frozen layer on the image has no backward
        out.backward(torch.ones_like(out))


def best_ms(fn, repeats: int = 3) -> float:
    """The fastest of `repeats` calls of `fn` after one warm-up call (kernel selection, allocation), in ms."""
    import time

    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


class RuleSurvey:
    """Two ways of computing each layer of a network, timed, and whether a fixed rule takes the faster one (the
    surveys behind benchmark.convgrad's and benchmark.winograd's rules): one line per distinct layer shape, then
    the network's sum by the first way alone, by the rule and by the best of both."""

    def __init__(self, first: str, second: str) -> None:
        self.names, self.cache = (first, second), {}
        self.total = {"first": 0.0, "rule": 0.0, "best": 0.0}

    def layer(self, key: tuple, label: str, time_both, second_by_rule: bool) -> None:
        """Time a layer both ways (`time_both()`: ms the first way, ms the second) unless its `key` was seen."""
        if key not in self.cache:
            first, second = time_both()
            self.cache[key] = (first, second, second_by_rule)
            verdict = "ok" if second_by_rule == (second < first) else f"MISS ({abs(second - first):.1f} ms)"
            print(f"  {label}: {self.names[0]} {first:7.2f} ms, {self.names[1]} {second:7.2f} ms "
                  f"({first / second:5.2f}x)  rule: {self.names[second_by_rule]:<8} {verdict}", flush=True)
        first, second, by_rule = self.cache[key]
        self.total["first"] += first
        self.total["rule"] += second if by_rule else first
        self.total["best"] += min(first, second)

    def network(self, name: str, what: str) -> None:
        """Print `name`'s sums of `what` and start the next network's."""
        total = self.total
        print(f"{name}: {what} per step {total['first']:.1f} ms by {self.names[0]} alone, {total['rule']:.1f} ms by "
              f"the rule, {total['best']:.1f} ms by the best of both", flush=True)
        self.total = dict.fromkeys(total, 0.0)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON atomically (the leaderboard reads results/perf/*.json), creating the folder."""
    from zoo.files import write_atomic

    write_atomic(path, json.dumps(data, indent=1) + "\n")
