"""Masking pretext (MAE): token masks, the masked-token loss, reconstructions and a GUI preview.

A mask is a bool tensor ``(B, L)`` over the row-major token grid, True = hidden. ``"grid"`` hides
the checkerboard cells whose index sum is even (BiaPy's 2D pattern; in 3D a true 3D checkerboard,
where BiaPy 3.7.1 hides only a quarter of the tokens while dropping half from the encoder).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from napari_ssl.config import ConfigError
from napari_ssl.models.mae import MaskedAutoencoder, patchify, unpatchify


def token_grid(patch_size: tuple[int, ...], token_size: int) -> tuple[int, ...]:
    """Tokens per axis; :class:`ConfigError` if an axis is not a multiple of the token size."""
    if token_size <= 0 or any(p % token_size for p in patch_size):
        raise ConfigError(
            f"data.patch_size {tuple(patch_size)} must be a multiple of model.vit_token_size "
            f"({token_size}) on every axis"
        )
    return tuple(p // token_size for p in patch_size)


def hidden_count(grid: tuple[int, ...], mask_type: str, ratio: float) -> int:
    """Tokens every row of a mask hides: ``L - int(L * (1 - ratio))`` for ``"random"`` (BiaPy's
    count, so a YAML hides the same number of tokens in both tools), half of the
    checkerboard (the extra one when ``L`` is odd) for ``"grid"``. Checks both arguments."""
    n_tokens = math.prod(grid)
    if mask_type == "grid":
        return (n_tokens + 1) // 2
    if mask_type != "random":
        raise ConfigError(f"pretext.mask_type must be 'random' or 'grid', got {mask_type!r}")
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"pretext.mask_ratio must be in [0, 1), got {ratio} (default 0.5)")
    return n_tokens - int(n_tokens * (1.0 - ratio))


def make_mask(
    batch: int,
    grid: tuple[int, ...],
    mask_type: str,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Bool mask ``(batch, prod(grid))``, True = hidden, made on ``device`` (default: the
    generator's, else the CPU): a generator on the model's device means no host copy.

    ``"random"``: a fresh subset of exactly :func:`hidden_count` tokens per row, drawn with
    ``generator`` when given. ``"grid"``: the fixed checkerboard, ``ratio`` ignored.
    """
    n_tokens, n_hidden = math.prod(grid), hidden_count(grid, mask_type, ratio)
    if device is None:
        device = generator.device if generator is not None else "cpu"
    if mask_type == "grid":
        coords = torch.meshgrid(*[torch.arange(g, device=device) for g in grid], indexing="ij")
        row = (sum(coords) % 2 == 0).flatten()
        return row.unsqueeze(0).expand(batch, -1).clone()
    noise = torch.rand(batch, n_tokens, generator=generator, device=device)
    hidden = torch.argsort(noise, dim=1)[:, :n_hidden]
    mask = torch.zeros(batch, n_tokens, dtype=torch.bool, device=device)
    return mask.scatter_(1, hidden, True)


def mask_to_pixels(mask: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """Token mask ``(B, L)`` -> pixel mask ``(B, 1, *spatial_shape)`` (cubic tokens)."""
    n_pix = math.prod(spatial_shape) // mask.shape[1]
    token_size = round(n_pix ** (1 / len(spatial_shape)))
    tokens = mask.unsqueeze(-1).expand(-1, -1, n_pix)
    return unpatchify(tokens, tuple(spatial_shape), token_size)


def masked_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool,
    n_hidden: int | None = None,
) -> torch.Tensor:
    """MSE over the pixels of hidden tokens only (each hidden token weighs the same).

    With ``norm_pix_loss`` the target is each token's pixels standardised by the token's own mean
    and (unbiased) variance, eps 1e-6, as in MAE and BiaPy. ``model`` is only called, so a
    DistributedDataParallel / compiled wrapper of a :class:`MaskedAutoencoder` works too.
    ``n_hidden``: see :meth:`MaskedAutoencoder.forward`.
    """
    return token_loss(model(x, mask, n_hidden), x, mask, norm_pix_loss)


def token_loss(
    pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool
) -> torch.Tensor:
    """:func:`masked_loss` of a prediction ``(B, L, token pixels * C)`` already made."""
    ndim = x.ndim - 2
    token_size = round((pred.shape[-1] // x.shape[1]) ** (1 / ndim))
    target = patchify(x, token_size).float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_token = (pred.float() - target).pow(2).mean(dim=-1)
    weights = mask.to(per_token.device, per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(1.0)


def _neighbour_fill(
    stat: torch.Tensor, visible: torch.Tensor, grid: tuple[int, ...]
) -> torch.Tensor:
    """Per-token statistics ``(B, L, K)``: hidden tokens get the mean over their visible neighbours
    (3 x 3 (x 3) tokens), or over all visible tokens of the image when none is adjacent."""
    b, n = stat.shape[:2]
    w = visible.to(stat.dtype).unsqueeze(-1)  # (B, L, 1)
    pool = F.avg_pool2d if len(grid) == 2 else F.avg_pool3d

    def pooled(t: torch.Tensor) -> torch.Tensor:
        padded = F.pad(t.transpose(1, 2).reshape(b, t.shape[-1], *grid), [1, 1] * len(grid))
        out = pool(padded, 3, stride=1)  # zero padding: cancels in the num / den ratio
        return out.reshape(b, t.shape[-1], n).transpose(1, 2)

    num, den = pooled(stat * w), pooled(w)
    image = (stat * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
    filled = torch.where(den > 0, num / den.clamp_min(1e-12), image)
    return torch.where(visible.unsqueeze(-1), stat, filled)


def _denormalise(
    model: MaskedAutoencoder, pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Undo the per-token standardisation of ``pred`` (a model trained with ``norm_pix_loss``).

    Visible tokens use their own mean / variance. A hidden token's own statistics are unknown at
    inference, so it takes the average mean / variance of its visible neighbour tokens.
    """
    target = model.patchify(x)
    stats = torch.cat([target.mean(-1, keepdim=True), target.var(-1, keepdim=True)], dim=-1)
    stats = _neighbour_fill(stats, ~mask, model.grid)
    return pred * (stats[..., 1:] + 1e-6).sqrt() + stats[..., :1]


@torch.no_grad()
def reconstruct(
    model: MaskedAutoencoder,
    x: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = False,
    n_hidden: int | None = None,
) -> dict[str, torch.Tensor]:
    """Images ``(B, C, *S)`` for display, in the units of ``x``.

    - ``"masked"``: ``x`` with hidden tokens set to the image's per-channel minimum (they show as
      the darkest value, unmistakable against the data; 0 would be mid-grey after
      zero-mean normalisation);
    - ``"reconstruction"``: the predicted pixels of every token (``norm_pix_loss``: de-normalised,
      see :func:`_denormalise`);
    - ``"reconstruction_and_visible"``: the prediction where hidden, ``x`` where visible.

    ``n_hidden``: see :meth:`MaskedAutoencoder.forward`.
    """
    mask = mask.to(x.device)
    return views(model, model(x, mask, n_hidden), x, mask, norm_pix_loss)


def views(
    model: MaskedAutoencoder,
    pred: torch.Tensor,
    x: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = False,
) -> dict[str, torch.Tensor]:
    """:func:`reconstruct`'s images from a prediction already made (``model`` unpatchifies)."""
    pred = pred.to(x.dtype)
    if norm_pix_loss:
        pred = _denormalise(model, pred, x, mask)
    spatial = tuple(x.shape[2:])
    recon = model.unpatchify(pred, spatial)
    hidden = mask_to_pixels(mask, spatial)
    low = x.flatten(2).amin(dim=2).reshape(*x.shape[:2], *[1] * len(spatial))
    return {
        "masked": torch.where(hidden, low, x),
        "reconstruction": recon,
        "reconstruction_and_visible": torch.where(hidden, recon, x),
    }


def preview_masked(
    image: np.ndarray, token_size: int, mask_type: str, ratio: float, seed: int | None = 0
) -> np.ndarray:
    """The masked view of a whole image ``(C, *S)``: hidden tokens set to each channel's minimum.

    Same shape and dtype as ``image``. The token grid covers the image from the top-left corner;
    borders that are not a multiple of ``token_size`` are partial tokens, masked like whole ones.
    """
    spatial = image.shape[1:]
    grid = tuple(-(-s // token_size) for s in spatial)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    mask = make_mask(1, grid, mask_type, ratio, generator)
    hidden = mask_to_pixels(mask, tuple(g * token_size for g in grid))[0, 0].numpy()
    hidden = hidden[tuple(slice(0, s) for s in spatial)]
    low = image.reshape(image.shape[0], -1).min(axis=1)
    out = image.copy()
    out[:, hidden] = low[:, None]
    return out
