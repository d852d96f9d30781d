"""The crappify pretext: Gaussian noise, then linear down/up-sampling of every spatial axis.

Given an image in raw units with maximum ``M`` (DESIGN §4):
1. if ``noise > 0``: add zero-mean Gaussian noise of std ``noise * M``, clip to the image's
   range and, for integer images, round (BiaPy truncates);
2. resample each spatial axis by ``1 / sqrt(resizing_factor)`` with linear interpolation and back to
   the original shape.
The batched torch version runs on the training device; the numpy version degrades whole images
(previews, test inputs) with the same code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def degraded_shape(shape: tuple[int, ...], resizing_factor: float) -> tuple[int, ...]:
    """Spatial shape after the down-sampling step (each axis / sqrt(factor), at least 1)."""
    factor = math.sqrt(resizing_factor)
    return tuple(max(1, round(s / factor)) for s in shape)


def crappify_batch(
    x: torch.Tensor,
    data_min: torch.Tensor,
    data_max: torch.Tensor,
    noise: float,
    resizing_factor: float,
    integer: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Degrade a raw float batch ``(B, C, *S)``; ``data_min``/``data_max`` are per sample (B,)."""
    spatial = x.shape[2:]
    bshape = (-1,) + (1,) * (x.ndim - 1)
    lo, hi = data_min.reshape(bshape).to(x), data_max.reshape(bshape).to(x)
    if noise > 0:
        std = noise * hi.abs()
        x = x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = torch.minimum(torch.maximum(x, lo), hi)
        if integer:
            x = torch.round(x)
    small = degraded_shape(tuple(spatial), resizing_factor)
    if small != tuple(spatial):
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        x = F.interpolate(x, size=small, mode=mode, align_corners=False)
        x = F.interpolate(x, size=tuple(spatial), mode=mode, align_corners=False)
        if integer:
            x = torch.round(x)
    return x


def crappify(
    image: np.ndarray,
    noise: float,
    resizing_factor: float,
    seed: int | None = None,
    data_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Degrade one raw image ``(C, *S)``; returns the same shape and dtype.

    ``data_range`` is (min, max) of the whole image when ``image`` is only a region of it.
    """
    image = np.asarray(image)
    integer = np.issubdtype(image.dtype, np.integer)
    x = torch.from_numpy(image.astype(np.float32, copy=False))[None]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    low, high = data_range or (float(image.min()), float(image.max()))
    lo, hi = torch.tensor([float(low)]), torch.tensor([float(high)])
    with torch.inference_mode():
        y = crappify_batch(x, lo, hi, noise, resizing_factor, integer, generator)[0].numpy()
    if integer:
        info = np.iinfo(image.dtype)
        y = np.clip(np.round(y), info.min, info.max)
    return y.astype(image.dtype)
