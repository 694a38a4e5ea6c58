"""The network of report 003 (Ghasemi, "CIFAR-10 Image Classification", step 3), as its code listing gives it.

Five 3x3 convolutions (3 -> 32 -> 64 -> 128 -> 256 -> 512; the second with stride 2), each followed
by ReLU and then BatchNorm (the listing's order), dropout 0.2 before the last convolution, adaptive
average pooling to 2x2 and a dense head 2048 -> 512 -> 256 -> 10 with ReLU.
The report's prose speaks of "8 convolutional layers" and of no regularisation; the listing is the
only complete description, so it is what we build.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


def _conv_relu_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]


class Net003(nn.Module):
    """Five conv + ReLU + BN layers, adaptive average pooling to 2x2, three dense layers."""

    def __init__(self, dropout: float = 0.2, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_relu_bn(3, 32),
            *_conv_relu_bn(32, 64, stride=2),
            *_conv_relu_bn(64, 128),
            *_conv_relu_bn(128, 256),
            nn.Dropout(dropout),
            *_conv_relu_bn(256, 512),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 4, 512), nn.ReLU(True),
            nn.Linear(512, 256), nn.ReLU(True),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model()
def net003(dropout: float = 0.2, num_classes: int = 10) -> Net003:
    """Report 003's network (2.75 M parameters)."""
    return Net003(dropout, num_classes)
