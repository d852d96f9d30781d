"""Whole-image prediction tile by tile, blended with a smooth window, in bounded memory.

Geometry, per spatial axis: the network sees tiles of ``tile`` pixels; ``padding`` pixels on each
side of a tile are context only and are thrown away, leaving a *core* of ``tile - 2 * padding``
pixels. Cores overlap their neighbours by ``overlap`` of the core and are blended with a raised
cosine window that is never 0, so every output pixel is a weighted mean of the predictions that
cover it; with ``overlap=0`` the cores sit on a fixed grid and each pixel comes from exactly one
tile. Pixels outside the image (borders, images smaller than the tile) are reflected.

Only one batch of tiles lives on the device at a time; the blended sums live in host float32
accumulators the size of the output, so device memory does not depend on the image size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from napari_ssl.data.images import Image

Predict = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class InferenceCancelled(Exception):
    """Raised by :func:`predict_tiled` when ``cancelled()`` returns True."""


def tile_starts(size: int, core: int, step: int) -> list[int]:
    """Start offsets of cores of ``core`` pixels covering ``[0, size)``.

    With ``step < core`` (overlap) the starts are at most ``step`` apart, spread evenly, and the
    last core ends exactly at ``size``. With ``step >= core`` (no overlap) the cores sit on a
    fixed grid ``0, core, 2 core, ...`` and never overlap; the last one may reach past the end
    (those pixels are reflected on input and dropped on output)."""
    if core < 1 or step < 1:
        raise ValueError(f"core ({core}) and step ({step}) must be >= 1")
    if size <= core:
        return [0]
    if step >= core:
        return list(range(0, size, core))
    count = math.ceil((size - core) / step) + 1
    return [round(i * (size - core) / (count - 1)) for i in range(count)]


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``[0, size)`` by mirror reflection (edge not
    repeated, numpy's ``reflect`` mode), for any distance outside the axis."""
    idx = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def ramp_window(core: int, taper: int) -> np.ndarray:
    """1D weights of length ``core``: 1 in the middle, a raised cosine over ``taper`` pixels at
    each end, strictly positive everywhere. ``w[k] + w[taper - 1 - k] == 1`` on the ramp, so two
    cores overlapping by exactly ``taper`` pixels sum to 1."""
    window = np.ones(core, dtype=np.float32)
    taper = min(taper, core // 2)
    if taper > 0:
        x = np.arange(1, taper + 1) / (taper + 1)
        ramp = (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)
        window[:taper] = ramp
        window[core - taper :] = ramp[::-1]
    return window


def _read_tile(image: Image, origin: Sequence[int], tile: Sequence[int]) -> np.ndarray:
    """Read a ``(C, *tile)`` block whose first pixel is at ``origin`` (may be negative or past
    the end: reflected). Only the bounding box of the needed pixels is read from ``image``."""
    region, local = [], []
    for o, t, size in zip(origin, tile, image.spatial_shape, strict=True):
        idx = reflect_indices(o, o + t, size)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        region.append(slice(lo, hi))
        local.append(idx - lo)
    block = image.read(tuple(region))
    contiguous = all(np.array_equal(ix, np.arange(len(ix))) for ix in local)
    return block if contiguous else block[(slice(None), *np.ix_(*local))]


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_tiled(
    predict: Predict,
    image: Image,
    tile: tuple[int, ...],
    *,
    normalize: Callable[[np.ndarray], np.ndarray],
    overlap: float = 0.25,
    padding: tuple[int, ...] | None = None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Predict ``image`` tile by tile and blend the tiles back.

    ``normalize`` maps a raw ``(C, *tile)`` block to float32; ``predict`` maps a ``(B, C,
    *tile)`` batch on ``device`` to ``{name: (B, C_out, *tile)}``. Returns ``{name: (C_out,
    *spatial)}`` float32 arrays of the image's spatial shape. ``progress(done, total)`` counts
    tiles and is called after each batch; ``cancelled()`` is polled before each batch.
    """
    shape = image.spatial_shape
    tile = tuple(int(t) for t in tile)
    pad = tuple(t // 8 for t in tile) if padding is None else tuple(int(p) for p in padding)
    _check_args(shape, tile, pad, overlap, batch_size)
    core = tuple(t - 2 * p for t, p in zip(tile, pad, strict=True))
    per_axis = [
        tile_starts(n, c, max(1, round(c * (1 - overlap))))
        for n, c in zip(shape, core, strict=True)
    ]
    tapers = [max(0, c - min(np.diff(s), default=c)) for s, c in zip(per_axis, core, strict=True)]
    ramps = [ramp_window(c, t) for c, t in zip(core, tapers, strict=True)]
    window = _outer(ramps)
    starts = list(itertools.product(*per_axis))

    device = torch.device(device)
    window_dev = torch.from_numpy(window).to(device)
    sums: dict[str, np.ndarray] = {}

    def load(batch: list[tuple[int, ...]]) -> torch.Tensor:
        blocks = [
            normalize(_read_tile(image, [s - p for s, p in zip(st, pad, strict=True)], tile))
            for st in batch
        ]
        return torch.from_numpy(np.ascontiguousarray(np.stack(blocks), dtype=np.float32))

    batches = list(_batches(starts, batch_size))
    done = 0
    with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
        pending: Future = pool.submit(load, batches[0])
        for i, batch in enumerate(batches):
            if cancelled is not None and cancelled():
                pending.cancel()
                raise InferenceCancelled("prediction cancelled")
            x = pending.result().to(device)
            if i + 1 < len(batches):
                pending = pool.submit(load, batches[i + 1])
            outputs = predict(x)
            for name, y in outputs.items():
                _add_batch(sums, name, y, batch, tile, pad, core, shape, window_dev)
            done += len(batch)
            if progress is not None:
                progress(done, len(starts))
    # The tiles form a grid and the window is separable, so the summed weight is too: divide
    # axis by axis, in place, without a full-size weight array.
    for axis, (n, ramp, axis_starts) in enumerate(zip(shape, ramps, per_axis, strict=True)):
        weight = _axis_weight(n, ramp, axis_starts)
        view = (None,) * (axis + 1) + (slice(None),) + (None,) * (len(shape) - axis - 1)
        for acc in sums.values():
            np.divide(acc, weight[view], out=acc)
    return sums


def _check_args(
    shape: tuple[int, ...],
    tile: tuple[int, ...],
    pad: tuple[int, ...],
    overlap: float,
    batch_size: int,
) -> None:
    if len(tile) != len(shape) or len(pad) != len(shape):
        raise ValueError(
            f"tile {tile} and padding {pad} need one value per spatial axis of the image {shape}"
        )
    for t, p in zip(tile, pad, strict=True):
        if p < 0 or t - 2 * p < 1:
            raise ValueError(
                f"padding {pad} leaves nothing of tile {tile}: use padding < tile / 2 per axis"
            )
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _outer(vectors: list[np.ndarray]) -> np.ndarray:
    out = vectors[0]
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out.astype(np.float32)


def _core_slices(
    start: tuple[int, ...], core: tuple[int, ...], shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where a core lands in the output, and which part of the core is inside the image."""
    out = tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, core, shape, strict=True))
    inner = tuple(slice(0, o.stop - o.start) for o in out)
    return out, inner


def _axis_weight(size: int, ramp: np.ndarray, starts: list[int]) -> np.ndarray:
    """Summed window weight along one axis (> 0 everywhere: the cores cover the axis)."""
    weight = np.zeros(size, dtype=np.float32)
    for s in starts:
        stop = min(s + len(ramp), size)
        weight[s:stop] += ramp[: stop - s]
    return weight


def _add_batch(
    sums: dict[str, np.ndarray],
    name: str,
    y: torch.Tensor,
    batch: list[tuple[int, ...]],
    tile: tuple[int, ...],
    pad: tuple[int, ...],
    core: tuple[int, ...],
    shape: tuple[int, ...],
    window: torch.Tensor,
) -> None:
    """Crop the context padding, weight by the window on the device, add into host sums."""
    if y.ndim != len(tile) + 2 or tuple(y.shape[2:]) != tile or y.shape[0] != len(batch):
        raise ValueError(
            f"predict output {name!r} has shape {tuple(y.shape)}; expected "
            f"({len(batch)}, C, {', '.join(map(str, tile))})"
        )
    crop = tuple(slice(p, p + c) for p, c in zip(pad, core, strict=True))
    weighted = (y[(slice(None), slice(None), *crop)].float() * window).cpu().numpy()
    acc = sums.get(name)
    if acc is None:
        acc = sums[name] = np.zeros((y.shape[1], *shape), dtype=np.float32)
    for k, st in enumerate(batch):
        out, inner = _core_slices(st, core, shape)
        acc[(slice(None), *out)] += weighted[(k, slice(None), *inner)]
