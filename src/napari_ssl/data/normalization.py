"""Per-image, per-channel intensity normalisation (BiaPy's three kinds), stored in checkpoints.

Every kind is an affine map ``(clip(x) - offset) / scale`` with per-channel ``offset`` and
``scale``, so the same code normalises numpy tiles and device batches and undoes it on outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_ssl.data.images import DataError, Image

MAX_STAT_ELEMENTS = 16_000_000  # per channel; larger images are estimated from a strided subsample


@dataclass(frozen=True)
class NormStats:
    """The affine normalisation of one image: per-channel arrays of shape (C,)."""

    offset: np.ndarray
    scale: np.ndarray
    clip_lo: np.ndarray | None  # percentile clipping bounds (raw units), or None
    clip_hi: np.ndarray | None
    data_min: float  # raw range of the whole image (crappify clips noise to it)
    data_max: float

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw ``(C, *S)`` -> float32 normalised."""
        x = np.asarray(x, dtype=np.float32)
        shape = (-1,) + (1,) * (x.ndim - 1)
        if self.clip_lo is not None and self.clip_hi is not None:
            x = np.clip(x, self.clip_lo.reshape(shape), self.clip_hi.reshape(shape))
        return (x - self.offset.reshape(shape)) / self.scale.reshape(shape)

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        """Normalised ``(C, *S)`` -> float32 raw units."""
        y = np.asarray(y, dtype=np.float32)
        shape = (-1,) + (1,) * (y.ndim - 1)
        return y * self.scale.reshape(shape) + self.offset.reshape(shape)


def compute_stats(
    image: Image, kind: str, percentile_clip: tuple[float, float] | None = None
) -> NormStats:
    """Statistics of one image for ``kind`` (constant images get scale 1: never NaN)."""
    sample = _subsample(image).astype(np.float64)  # (C, N)
    if not np.all(np.isfinite(sample)):
        raise DataError(
            f"{image.name}: contains NaN or infinite pixels. "
            "Replace them (e.g. with np.nan_to_num) first."
        )
    data_min, data_max = float(sample.min()), float(sample.max())
    clip_lo = clip_hi = None
    if percentile_clip is not None:
        clip_lo = np.percentile(sample, percentile_clip[0], axis=1).astype(np.float32)
        clip_hi = np.percentile(sample, percentile_clip[1], axis=1).astype(np.float32)
        sample = np.clip(sample, clip_lo[:, None], clip_hi[:, None])
    if kind == "zero_mean_unit_variance":
        offset, scale = sample.mean(axis=1), sample.std(axis=1)
    elif kind == "scale_range":
        offset = sample.min(axis=1)
        scale = sample.max(axis=1) - offset
    elif kind == "div":
        offset = np.zeros(sample.shape[0])
        scale = np.full(sample.shape[0], 255.0 if data_max <= 255 else 65535.0)
    else:
        raise DataError(f"unknown normalisation '{kind}'")
    scale = np.where(scale > 1e-12, scale, 1.0)
    return NormStats(
        offset.astype(np.float32),
        scale.astype(np.float32),
        clip_lo,
        clip_hi,
        data_min,
        data_max,
    )


def _subsample(image: Image) -> np.ndarray:
    """All pixels per channel, or a strided subsample of large (possibly lazy) images."""
    n = int(np.prod(image.spatial_shape))
    step = max(1, int(np.ceil((n / MAX_STAT_ELEMENTS) ** (1 / image.ndim))))
    region = tuple(slice(None, None, step) for _ in image.spatial_shape)
    data = image.read(region)
    return data.reshape(data.shape[0], -1)


def stats_to_dict(stats: NormStats) -> dict[str, Any]:
    """Plain builtins, for events and logs."""
    return {
        "offset": stats.offset.tolist(),
        "scale": stats.scale.tolist(),
        "clip_lo": None if stats.clip_lo is None else stats.clip_lo.tolist(),
        "clip_hi": None if stats.clip_hi is None else stats.clip_hi.tolist(),
        "data_min": stats.data_min,
        "data_max": stats.data_max,
    }
