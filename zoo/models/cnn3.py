"""The 3-convolution CNN of report 001 (Sobieski & Olejnik, experiment II).

Report: three convolutions with 32, 64, 128 channels, a max pooling layer and 2-D dropout, then
linear layers of sizes (512, 40, 10), every layer followed by ReLU. Best configuration: dropout 0.5,
no L2 penalty, basic augmentation.

Silent in the report, taken from the authors' code (sobieskibj/deep-learning_project-1,
models/convolution.py, architecture '1'): the convolutions are 3x3 with stride 2 and padding 1
(32 -> 16 -> 8 -> 4), the 2x2 max pooling leaves 128 x 2 x 2 = 512 features, so the dense layers
are 512 -> 512 -> 40 -> 10.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


class CNN3(nn.Module):
    """Three strided 3x3 convolutions, max pooling, 2-D dropout, dense 512-40-10."""

    def __init__(self, dropout: float = 0.5, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout2d(dropout),
        )
        self.head = nn.Sequential(
            nn.Linear(128 * 2 * 2, 512), nn.ReLU(),
            nn.Linear(512, 40), nn.ReLU(),
            nn.Linear(40, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@register_model()
def cnn3(dropout: float = 0.5, num_classes: int = 10) -> CNN3:
    """Report 001's CNN with its best dropout (0.5)."""
    return CNN3(dropout, num_classes)
