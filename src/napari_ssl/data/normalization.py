"""Per-image, per-channel intensity normalisation (BiaPy's three kinds), stored in checkpoints.

Every kind is an affine map ``(clip(x) - offset) / scale`` with per-channel ``offset`` and
``scale``, so the same code normalises numpy tiles and device batches and undoes it on outputs.
``zero_mean_unit_variance`` may take a fixed mean and/or std (raw units, one value for all
channels or one per channel) instead of each image's own, applied after the percentile clipping,
as BiaPy 3.7.1 applies DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL / STD_VAL. The checkpoint's
``normalization`` entry (:func:`norm_record`) holds all of it; :func:`stats_for` follows it.
Undoing it clips outputs back to the range the model was given, as BiaPy 3.7.1 does: the
percentile-clipping bounds, ``[0, 1]`` in normalised units for ``scale_range`` and ``div`` (when
the statistics are the whole image's, not a sample's: the network sees the rest unclipped), and
an integer image's type range (outputs stay float32).

Images of at most :data:`MAX_STAT_ELEMENTS` pixels per channel are read whole. Larger (lazy)
images are estimated from a seeded sample of about :data:`N_BLOCKS` blocks spread over the
image, aligned to the chunk grid of zarr / dask arrays (bands of whole rows for memory-mapped
ones), so one call reads a bounded number of chunks instead of the whole image: the NaN/inf
check, ``data_min`` / ``data_max`` (hence crappify's noise range and ``div``'s 255 / 65535
choice) and every statistic then describe that sample only. With percentile clipping,
``data_min`` / ``data_max`` are the clipping bounds: crappify's noise then scales with the
clipped maximum, so a few hot pixels do not drown the image in noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_ssl.data.images import DataError, Image

if TYPE_CHECKING:
    from napari_ssl.config import DataConfig

MAX_STAT_ELEMENTS = 2**24  # per channel; larger images are estimated from N_BLOCKS blocks
N_BLOCKS = 64
SEED = 0


@dataclass(frozen=True)
class NormStats:
    """The affine normalisation of one image: per-channel arrays of shape (C,)."""

    offset: np.ndarray
    scale: np.ndarray
    clip_lo: np.ndarray | None  # percentile clipping bounds (raw units), or None
    clip_hi: np.ndarray | None
    data_min: float  # raw range (of a sample when huge; the clipping bounds when clipped)
    data_max: float
    out_lo: np.ndarray | None = None  # outputs are clipped to this raw range (per channel)
    out_hi: np.ndarray | None = None

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw ``(C, *S)`` -> float32 normalised."""
        x = np.asarray(x, dtype=np.float32)
        shape = (-1,) + (1,) * (x.ndim - 1)
        if self.clip_lo is not None and self.clip_hi is not None:
            x = np.clip(x, self.clip_lo.reshape(shape), self.clip_hi.reshape(shape))
        return (x - self.offset.reshape(shape)) / self.scale.reshape(shape)

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        """Normalised ``(C, *S)`` -> float32 raw units, within ``out_lo`` .. ``out_hi``."""
        y = np.asarray(y, dtype=np.float32)
        shape = (-1,) + (1,) * (y.ndim - 1)
        x = y * self.scale.reshape(shape) + self.offset.reshape(shape)
        if self.out_lo is not None and self.out_hi is not None:
            np.clip(x, self.out_lo.reshape(shape), self.out_hi.reshape(shape), out=x)
        return x


def norm_record(data: DataConfig) -> dict[str, Any]:
    """The checkpoint's ``normalization`` entry: how any image is normalised for this model."""
    clip, mean, std = data.percentile_clip, data.normalization_mean, data.normalization_std
    return {
        "type": data.normalization,
        "percentile_clip": [float(c) for c in clip] if clip else None,
        "mean": [float(v) for v in mean] if mean else None,
        "std": [float(v) for v in std] if std else None,
        "per_image": clip is not None or mean is None or std is None,
    }


def stats_for(image: Image, record: Mapping[str, Any]) -> NormStats:
    """Statistics of ``image`` as a :func:`norm_record` entry prescribes."""
    clip = record.get("percentile_clip")
    return compute_stats(
        image,
        record["type"],
        tuple(clip) if clip else None,
        mean=record.get("mean"),
        std=record.get("std"),
    )


def compute_stats(
    image: Image,
    kind: str,
    percentile_clip: tuple[float, float] | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> NormStats:
    """Statistics of one image for ``kind`` (constant images get scale 1: never NaN).

    ``mean`` / ``std`` (zero_mean_unit_variance): fixed values used instead of the image's.
    Huge images (over :data:`MAX_STAT_ELEMENTS` pixels per channel) are estimated from a block
    sample; NaN/inf pixels and the ``data_min`` / ``data_max`` range are then those of the sample.
    """
    sample = _sample(image, _work_dtype(image.dtype, percentile_clip))  # (C, N), our own copy
    if image.dtype.kind not in "iu" and not np.all(np.isfinite(sample)):
        raise DataError(
            f"{image.name}: contains NaN or infinite pixels. "
            "Replace them (e.g. with np.nan_to_num) first."
        )
    data_min, data_max = float(sample.min()), float(sample.max())
    div_scale = 255.0 if data_max <= 255 else 65535.0  # by the data as it is
    clip_lo = clip_hi = None
    if percentile_clip is not None:
        clip_lo, clip_hi = np.percentile(sample, percentile_clip, axis=1).astype(np.float32)
        np.clip(sample, clip_lo[:, None], clip_hi[:, None], out=sample)
        # the range crappify scales its noise to and clips into: hot pixels do not set it
        data_min, data_max = float(clip_lo.min()), float(clip_hi.max())
    if kind == "zero_mean_unit_variance":
        offset = _fixed(mean, image) if mean else sample.mean(axis=1, dtype=np.float64)
        scale = _fixed(std, image) if std else sample.std(axis=1, dtype=np.float64)
    elif kind == "scale_range":
        offset = sample.min(axis=1)
        scale = sample.max(axis=1) - offset
    elif kind == "div":
        offset = np.zeros(sample.shape[0])
        scale = np.full(sample.shape[0], div_scale)
    else:
        raise DataError(f"unknown normalisation '{kind}'")
    offset = offset.astype(np.float32)
    scale = np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
    out_lo, out_hi = clip_lo, clip_hi  # as BiaPy 3.7.1 undoes the three kinds
    whole = math.prod(image.spatial_shape) <= MAX_STAT_ELEMENTS  # else a sample's range
    if kind != "zero_mean_unit_variance" and whole:  # [0, 1] in normalised units
        out_lo, out_hi = offset, offset + scale
    if image.dtype.kind in "iu":  # and within the integer type's range (BiaPy casts back)
        info, channels = np.iinfo(image.dtype), len(offset)
        out_lo = np.full(channels, info.min, np.float32) if out_lo is None else out_lo
        out_hi = np.full(channels, info.max, np.float32) if out_hi is None else out_hi
        out_lo, out_hi = np.maximum(out_lo, info.min), np.minimum(out_hi, info.max)
    return NormStats(offset, scale, clip_lo, clip_hi, data_min, data_max, out_lo, out_hi)


def _fixed(values: Sequence[float], image: Image) -> np.ndarray:
    """Fixed values per channel: one for every channel, or one each."""
    if len(values) not in (1, image.channels):
        raise DataError(
            f"{image.name} has {image.channels} channel(s) but the fixed normalisation values "
            f"{list(values)} (data.normalization_mean / _std, BiaPy DATA.NORMALIZATION."
            "ZERO_MEAN_UNIT_VAR.MEAN_VAL / STD_VAL) are not one value or one per channel."
        )
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (image.channels,))


def _work_dtype(dtype: np.dtype, percentile_clip: tuple[float, float] | None) -> type:
    """float32 where it changes no statistic, else float64.

    Integers of up to 16 bits are exact in float32 and their float64 sums are exact, so mean and
    std (accumulated in float64) match a float64 copy bit for bit; percentile interpolation and
    the sums of clipped values round differently in float32, so clipping keeps float64.
    """
    small_int = dtype.kind in "iu" and dtype.itemsize <= 2
    return np.float32 if small_int and percentile_clip is None else np.float64


def _sample(image: Image, dtype: type) -> np.ndarray:
    """All pixels per channel as ``(C, N)`` ``dtype``, or those of :func:`sample_blocks`."""
    if math.prod(image.spatial_shape) <= MAX_STAT_ELEMENTS:
        return image.read().reshape(image.channels, -1).astype(dtype)
    regions = sample_blocks(image.spatial_shape, _spatial_chunks(image.array, image.ndim))
    sizes = [math.prod(s.stop - s.start for s in region) for region in regions]
    out = np.empty((image.channels, sum(sizes)), dtype)
    pos = 0
    for region, size in zip(regions, sizes, strict=True):
        out[:, pos : pos + size] = image.read(region).reshape(image.channels, -1)
        pos += size
    return out


def sample_blocks(
    shape: tuple[int, ...], chunks: tuple[int, ...] | None
) -> list[tuple[slice, ...]]:
    """About :data:`N_BLOCKS` seeded random blocks spread over an image of spatial ``shape``.

    Blocks hold about ``MAX_STAT_ELEMENTS / N_BLOCKS`` pixels, at most a quarter of the image in
    all (as the former stride-2 subsample), shaped by :func:`_block_shape`. The image is cut into
    cells, one block or (where a chunk is larger) one chunk each; the cell grid is split into at
    most ``N_BLOCKS`` equal strata and one random cell of each is read, the block at a random
    offset in a larger chunk. So each block reads only its own chunks.
    """
    budget = max(1, min(MAX_STAT_ELEMENTS, math.prod(shape) // 4) // N_BLOCKS)
    block = _block_shape(shape, chunks, budget)
    cell = block if chunks is None else [max(b, c) for b, c in zip(block, chunks, strict=True)]
    grid = [math.ceil(s / c) for s, c in zip(shape, cell, strict=True)]
    strata = _strata(grid, N_BLOCKS)
    rng = np.random.default_rng(SEED)
    regions = []
    for stratum in np.ndindex(*strata):
        region = []
        for j, k, g, b, c, s in zip(stratum, strata, grid, block, cell, shape, strict=True):
            start = int(rng.integers(j * g // k, (j + 1) * g // k)) * c
            slack = min(c, s - start) - b
            start += int(rng.integers(slack + 1)) if slack > 0 else 0
            region.append(slice(start, min(start + b, s)))
        regions.append(tuple(region))
    return regions


def _block_shape(shape: tuple[int, ...], chunks: tuple[int, ...] | None, budget: int) -> list[int]:
    """The largest block of at most ``budget`` pixels that reads the fewest chunks or pages.

    Unchunked (numpy, memory-mapped) arrays: bands of whole rows, contiguous in memory. Chunks
    of at least ``budget`` pixels: a part of one chunk, its longest edges cut first (e.g. 512 x
    512 of a 1 x 2048 x 2048 plane). Smaller chunks: whole chunks, as many per axis as fit.
    """
    if chunks is None:
        edges: list[int] = []
        for s in reversed(shape):
            edges.insert(0, max(1, min(s, budget)))
            budget //= edges[0]
        return edges
    chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))
    within = math.prod(chunks) >= budget

    def edges_at(t: int) -> list[int]:
        return [min(c, t) if within else max(c, t // c * c) for c in chunks]

    lo, hi = 1, max(shape)  # the largest edge cap t whose block fits the budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if math.prod(edges_at(mid)) <= budget else (lo, mid - 1)
    return [min(e, s) for e, s in zip(edges_at(lo), shape, strict=True)]


def _strata(grid: list[int], n: int) -> list[int]:
    """Strata per axis, at most ``n`` in all: the axis with the most cells per stratum is split."""
    k = [1] * len(grid)
    while True:
        a = max(range(len(grid)), key=lambda i: grid[i] / k[i])
        if k[a] == grid[a] or math.prod(k) // k[a] * (k[a] + 1) > n:
            return k
        k[a] += 1


def _spatial_chunks(array: Any, ndim: int) -> tuple[int, ...] | None:
    """Chunk edge per spatial axis, None when unchunked (dask: its first chunk stands for all)."""
    chunks = getattr(array, "chunks", None)
    if not chunks:
        return None
    return tuple(int(c) if np.isscalar(c) else int(c[0]) for c in chunks[-ndim:])
