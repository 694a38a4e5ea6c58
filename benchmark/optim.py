"""Muon: orthogonalised momentum for convolution filters, SGD-Nesterov for everything else; and torch's Adam and
AdamW without their fused CPU kernel's copies of channels_last tensors (`_DenseViews`, at the end).

Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) replaces a filter bank's update
by the nearest semi-orthogonal matrix (all singular values ~1), found with a few Newton-Schulz
iterations, so every direction of the filter space moves at the same rate instead of the few that
dominate the gradient. It is how airbench94_muon reaches 94% in 8 epochs instead of ~10.

In this module one optimizer holds both kinds of parameter group, so one learning-rate schedule and
one checkpointed state cover the whole model: groups with `orthogonal=True` (conv filters followed by
BatchNorm, hence scale-invariant) get the orthogonalised step, with the filters renormalised to a fixed
norm before it (their scale means nothing, so the learning rate is a relative step size and no weight
decay is needed); the other groups (biases, the head) get plain SGD with Nesterov momentum and L2
decay, exactly as `torch.optim.SGD(nesterov=True)` computes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# the quintic iteration's coefficients (Jordan 2024): chosen to push singular values in (0, 1] towards
# ~1 as fast as possible in five steps, accepting that they land anywhere in ~[0.7, 1.2]
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5  # Newton-Schulz steps by default (airbench94_muon takes 3: an orthogonal group's ns_steps)


def orthogonalize(matrix: torch.Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U V^T for matrix = U S V^T (rows x cols), by `steps` Newton-Schulz iterations."""
    a, b, c = _NS_COEFFICIENTS
    x = matrix.float() / (matrix.norm() + eps)  # singular values into (0, 1], where the iteration converges
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T  # iterate on the short side: the Gram matrix is then the small one
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Orthogonalised Nesterov momentum for groups marked `orthogonal=True`, SGD-Nesterov for the rest.

    Group options: lr, momentum, weight_decay (L2, non-orthogonal groups only), orthogonal, ns_steps (the
    Newton-Schulz steps of an orthogonal group's update: 5 by default; airbench94_muon takes 3, in bf16 on a GPU).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "orthogonal": False, "ns_steps": NS_STEPS})

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a checkpoint from before the option resumes as it ran
            group.setdefault("ns_steps", NS_STEPS)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["orthogonal"] and group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                update = grad.add(state["momentum_buffer"], alpha=momentum)  # Nesterov
                if group["orthogonal"]:
                    # scale-invariant filters: hold their norm at sqrt(out_channels) (unit norm per filter on
                    # average) so that lr is the relative size of every step
                    p.mul_(len(p) ** 0.5 / p.norm().clamp_min(1e-12))
                    update = orthogonalize(update.reshape(len(update), -1), group["ns_steps"]).view_as(p).to(p.dtype)
                p.add_(update, alpha=-lr)


def dense_order(t: torch.Tensor) -> list[int] | None:
    """The permutation of `t`'s dimensions that lays it out contiguously (largest stride first), where `t` is
    dense but not contiguous in its own order (a channels_last filter: [0, 2, 3, 1]); None otherwise."""
    if t.is_contiguous():
        return None
    order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), d))
    return order if t.permute(order).is_contiguous() else None


class _DenseViews:
    """Hands torch's fused Adam / AdamW kernel each parameter's tensors as contiguous views.

    On the CPU the fused kernel copies every tensor that is not contiguous in its own dimension order into a
    contiguous one and back, every step: a channels_last filter costs two copies of itself per step, more
    than the update (a 1,024 x 1,024 x 3 x 3 filter alone: 4.6 ms a step contiguous, 23 ms channels_last; in
    resnet12-aug's bf16 step on Zen 4, 2 threads, about 1 %).
    The update is elementwise, so applying one permutation to a parameter, its gradient and its moments,
    which makes them contiguous, computes the same numbers without the copies. Only the lists handed to the
    kernel change; the parameters and the state dict keep their shapes and layouts. (Not for SGD: its step
    keys the state by the tensors in those lists.)
    """

    def _init_group(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
                    *state: list[torch.Tensor]) -> bool:
        has_complex = super()._init_group(group, params, grads, *state)  # type: ignore[misc]
        for i, p in enumerate(params):  # entries are replaced in place, after they are read
            order = dense_order(p)
            if order is None:
                continue
            for tensors in (params, grads, *state):  # step counts (0-d) and absent amsgrad maxima stay
                if i < len(tensors) and tensors[i].shape == p.shape:
                    tensors[i] = tensors[i].permute(order)
        return has_complex


class Adam(_DenseViews, torch.optim.Adam):
    """`torch.optim.Adam`, handing the fused kernel contiguous views (`_DenseViews`)."""


class AdamW(_DenseViews, torch.optim.AdamW):
    """`torch.optim.AdamW`, handing the fused kernel contiguous views (`_DenseViews`)."""
