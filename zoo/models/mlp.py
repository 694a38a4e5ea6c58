"""Multi-layer perceptrons on flattened images, as in report 001 (Sobieski & Olejnik, experiment I).

- `mlp-s`: 3 hidden layers (1500, 500, 100);
- `mlp-l`: 8 hidden layers (2048, 1024, 512, 256, 128, 64, 32, 16).
Every hidden layer is followed by ReLU; dropout 0.1 after the last hidden layer (the report).
The network returns logits: the authors' code (sobieskibj/deep-learning_project-1, models/linear.py)
ends in a Softmax that is then fed to the cross-entropy loss, which squashes the gradients and
probably explains why their large MLP "didn't manage to reduce any of the losses"; the zoo's
contract is logits, so that Softmax is not reproduced.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


class MLP(nn.Module):
    """Flatten, then Linear + ReLU per hidden size, dropout after the last hidden layer, linear head."""

    def __init__(self, hidden: tuple[int, ...], dropout: float = 0.1, num_classes: int = 10,
                 in_features: int = 3 * 32 * 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = (in_features, *hidden)
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden[-1], num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model()
def mlp_s(dropout: float = 0.1, num_classes: int = 10) -> MLP:
    """Report 001's small MLP: 3072-1500-500-100-10."""
    return MLP((1500, 500, 100), dropout, num_classes)


@register_model()
def mlp_l(dropout: float = 0.1, num_classes: int = 10) -> MLP:
    """Report 001's large MLP: 3072-2048-1024-512-256-128-64-32-16-10."""
    return MLP((2048, 1024, 512, 256, 128, 64, 32, 16), dropout, num_classes)
