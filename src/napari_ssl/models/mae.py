"""Masked autoencoder with a ViT encoder (He et al., 2022), 2D and 3D.

The state dict has exactly the names and shapes of BiaPy 3.7.1's ``MaskedAutoencoderViT``, so
checkpoints load ``strict=True`` both ways. Differences (on purpose): positional embeddings are
initialised to fixed sin-cos values (BiaPy: frozen random ones; a loaded checkpoint's values are
used as they are), the mask is given to :meth:`MaskedAutoencoder.forward` (see
:mod:`napari_ssl.pretext.masking`), and the decoder size is configurable.

Token pixel layout (``patchify``): tokens in row-major grid order ((Z,) Y, X); inside a token,
pixels in row-major order with the channel last, i.e. ``((tz,) ty, tx, c)``, as BiaPy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from napari_ssl.config import ModelConfig
from napari_ssl.models.mae_config import check_mae_config, vit_dims
from napari_ssl.models.vit_blocks import Block, PatchEmbed, sincos_pos_embed


def patchify(x: torch.Tensor, token_size: int) -> torch.Tensor:
    """``(B, C, *S)`` -> ``(B, L, token_size**ndim * C)``; every ``S`` must be a multiple."""
    b, c, *spatial = x.shape
    n = len(spatial)
    split = [b, c]
    for s in spatial:
        split += [s // token_size, token_size]
    perm = [0, *range(2, 2 + 2 * n, 2), *range(3, 3 + 2 * n, 2), 1]
    return x.reshape(split).permute(perm).reshape(b, -1, token_size**n * c)


def unpatchify(
    tokens: torch.Tensor, spatial_shape: tuple[int, ...], token_size: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, L, token_size**ndim * C)`` -> ``(B, C, *S)``."""
    n = len(spatial_shape)
    b, _, width = tokens.shape
    c = width // token_size**n
    grid = [s // token_size for s in spatial_shape]
    x = tokens.reshape(b, *grid, *[token_size] * n, c)
    # axes now: B, g1..gn, t1..tn, C -> B, C, g1, t1, ..., gn, tn
    perm = [0, 2 * n + 1]
    for i in range(n):
        perm += [1 + i, 1 + n + i]
    return x.permute(perm).reshape(b, c, *spatial_shape)


class MaskedAutoencoder(nn.Module):
    """ViT MAE for ``(B, C, *patch)`` inputs; ``forward(x, mask)`` predicts all tokens' pixels."""

    def __init__(
        self,
        *,
        ndim: int,
        in_channels: int,
        patch_side: int,
        token_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        norm_eps: float,
        dec_dim: int,
        dec_depth: int,
        dec_heads: int,
        dec_mlp_dims: int,
    ) -> None:
        super().__init__()
        self.ndim, self.in_channels, self.token_size = ndim, in_channels, token_size
        self.patch_shape = (patch_side,) * ndim
        self.grid = (patch_side // token_size,) * ndim
        # registration order = BiaPy's, so named_parameters() line up too
        self.patch_embed = PatchEmbed(ndim, in_channels, token_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(self.grid, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, int(embed_dim * mlp_ratio), norm_eps) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.decoder_embed = nn.Linear(embed_dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_pos_embed = nn.Parameter(
            sincos_pos_embed(self.grid, dec_dim), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            Block(dec_dim, dec_heads, dec_mlp_dims, norm_eps) for _ in range(dec_depth)
        )
        self.decoder_norm = nn.LayerNorm(dec_dim, eps=norm_eps)
        self.decoder_pred = nn.Linear(dec_dim, token_size**ndim * in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's init: Xavier-uniform linears (and patch projection), N(0, 0.02) tokens."""
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, L, token_size**ndim * C)`` (BiaPy's pixel order)."""
        return patchify(x, self.token_size)

    def unpatchify(self, tokens: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
        return unpatchify(tokens, tuple(spatial_shape), self.token_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, n_hidden: int | None = None
    ) -> torch.Tensor:
        """Predict token pixels ``(B, L, token_size**ndim * C)``.

        ``mask`` ``(B, L)``: True = hidden, best on the device of ``x`` (else it is copied);
        every row must hide ``n_hidden`` tokens. Given ``n_hidden`` is trusted; without it the
        rows are counted and checked on the host, a device synchronisation for a GPU mask.
        """
        b = x.shape[0]
        if tuple(x.shape[1:]) != (self.in_channels, *self.patch_shape):
            raise ValueError(
                f"input shape {tuple(x.shape)} does not match the model's "
                f"(B, {self.in_channels}, {', '.join(map(str, self.patch_shape))})"
            )
        n_tokens = self.pos_embed.shape[1] - 1
        if tuple(mask.shape) != (b, n_tokens):
            raise ValueError(f"mask shape {tuple(mask.shape)} != (batch, tokens) ({b}, {n_tokens})")
        if n_hidden is None:
            n_hidden = _row_count(mask)
        elif not 0 <= n_hidden <= n_tokens:
            raise ValueError(f"n_hidden {n_hidden} is not in [0, {n_tokens}]")
        mask = mask.to(x.device, torch.bool)
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # visible first
        restore = torch.argsort(order, dim=1)
        latent = self._encode(x, order[:, : n_tokens - n_hidden])
        return self._decode(latent, restore)

    def _encode(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def _decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        h = self.decoder_embed(latent)
        b, n_seen, d = h.shape
        hidden = self.mask_token.expand(b, restore.shape[1] + 1 - n_seen, -1)
        seq = torch.cat([h[:, 1:], hidden], dim=1)
        seq = torch.gather(seq, 1, restore.unsqueeze(-1).expand(-1, -1, d))
        h = torch.cat([h[:, :1], seq], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            h = blk(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:]


def _row_count(mask: torch.Tensor) -> int:
    """The number of hidden tokens, the same in every row of ``mask`` (checked on the host)."""
    counts = set(mask.to(torch.bool).sum(1).tolist())
    if len(counts) != 1:
        raise ValueError(f"every mask row must hide as many tokens, got {sorted(counts)}")
    return counts.pop()


def build_mae(
    cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...]
) -> MaskedAutoencoder:
    """Build the MAE for ``patch_size`` (square/cubic) inputs with ``in_channels`` channels."""
    check_mae_config(cfg, ndim, patch_size)
    dim, depth, heads = vit_dims(cfg)
    return MaskedAutoencoder(
        ndim=ndim,
        in_channels=in_channels,
        patch_side=int(patch_size[0]),
        token_size=cfg.vit_token_size,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=cfg.vit_mlp_ratio,
        norm_eps=cfg.vit_norm_eps,
        dec_dim=cfg.mae_dec_hidden_size,
        dec_depth=cfg.mae_dec_num_layers,
        dec_heads=cfg.mae_dec_num_heads,
        dec_mlp_dims=cfg.mae_dec_mlp_dims,
    )


def _stack_activation_bytes(
    batch: int, n: int, dim: int, hidden: int, heads: int, layers: int, bytes_per_el: int
) -> int:
    """Bytes that ``layers`` transformer blocks on ``n`` tokens keep for backward: the residual
    stream and norm outputs in fp32 (also under autocast), qkv, attention output, norm casts
    and the MLP at ``bytes_per_el``. Attention scores are not kept (CUDA's fused attention)."""
    fp32 = 4 * dim
    low = 6 * dim + 2 * hidden + heads
    return layers * batch * n * (4 * fp32 + bytes_per_el * low)


def estimate_mae_memory(
    cfg: ModelConfig,
    ndim: int,
    patch_size: tuple[int, ...],
    batch_size: int,
    in_channels: int,
    mask_ratio: float,
    bytes_per_el: int = 4,
) -> int:
    """Conservative training memory in bytes (CUDA or CPU): activations (``bytes_per_el``: 4
    for fp32, 2 for bf16 / fp16 autocast) + fp32 parameters, gradients and two Adam moments, plus
    25% for temporaries and allocator slack. ``mask_ratio``: 0.5 for the grid mask."""
    check_mae_config(cfg, ndim, patch_size)
    dim, depth, heads = vit_dims(cfg)
    n_tokens = (int(patch_size[0]) // cfg.vit_token_size) ** ndim
    n_visible = int(n_tokens * (1.0 - mask_ratio))  # BiaPy's count
    dec = cfg.mae_dec_hidden_size
    acts = _stack_activation_bytes(
        batch_size, n_visible + 1, dim, int(dim * cfg.vit_mlp_ratio), heads, depth, bytes_per_el
    ) + _stack_activation_bytes(
        batch_size,
        n_tokens + 1,
        dec,
        cfg.mae_dec_mlp_dims,
        cfg.mae_dec_num_heads,
        cfg.mae_dec_num_layers,
        bytes_per_el,
    )
    # input, target, predictions, loss terms (fp32); token embeddings and gathers
    pixels = batch_size * in_channels * math.prod(int(p) for p in patch_size)
    acts += 4 * 6 * pixels + 4 * batch_size * (n_tokens + 1) * (2 * dim + 3 * dec)
    with torch.device("meta"):
        model = build_mae(cfg, ndim, in_channels, patch_size)
    n_params = sum(p.numel() for p in model.parameters())
    return int(1.25 * (acts + 16 * n_params))
