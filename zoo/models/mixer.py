"""MLP-Mixer, as in report 000 (Pasotto, §4.4.5).

MLP-Mixer (Tolstikhin et al., 2021, https://arxiv.org/abs/2105.01601): patches are embedded
linearly, then mixer layers alternate a token-mixing MLP (across patches) and a channel-mixing MLP
(across features), each pre-LayerNorm with a residual; the tokens are averaged and classified.
Fixed by the report: patch 4, dropout 0.1. Selected: embed 64, depth 6, token MLP 64, channel MLP 128.

timm's `MlpMixer` expresses this exactly: its `mlp_ratio` pair gives the token and channel hidden
sizes as multiples of the embedding (64/64, 128/64), and its `proj_drop_rate` puts the dropout after
both linear layers of every MLP, where the authors' code (DanielePasotto/DL_Project) has it.
"""

from __future__ import annotations

from torch import nn

from zoo.registry import register_model


def _create_mixer(embed_dim: int, depth: int, token_dim: int, channel_dim: int, patch_size: int,
                  dropout: float, num_classes: int) -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    model = MlpMixer(num_classes=num_classes, img_size=32, patch_size=patch_size, num_blocks=depth,
                     embed_dim=embed_dim, mlp_ratio=(token_dim / embed_dim, channel_dim / embed_dim),
                     proj_drop_rate=dropout)
    first = model.blocks[0]  # timm computes int(ratio * dim): make sure no size was rounded away
    if (first.mlp_tokens.fc1.out_features, first.mlp_channels.fc1.out_features) != (token_dim, channel_dim):
        raise ValueError(f"timm MlpMixer cannot express token_dim={token_dim}, channel_dim={channel_dim}")
    return model


@register_model()
def mixer(embed_dim: int = 64, depth: int = 6, token_dim: int = 64, channel_dim: int = 128, patch_size: int = 4,
          dropout: float = 0.1, num_classes: int = 10) -> nn.Module:
    """MLP-Mixer with the report's selected sizes (embed 64, depth 6, token 64, channel 128, patch 4)."""
    return _create_mixer(embed_dim, depth, token_dim, channel_dim, patch_size, dropout, num_classes)
