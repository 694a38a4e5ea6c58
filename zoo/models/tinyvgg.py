"""TinyVGG, as in report 000 (Pasotto, "CIFAR-10 Classification With Multiple Deep Learning Models", §4.4.1).

The small VGG of CNN Explainer (Wang et al., 2021, https://arxiv.org/abs/2004.15004): two blocks of
(3x3 conv, ReLU, 3x3 conv, ReLU, 2x2 max pool) and a linear classifier. The report tunes only the
width `hidden` over [32, 64, 128] and selects 128.

Where the report is silent we follow the authors' published code (DanielePasotto/DL_Project,
networks.py): padding 1, so a 32x32 image leaves an 8x8 map and the classifier is
Linear(hidden * 8 * 8, 10) (CNN Explainer itself uses unpadded convolutions on 64x64 inputs).
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
    )


class TinyVGG(nn.Module):
    """Two VGG blocks and a linear head on the flattened 8x8 map (for 32x32 inputs)."""

    def __init__(self, hidden: int = 128, num_classes: int = 10, img_size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_block(3, hidden), _conv_block(hidden, hidden))
        side = img_size // 4
        self.head = nn.Linear(hidden * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@register_model()
def tinyvgg(hidden: int = 128, num_classes: int = 10) -> TinyVGG:
    """TinyVGG with the report's selected width (hidden units 128)."""
    return TinyVGG(hidden, num_classes)
