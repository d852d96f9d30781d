"""What the network will see: the pretext applied to a bounded crop of an image.

The crop (:func:`preview_region`) is at most a given size per axis, centred where asked (the
Data dock: where the viewer looks) and kept inside the image. Its steps are separate so that a
caller can keep the crop it read and redo only :func:`apply_pretext` when a parameter changes.
"""

from __future__ import annotations

import math

import numpy as np

from napari_ssl.config import Config, ModelConfig
from napari_ssl.data.images import Image


def data_range(
    image: Image, percentile_clip: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The whole image's (min, max), to which crappify's noise is scaled, as in training: of a
    sample of a huge image; the clipping bounds with ``percentile_clip``."""
    from napari_ssl.data.normalization import compute_stats

    stats = compute_stats(image, "div", percentile_clip)
    return stats.data_min, stats.data_max


def preview_region(
    shape: tuple[int, ...], limits: tuple[int, ...], centre: tuple[float, ...] | None = None
) -> tuple[slice, ...]:
    """The crop of an image of spatial ``shape`` to preview: at most ``limits`` per axis,
    centred on ``centre`` (pixel coordinates; default: the image's centre), inside the image."""
    if centre is None:
        centre = tuple((s - 1) / 2 for s in shape)
    region = []
    for s, m, c in zip(shape, limits, centre, strict=True):
        size = min(s, m)
        start = min(max(0, math.floor(c - (size - 1) / 2 + 0.5)), s - size)
        region.append(slice(start, start + size))
    return tuple(region)


def check_pretext(cfg: Config) -> None:
    """The checks Start makes of what a preview shows (:class:`ConfigError`, same words): for
    masking, the patch and token sizes (the ViT's other sizes do not change the preview)."""
    if cfg.pretext.task == "masking":
        from napari_ssl.models.mae_config import check_mae_config

        model = ModelConfig(vit_token_size=cfg.model.vit_token_size)
        check_mae_config(model, cfg.data.ndim, cfg.data.patch_size)


def apply_pretext(
    crop: np.ndarray, cfg: Config, whole_range: tuple[float, float] | None = None
) -> np.ndarray:
    """``crop`` ``(C, *S)`` in raw units, crappified or masked as in training (same shape and
    dtype). ``whole_range``: :func:`data_range` of the whole image (crappify's noise scale; the
    crop's own without it)."""
    pretext = cfg.pretext
    if pretext.task == "crappify":
        from napari_ssl.pretext.crappify import crappify

        out = crappify(crop, pretext.noise, pretext.resizing_factor, seed=0, data_range=whole_range)
        return np.asarray(out)
    from napari_ssl.data.sampling import pad_reflect
    from napari_ssl.pretext.masking import preview_masked

    token, shape = cfg.model.vit_token_size, crop.shape[1:]
    padded = pad_reflect(crop, [(0, 0)] + [(0, max(0, token - n)) for n in shape])  # as training
    masked = preview_masked(padded, token, pretext.mask_type, pretext.mask_ratio, 0)
    return np.asarray(masked)[(slice(None), *(slice(0, n) for n in shape))]
