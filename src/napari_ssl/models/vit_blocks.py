"""ViT building blocks: token embedding, pre-norm transformer block, sin-cos positions.

Module and parameter names follow timm's ViT (as used by BiaPy 3.7.1's ``MaskedAutoencoderViT``),
so state dicts are interchangeable: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2`` and ``patch_embed.proj``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Cut ``(B, C, *S)`` into ``token_size`` tokens and project them: ``(B, L, D)``."""

    def __init__(self, ndim: int, in_channels: int, token_size: int, embed_dim: int) -> None:
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.proj = conv(in_channels, embed_dim, kernel_size=token_size, stride=token_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, fused qkv projection (q, k, v; heads contiguous in each)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, norm_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(grid: tuple[int, ...], dim: int) -> torch.Tensor:
    """Fixed sin-cos positions for a token grid, with a leading all-zero row for the class token.

    Each axis gets an equal, even share ``2 * (dim // (2 * ndim))`` of the channels: half
    ``sin(p * w_k)``, half ``cos(p * w_k)`` with ``w_k = 10000 ** (-k / half)`` (Vaswani et al.;
    per axis as in MAE's 2D version); channels left over are zero. Returns ``(1, L + 1, dim)``,
    tokens in row-major grid order (the order of :class:`PatchEmbed`'s output).
    """
    half = dim // (2 * len(grid))
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    parts = []
    if half > 0:
        omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        for c in coords:
            angles = c.reshape(-1, 1) * omega
            parts += [torch.sin(angles), torch.cos(angles)]
    n_tokens = math.prod(grid)
    emb = torch.zeros(n_tokens + 1, dim, dtype=torch.float64)
    if parts:
        used = torch.cat(parts, dim=1)
        emb[1:, : used.shape[1]] = used
    return emb.unsqueeze(0).float()
