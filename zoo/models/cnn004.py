"""The 6-convolution CNN of report 004 (Mantovani & Palmieri, "Optimizing CNNs for CIFAR-10", §2.3).

Six 3x3 convolutions (8, 16, 32, 64, 128, 128 channels, padding 1), each followed by BatchNorm and
the activation, 2x2 max pooling after every two, then dense layers 2048 -> 512 -> 128 -> 32 -> 10.
Four variants: ReLU or LeakyReLU (PyTorch's default slope 0.01; the report gives none), with 50%
dropout on the fully connected layers or none. Table 1 of the report places the dropout after the
512 and the 128 layers (not after the 32 one, although the prose says "each"); we follow the table,
whose parameter count, 1,365,930, this network matches exactly. Activations carry no parameters and
are not listed in the table; we apply one after every hidden dense layer.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import CifarzooError
from zoo.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


class CNN004(nn.Module):
    """Three pairs of (conv, BN, activation) with max pooling, then a 4-layer dense head."""

    def __init__(self, act: type[nn.Module] = nn.ReLU, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__()
        chans = (3, 8, 16, 32, 64, 128, 128)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), act()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(128 * 4 * 4, 512), act(), nn.Dropout(dropout),
            nn.Linear(512, 128), act(), nn.Dropout(dropout),
            nn.Linear(128, 32), act(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model()
def cnn004(activation: str = "relu", dropout: float = 0.0, num_classes: int = 10) -> CNN004:
    """Report 004's CNN; `activation` "relu" or "leaky_relu", `dropout` 0.5 or 0.0 in the report."""
    if activation not in ACTIVATIONS:
        raise CifarzooError(f"cnn004 activation '{activation}' is unknown; use one of {', '.join(ACTIVATIONS)}.")
    return CNN004(ACTIVATIONS[activation], dropout, num_classes)
