"""AirNet: cifarzoo's flagship, a small whitened CNN built to train fast (issue 8).

The ideas come from the fast-CIFAR-training literature; the code is this project's own:
- Page (2018), "How to train your ResNet" (Page's ResNet-9): conv -> pool -> BatchNorm blocks, label
  smoothing, batched flip/translate augmentation, a scaled-down final linear layer.
- tysam-code, hlb-CIFAR10 (2023): a first convolution fixed to whiten image patches, frozen BatchNorm
  scales, weight averaging.
- Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single GPU" (airbench94,
  https://arxiv.org/abs/2404.00498): 2x2 whitening with +/- eigenvector filters, identity (Dirac)
  initialisation of every 3x3 convolution, a larger learning rate for BatchNorm biases,
  flip+translate test-time augmentation.

The network: whitening conv (2x2 patches, 2 * 12 filters) -> GELU -> three groups of
(3x3 conv, 2x2 max pool, BN, GELU, 3x3 conv, BN, GELU) -> global max pool -> linear / 9.
`data_init(images)` must see training images before training (the runner calls it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.registry import register_model


class PatchWhitening(nn.Conv2d):
    """A frozen conv whose filters whiten k x k patches: eigenvectors of the patch covariance / sqrt(eigenvalue).

    Each whitening direction appears twice, as +v and -v, so the GELU after it keeps both signs.
    Only the bias is trained.
    """

    def __init__(self, kernel_size: int = 2, in_channels: int = 3, eps: float = 5e-4) -> None:
        dims = in_channels * kernel_size * kernel_size
        super().__init__(in_channels, 2 * dims, kernel_size, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def data_init(self, images: torch.Tensor) -> None:
        """Set the filters from normalised training images (N, C, H, W)."""
        k = self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.in_channels * k * k).double()
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / (eigenvalues + self.eps).sqrt()[:, None]).view(-1, self.in_channels, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))
        self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bias.requires_grad:  # frozen too: one fused conv, no backward at all
            return nn.functional.conv2d(x, self.weight, self.bias)
        # bias added outside the conv, so that autograd skips the conv's backward; in fp32, where small bias
        # steps still show next to the whitened activations (a bf16 add here cost accuracy in our tests)
        return nn.functional.conv2d(x, self.weight) + self.bias.view(1, -1, 1, 1)


class _Conv(nn.Conv2d):
    """3x3 conv without bias, initialised as identity on the first channels (Dirac) plus the default noise."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding=1, bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(cin, cout)])


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed scale of 1 (only the bias learns) and fast running statistics."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Sequential):
    """conv -> 2x2 max pool -> BN -> GELU -> conv -> BN -> GELU (pooling before BN halves its cost)."""

    def __init__(self, cin: int, cout: int, bn_momentum: float) -> None:
        super().__init__(
            _Conv(cin, cout), nn.MaxPool2d(2), _BatchNorm(cout, bn_momentum), nn.GELU(),
            _Conv(cout, cout), _BatchNorm(cout, bn_momentum), nn.GELU(),
        )


class AirNet(nn.Module):
    """Whitening conv, three conv groups, global max pool, a linear head scaled down by `head_scale`."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), whiten_kernel: int = 2,
                 num_classes: int = 10, bn_momentum: float = 0.4, head_scale: float = 1 / 9,
                 bias_lr_scale: float = 64.0, whiten_bias_epochs: int = 2, filter_lr: float = 0.24,
                 filter_momentum: float = 0.6, small_size: int = 0, small_epochs: int = 0,
                 filter_ns_steps: int = 5) -> None:
        super().__init__()
        self.whiten = PatchWhitening(whiten_kernel)
        self.act = nn.GELU()
        chans = [self.whiten.out_channels, *widths]
        self.groups = nn.Sequential(*(ConvGroup(a, b, bn_momentum) for a, b in zip(chans, chans[1:])))
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.head_scale = head_scale
        self.bias_lr_scale = bias_lr_scale
        self.whiten_bias_epochs = whiten_bias_epochs
        self.filter_lr, self.filter_momentum, self.filter_ns_steps = filter_lr, filter_momentum, filter_ns_steps
        self.small_size, self.small_epochs = small_size, small_epochs
        self._train_size = 0  # side to which training batches are resized this epoch; 0: as they come

    def data_init(self, images: torch.Tensor) -> None:
        """Whitening filters from a batch of normalised training images (called once, before training)."""
        self.whiten.data_init(images.to(self.whiten.weight.device))

    def start_epoch(self, epoch: int) -> None:
        """Called by the engine before epoch `epoch` (1-based): the whitening bias trains for the first few
        epochs only; frozen, the 31x31 stem needs no backward pass (~8% of a step)."""
        self.whiten.bias.requires_grad_(epoch <= self.whiten_bias_epochs)
        # progressive resizing: the first `small_epochs` see downscaled images, at (small/full)^2 of the cost
        self._train_size = self.small_size if epoch <= self.small_epochs else 0

    def param_groups(self, recipe: Any) -> list[dict[str, Any]]:
        """Optimizer groups: BatchNorm biases learn `bias_lr_scale` times faster, with the weights' decay per step.

        With the "muon" optimizer the 3x3 filters form a third group, orthogonalised at their own relative
        step `filter_lr` and momentum `filter_momentum`, in `filter_ns_steps` Newton-Schulz steps
        (benchmark.optim.Muon); the rest stays SGD.
        """
        bn = {id(m.bias) for m in self.modules() if isinstance(m, nn.BatchNorm2d)}
        trained = [p for p in self.parameters() if p.requires_grad]
        filters = [p for p in trained if p.ndim == 4] if recipe.optimizer == "muon" else []
        biases = [p for p in trained if id(p) in bn]
        special = bn | {id(f) for f in filters}  # built once, not per parameter
        others = [p for p in trained if id(p) not in special]
        s = self.bias_lr_scale
        groups = [{"params": others, "lr": recipe.lr, "weight_decay": recipe.weight_decay},
                  {"params": biases, "lr": recipe.lr * s, "weight_decay": recipe.weight_decay / s}]
        if filters:
            groups.append({"params": filters, "lr": self.filter_lr, "momentum": self.filter_momentum,
                           "weight_decay": 0.0, "orthogonal": True, "ns_steps": self.filter_ns_steps})
        return groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0 < self._train_size < x.size(-1):
            x = nn.functional.interpolate(x, size=self._train_size, mode="bilinear", antialias=True)
        x = self.groups(self.act(self.whiten(x)))
        return self.head(x.amax(dim=(2, 3))) * self.head_scale


@register_model()
def airnet(widths: tuple[int, int, int] = (64, 256, 256), whiten_kernel: int = 2, num_classes: int = 10,
           bn_momentum: float = 0.4, head_scale: float = 1 / 9, bias_lr_scale: float = 64.0,
           whiten_bias_epochs: int = 2, filter_lr: float = 0.24, filter_momentum: float = 0.6,
           small_size: int = 0, small_epochs: int = 0, filter_ns_steps: int = 5) -> AirNet:
    """AirNet at the given widths (airbench94's are 64/256/256); filter_* apply with the "muon" optimizer;
    small_size > 0 trains the first small_epochs on images downscaled to that side."""
    return AirNet(tuple(widths), whiten_kernel, num_classes, bn_momentum, head_scale, bias_lr_scale,
                  whiten_bias_epochs, filter_lr, filter_momentum, small_size, small_epochs, filter_ns_steps)
