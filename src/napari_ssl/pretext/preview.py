"""What the network will see: the pretext applied to a bounded, centred crop of an image."""

from __future__ import annotations

import numpy as np

from napari_ssl.config import Config
from napari_ssl.data.images import DataError, Image


def data_range(
    image: Image, percentile_clip: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The whole image's (min, max), to which crappify's noise is scaled, as in training: of a
    sample of a huge image; the clipping bounds with ``percentile_clip``."""
    from napari_ssl.data.normalization import compute_stats

    stats = compute_stats(image, "div", percentile_clip)
    return stats.data_min, stats.data_max


def pretext_preview(
    image: Image,
    cfg: Config,
    limits: tuple[int, ...],
    whole_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The centred crop of ``image`` (at most ``limits`` per spatial axis), crappified or
    masked as in training, ``(C, *crop)`` in raw units, and where the crop starts.
    ``whole_range``: :func:`data_range` of ``image``, when known already."""
    shape = image.spatial_shape
    start = tuple(max(0, (s - m) // 2) for s, m in zip(shape, limits, strict=True))
    region = tuple(slice(b, b + min(s, m)) for b, s, m in zip(start, shape, limits, strict=True))
    crop = image.read(region)
    pretext = cfg.pretext
    if pretext.task == "crappify":
        from napari_ssl.pretext.crappify import crappify

        out = crappify(  # the noise scales with the whole image's max
            crop, pretext.noise, pretext.resizing_factor, seed=0,
            data_range=whole_range or data_range(image, cfg.data.percentile_clip),
        )  # fmt: skip
        return np.asarray(out), start
    from napari_ssl.pretext.masking import preview_masked

    token = cfg.model.vit_token_size
    if min(crop.shape[1:]) < token:
        raise DataError(
            f"the image ({crop.shape[1:]}) is smaller than one token ({token}); "
            "lower the token size."
        )
    return np.asarray(preview_masked(crop, token, pretext.mask_type, pretext.mask_ratio, 0)), start
