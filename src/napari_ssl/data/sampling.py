"""Train/validation regions and random patch sampling, without materialising all patches.

In-memory images are copied once to the training device and cropped there; lazy images (dask,
zarr, memory-mapped) are read patch by patch on the host (by reader threads ahead of their use,
see :mod:`napari_ssl.data.prefetch`) and sent in pinned batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_ssl.data.images import Image
from napari_ssl.data.prefetch import Draw, Prefetcher, reader_threads
from napari_ssl.engine.device import to_device_async

IN_MEMORY_LIMIT = 2 * 1024**3  # bytes of float32 copies kept on the device


@dataclass(frozen=True)
class Region:
    """A box (spatial slices with explicit bounds) of one image."""

    image: int
    box: tuple[slice, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.box)


def whole_regions(images: list[Image], first: int = 0) -> list[Region]:
    """One region per image, the whole image; image numbers count from ``first``."""
    return [
        Region(first + i, tuple(slice(0, s) for s in img.spatial_shape))
        for i, img in enumerate(images)
    ]


def split_regions(
    images: list[Image], val_fraction: float, patch_size: tuple[int, ...]
) -> tuple[list[Region], list[Region]]:
    """Hold out ``val_fraction`` for validation: whole images when there are enough, else a slab.

    When ``round(len(images) * val_fraction)`` is at least one (and leaves one to train on), whole
    images are held out; otherwise the last slab of each image along its longest axis (at least
    one patch deep, at most half).
    """
    full = whole_regions(images)
    if val_fraction <= 0:
        return full, []
    n_val = round(len(images) * val_fraction)
    if n_val >= 1 and len(images) - n_val >= 1:
        return full[: len(images) - n_val], full[len(images) - n_val :]
    train, val = [], []
    for region in full:
        shape = region.shape
        axis = int(np.argmax(shape))
        length = shape[axis]
        depth = min(max(round(length * val_fraction), patch_size[axis]), length // 2)
        if depth < 1:
            train.append(region)
            continue
        cut = length - depth
        before = list(region.box)
        after = list(region.box)
        before[axis] = slice(0, cut)
        after[axis] = slice(cut, length)
        train.append(Region(region.image, tuple(before)))
        val.append(Region(region.image, tuple(after)))
    return train, val


def read_patch(
    image: Image, region: Region, start: tuple[int, ...], patch: tuple[int, ...]
) -> np.ndarray:
    """Read ``patch`` at ``start`` (relative to the region), reflect-padded where it is small."""
    box = []
    pads = [(0, 0)]
    for s, p, rs in zip(start, patch, region.box, strict=True):
        lo = rs.start + s
        hi = min(lo + p, rs.stop)
        box.append(slice(lo, hi))
        pads.append((0, p - (hi - lo)))
    # a dask graph (a patch: a few chunks) computed in the calling thread: dask's threaded
    # scheduler keeps a thread pool per calling thread, alive after a reader thread ends
    data = image.read(tuple(box), scheduler="synchronous")
    if any(after for _, after in pads):
        data = pad_reflect(data, pads)
    return data


def pad_reflect(data: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """Reflect padding that also works for pads larger than the axis (repeats the reflection)."""
    for axis, (before, after) in enumerate(pads):
        while before or after:
            size = data.shape[axis]
            mode = "reflect" if size > 1 else "edge"
            b, a = min(before, size - 1 or 1), min(after, size - 1 or 1)
            width = [(0, 0)] * data.ndim
            width[axis] = (b, a)
            data = np.pad(data, width, mode=mode)
            before, after = before - b, after - a
    return data


def coverage_count(regions: list[Region], patch_size: tuple[int, ...]) -> int:
    """Patches needed to cover the regions once (an epoch, as BiaPy counts it)."""
    total = sum(
        math.prod(math.ceil(s / p) for s, p in zip(r.shape, patch_size, strict=True))
        for r in regions
    )
    return max(1, total)


def grid_starts(region: Region, patch: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Non-overlapping patch corners covering a region (the last one flush with its end)."""
    per_axis = []
    for size, p in zip(region.shape, patch, strict=True):
        n = max(1, math.ceil(size / p))
        per_axis.append(sorted({min(i * p, max(0, size - p)) for i in range(n)}))
    grids = np.meshgrid(*per_axis, indexing="ij")
    return [tuple(int(g.flat[i]) for g in grids) for i in range(grids[0].size)]


class PatchSampler:
    """Random patches of the given regions, as float32 raw-unit batches on ``device``.

    The positions are drawn in the calling thread, in a fixed order, so the batches depend on the
    seed only; within :meth:`prefetching`, threads read lazy patches ahead of their use.
    """

    def __init__(
        self,
        images: list[Image],
        regions: list[Region],
        patch_size: tuple[int, ...],
        device: torch.device,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.regions = regions
        self.patch = tuple(patch_size)
        self.device = device
        self.rng = np.random.default_rng(seed)
        weights = np.array([math.prod(r.shape) for r in regions], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.on_device = self._fits_in_memory() and self._load_to_device()
        self._prefetcher: Prefetcher | None = None

    def is_large(self) -> bool:
        """Whether the regions take :data:`IN_MEMORY_LIMIT` or more as float32."""
        size = sum(math.prod(r.shape) * self.images[r.image].channels for r in self.regions)
        return size * 4 >= IN_MEMORY_LIMIT

    def _fits_in_memory(self) -> bool:
        arrays = [self.images[r.image].array for r in self.regions]
        if not all(isinstance(a, np.ndarray) and not isinstance(a, np.memmap) for a in arrays):
            return False
        return not self.is_large()

    def _load_to_device(self) -> bool:
        """Each region, padded up to the patch, as one float32 tensor on the device."""
        self.tensors = []
        for r in self.regions:
            data = read_patch(
                self.images[r.image], r, (0,) * len(self.patch), _at_least(r.shape, self.patch)
            )
            self.tensors.append(torch.from_numpy(data.astype(np.float32)).to(self.device))
        return True

    def release(self) -> None:
        """Drop the device copies of the images."""
        self.tensors = []
        self.on_device = False

    def reader_threads(self, num_workers: int) -> int:
        """Threads :meth:`prefetching` starts for ``SYSTEM.NUM_WORKERS`` (none on the device)."""
        return 0 if self.on_device else reader_threads(num_workers)

    @contextlib.contextmanager
    def prefetching(self, num_workers: int) -> Iterator[None]:
        """Within the block, ``SYSTEM.NUM_WORKERS`` threads read lazy patches ahead (-1: automatic,
        0: none); they end with the block."""
        threads = self.reader_threads(num_workers)
        if threads == 0:
            yield
            return
        self._prefetcher = Prefetcher(self, threads)
        try:
            yield
        finally:
            self._prefetcher.close()
            self._prefetcher = None

    def rng_state(self) -> dict[str, Any]:
        """The RNG state as of the batches handed out (what a resumed run continues from)."""
        if self._prefetcher is not None:
            return self._prefetcher.rng_state()
        return self.rng.bit_generator.state

    def draw(self, n: int) -> Draw:
        """Random regions (weighted by size) and patch corners for ``n`` patches."""
        state = self.rng.bit_generator.state
        which = self.rng.choice(len(self.regions), size=n, p=self.weights)
        starts = tuple(
            tuple(
                int(self.rng.integers(0, max(1, s - p + 1)))
                for s, p in zip(self.regions[k].shape, self.patch, strict=True)
            )
            for k in which
        )
        return Draw(tuple(int(k) for k in which), starts, state)

    def empty_batch(self, n: int) -> torch.Tensor:
        """A host buffer for ``n`` patches (pinned for a CUDA device)."""
        shape = (n, self.images[0].channels, *self.patch)
        return torch.empty(shape, dtype=torch.float32, pin_memory=self.device.type == "cuda")

    def read_into(self, out: np.ndarray, i: int, draw: Draw) -> None:
        """Read patch ``i`` of ``draw`` into ``out[i]`` (any thread)."""
        region = self.regions[draw.regions[i]]
        out[i] = read_patch(self.images[region.image], region, draw.starts[i], self.patch)

    def _read_here(self, n: int) -> tuple[torch.Tensor, Draw]:
        """The next ``n`` patches, read in this thread."""
        draw, host = self.draw(n), self.empty_batch(n)
        view = host.numpy()
        for i in range(n):
            self.read_into(view, i, draw)
        return host, draw

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random patches (n, C, *patch) on the device and their image indices (n,)."""
        if self.on_device:
            draw = self.draw(n)
            batch = torch.stack(
                [
                    self.tensors[k][(slice(None), *_box(start, self.patch))]
                    for k, start in zip(draw.regions, draw.starts, strict=True)
                ]
            )
        else:
            reader = self._prefetcher.next if self._prefetcher is not None else self._read_here
            host, draw = reader(n)
            batch = to_device_async(host, self.device)
        index = to_device_async(
            torch.as_tensor([self.regions[k].image for k in draw.regions]), self.device
        )
        return batch, index


def _box(start: tuple[int, ...], patch: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))


def _at_least(shape: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(s, p) for s, p in zip(shape, patch, strict=True))


def validation_patches(
    images: list[Image], regions: list[Region], patch_size: tuple[int, ...], limit: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed non-overlapping patches of the validation regions (evenly thinned to ``limit``)."""
    picks = [(k, start) for k, r in enumerate(regions) for start in grid_starts(r, patch_size)]
    if len(picks) > limit:
        picks = [picks[i] for i in np.linspace(0, len(picks) - 1, limit).round().astype(int)]
    data = [read_patch(images[regions[k].image], regions[k], s, patch_size) for k, s in picks]
    index = np.array([regions[k].image for k, _ in picks])
    return np.stack(data).astype(np.float32), index
