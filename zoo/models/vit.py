"""Vision Transformers of reports 000, 001 and 002.

ViT (Dosovitskiy et al., 2021, https://arxiv.org/abs/2010.11929): the image is cut into patches,
embedded linearly, a learnable class token and position embeddings are added, a stack of
transformer encoder layers (multi-head self-attention + MLP, residuals, LayerNorm) follows, and the
class token's output is classified.

- `vit` (report 000, Pasotto §4.4.4): fixed patch 4, 8 heads, dropout 0.1; selected embed 64,
  depth 8, MLP 512. timm's `VisionTransformer` expresses it exactly (pre-norm blocks, class token,
  learnable position embedding, final LayerNorm, GELU MLP), as in the authors' code
  (DanielePasotto/DL_Project); dropout on the attention weights, after the attention projection
  and in the MLP (their code has no dropout after the projection; parameters are identical).
- `vit-tiny` (report 001, Sobieski & Olejnik, experiment III): 6 encoder layers, dimension 30,
  patch 4. Silent in the report, taken from the authors' code (sobieskibj/deep-learning_project-1,
  models/vit.py): patches flattened and embedded by LayerNorm -> Linear -> LayerNorm; 6 heads (head
  dim 5); PyTorch `nn.TransformerEncoderLayer` defaults, i.e. post-norm layers with a ReLU MLP of 2048
  and dropout 0.1; embedding dropout 0.5 (their base configuration); LayerNorm + Linear head.
  (Their code builds a single encoder layer with `nhead=encoder_depth`; we build the 6 layers the
  report describes.) Own block because timm has neither post-norm layers (`ResPostBlock` normalises
  the branch, not the sum) nor this patch embedding; the block reuses timm's `Attention` and `Mlp`.
- `vit002` (report 002, Beraldi & Miesbauer, §6.3.3): patch 2, embed 32, 4 layers, 20 heads of
  dimension 16 (attention width 320, wider than the embedding), MLP 1024, dropout 0.25 and a head
  MLP with a 1024 hidden layer. timm's `Attention` takes `attn_head_dim`, so timm's
  `VisionTransformer` with its blocks' attention swapped for that one expresses it (the constructor
  cannot pass `attn_head_dim`); the head is replaced by the two-layer MLP. The
  report is silent on biases, pooling and dropout placement: qkv biases on, class-token pooling (as
  in Dosovitskiy et al.), dropout after the attention projection, in the MLP and in the head.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model


def _timm_vit(img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int, mlp_dim: int,
              num_classes: int, **kwargs) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=img_size, patch_size=patch_size, num_classes=num_classes,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                              mlp_ratio=mlp_dim / embed_dim, qkv_bias=True, class_token=True,
                              global_pool="token", **kwargs)
    if model.blocks[0].mlp.fc1.out_features != mlp_dim:  # timm computes int(dim * ratio)
        raise ValueError(f"timm VisionTransformer cannot express mlp_dim={mlp_dim} with embed_dim={embed_dim}")
    return model


@register_model()
def vit(embed_dim: int = 64, depth: int = 8, mlp_dim: int = 512, num_heads: int = 8, patch_size: int = 4,
        dropout: float = 0.1, num_classes: int = 10) -> nn.Module:
    """Report 000's ViT (selected: embed 64, depth 8, MLP 512; fixed: patch 4, 8 heads, dropout 0.1)."""
    return _timm_vit(32, patch_size, embed_dim, depth, num_heads, mlp_dim, num_classes,
                     attn_drop_rate=dropout, proj_drop_rate=dropout)


@register_model()
def vit002(patch_size: int = 2, embed_dim: int = 32, depth: int = 4, num_heads: int = 20, head_dim: int = 16,
           mlp_dim: int = 1024, head_mlp_dim: int = 1024, dropout: float = 0.25, num_classes: int = 10) -> nn.Module:
    """Report 002's ViT: 20 heads of 16 on a 32-wide embedding, MLP 1024, head MLP 1024, dropout 0.25."""
    from timm.layers import Attention

    # timm's constructor requires embed_dim % num_heads == 0 (it derives the head dim), so build with one
    # head, then give every block the 20 x 16 attention
    model = _timm_vit(32, patch_size, embed_dim, depth, 1, mlp_dim, num_classes, proj_drop_rate=dropout)
    for block in model.blocks:
        block.attn = Attention(embed_dim, num_heads, attn_head_dim=head_dim, qkv_bias=True, proj_drop=dropout)
    model.head = nn.Sequential(nn.Linear(embed_dim, head_mlp_dim), nn.GELU(), nn.Dropout(dropout),
                               nn.Linear(head_mlp_dim, num_classes))
    model.init_weights()  # timm's initialisation, over the replaced layers too
    return model


class PostNormBlock(nn.Module):
    """The original transformer layer: x = norm(x + attn(x)); x = norm(x + mlp(x)) (nn.TransformerEncoderLayer)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        from timm.layers import Attention, Mlp

        super().__init__()
        self.attn = Attention(dim, heads, qkv_bias=True, attn_drop=dropout, proj_drop=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, act_layer=nn.ReLU, drop=dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class PostNormViT(nn.Module):
    """Report 001's small ViT: LayerNorm'd linear patch embedding, post-norm layers, class-token head."""

    def __init__(self, dim: int = 30, depth: int = 6, heads: int = 6, mlp_dim: int = 2048, patch_size: int = 4,
                 dropout: float = 0.1, embed_dropout: float = 0.5, num_classes: int = 10, img_size: int = 32,
                 channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        patch_dim = channels * patch_size * patch_size
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.embed_drop = nn.Dropout(embed_dropout)
        self.blocks = nn.Sequential(*[PostNormBlock(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, patches, p*p*C), pixels of a patch in (row, column, channel) order."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.patchify(x))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.blocks(self.embed_drop(x))
        return self.head(x[:, 0])


@register_model()
def vit_tiny(dim: int = 30, depth: int = 6, heads: int = 6, mlp_dim: int = 2048, patch_size: int = 4,
             dropout: float = 0.1, embed_dropout: float = 0.5, num_classes: int = 10) -> PostNormViT:
    """Report 001's ViT: 6 post-norm layers of width 30 (6 heads, MLP 2048), patch 4."""
    return PostNormViT(dim, depth, heads, mlp_dim, patch_size, dropout, embed_dropout, num_classes)
