"""The 3-block CNN of report 002 (Beraldi & Miesbauer, §4.2 and §6.1.2).

Three blocks of (conv, BatchNorm, ReLU, 2x2 max pooling), then a two-layer MLP with dropout and
the output layer. The widths and the dropout were tuned (Weights & Biases sweep) but the report does
not give the winning values. The authors' sweep (gvnberaldi/ImageClassifier, train_CNN.py) searched
conv widths {16, 32} / {32, 64} / {64, 128}, MLP {128, 256} / {62, 128}, dropout {0, 0.3, 0.5, 0.7}
and batch {128, 256, 512}; we take the widest option of each width (32, 64, 128; 256, 128) and
dropout 0.5 (the middle of the report's range). Kernels are 3x3 with padding 1 (unstated). The
report's final softmax is left out: the network returns logits.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


class CNN002(nn.Module):
    """Three (conv, BN, ReLU, pool) blocks and an MLP head with dropout."""

    def __init__(self, conv_dims: tuple[int, int, int] = (32, 64, 128), mlp_dims: tuple[int, int] = (256, 128),
                 dropout: float = 0.5, num_classes: int = 10, img_size: int = 32) -> None:
        super().__init__()
        chans = (3, *conv_dims)
        self.features = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2))
            for a, b in zip(chans[:-1], chans[1:])
        ])
        flat = conv_dims[-1] * (img_size // 8) ** 2
        self.head = nn.Sequential(
            nn.Linear(flat, mlp_dims[0]), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mlp_dims[0], mlp_dims[1]), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mlp_dims[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@register_model()
def cnn002(conv_dims: tuple[int, int, int] = (32, 64, 128), mlp_dims: tuple[int, int] = (256, 128),
           dropout: float = 0.5, num_classes: int = 10) -> CNN002:
    """Report 002's CNN with the widest searched widths and dropout 0.5."""
    return CNN002(tuple(conv_dims), tuple(mlp_dims), dropout, num_classes)
