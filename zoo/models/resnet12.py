"""ResNet-12, as in report 000 (Pasotto, §4.4.2).

The lightweight residual network of few-shot learning (Oreshkin et al., TADAM, 2018;
Lee et al., MetaOptNet, 2019): four residual blocks, each of three (3x3 conv, BatchNorm, ReLU)
with a skip connection, followed by 2x2 max pooling; then global average pooling and a linear head.
The report tunes `hidden` over [32, 64, 128] and selects 128.

Choices where the report is silent, taken from the authors' published code
(DanielePasotto/DL_Project, networks.py), which produced the reported numbers:
- widths double per block from `hidden`: (h, 2h, 4h, 8h) = (128, 256, 512, 1024) at h = 128
  (31.2 M parameters, about 1.4 GMAC per 32x32 image; pass a smaller `hidden` for a cheap run);
- the skip connection is a 1x1 convolution + BatchNorm (channels change in every block);
- every conv + BN is followed by its activation; the skip is added after the third one, followed by
  one more activation and the pooling.
The report's text says ReLU; the authors' code uses LeakyReLU (slope 0.01). ReLU is the default,
as written in the report; `activation="leaky_relu"` reproduces the code.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import CifarzooError
from zoo.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=True), nn.BatchNorm2d(cout)]


class ResidualBlock12(nn.Module):
    """Three (3x3 conv, BN, activation), plus a projected skip, an activation and 2x2 max pooling."""

    def __init__(self, cin: int, cout: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *_conv_bn(cin, cout), act(),
            *_conv_bn(cout, cout), act(),
            *_conv_bn(cout, cout), act(),
        )
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        self.act = act()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.convs(x) + self.skip(x)))


class ResNet12(nn.Module):
    """Four residual blocks of growing width, global average pooling and a linear head."""

    def __init__(self, widths: tuple[int, ...] = (128, 256, 512, 1024), num_classes: int = 10,
                 act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        chans = (3, *widths)
        self.blocks = nn.Sequential(*[ResidualBlock12(a, b, act) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.blocks(x)), 1))


def _create_resnet12(hidden: int, activation: str, num_classes: int) -> ResNet12:
    if activation not in ACTIVATIONS:
        raise CifarzooError(f"resnet12 activation '{activation}' is unknown; use one of {', '.join(ACTIVATIONS)}.")
    return ResNet12((hidden, 2 * hidden, 4 * hidden, 8 * hidden), num_classes, ACTIVATIONS[activation])


@register_model()
def resnet12(hidden: int = 128, activation: str = "relu", num_classes: int = 10) -> ResNet12:
    """ResNet-12 with the report's selected width (hidden units 128: widths 128-256-512-1024)."""
    return _create_resnet12(hidden, activation, num_classes)
