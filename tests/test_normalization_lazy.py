"""Statistics of huge lazy images read a bounded, chunk-aligned block sample, not the image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_ssl.data import normalization
from napari_ssl.data.images import DataError, Image, as_image
from napari_ssl.data.normalization import N_BLOCKS, compute_stats, sample_blocks

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
WrapperStore = zarr.storage.WrapperStore
ZMUV = "zero_mean_unit_variance"


def mosaic(tile: np.ndarray, reps: tuple[int, int]) -> np.ndarray:
    """A real image tiled ``reps`` times over its last two axes, mirrored tile by tile."""
    rows = [
        np.concatenate(
            [tile[..., :: 1 - 2 * (i % 2), :: 1 - 2 * (j % 2)] for j in range(reps[1])], -1
        )
        for i in range(reps[0])
    ]
    return np.concatenate(rows, axis=-2)


def assert_close_to_truth(stats: Any, full: np.ndarray) -> None:
    assert stats.offset[0] == pytest.approx(full.mean(), rel=0.01)  # float64 sums
    assert stats.scale[0] == pytest.approx(full.std(), rel=0.02)
    assert full.min() <= stats.data_min <= stats.data_max <= full.max()  # of the sample


class CountingStore(WrapperStore):
    """Records every key read from the wrapped zarr store."""

    def __init__(self, store: Any, keys: list[str] | None = None) -> None:
        super().__init__(store)
        self.keys: list[str] = [] if keys is None else keys

    def _with_store(self, store: Any) -> CountingStore:
        return type(self)(store, self.keys)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.keys.append(key)
        return await self._store.get(key, prototype, byte_range)


class CountingArray:
    """A numpy array whose reads (one per dask chunk) are recorded."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        self.reads.append(key)
        return self.data[key]


def test_huge_zarr_reads_a_bounded_chunk_aligned_sample(
    sem_2d: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", N_BLOCKS * 128 * 128)  # 128² blocks
    full = mosaic(sem_2d[:1024, :1024], (4, 4)).astype(np.uint16) * 257  # 4096²: 1024 chunks
    zarr.create_array(str(tmp_path / "big.zarr"), data=full, chunks=(128, 128), compressors=None)
    store = CountingStore(zarr.storage.LocalStore(tmp_path / "big.zarr", read_only=True))
    image = as_image(zarr.open_array(store, mode="r"), "big", 2)  # as the data loaders do
    store.keys.clear()
    stats = compute_stats(image, ZMUV)
    chunk_reads = [k for k in store.keys if k.startswith("c/")]
    assert len(chunk_reads) == len(set(chunk_reads)) == N_BLOCKS  # one chunk per block, of 1024
    assert_close_to_truth(stats, full)
    again = compute_stats(image, ZMUV)  # seeded: the same blocks every time
    assert (again.offset, again.scale) == (stats.offset, stats.scale)


def test_huge_dask_blocks_follow_the_chunk_grid(
    sem_2d: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", N_BLOCKS * 256 * 256)
    full = mosaic(sem_2d, (3, 2)).astype(np.uint16) * 257  # 3072 x 3072
    source = CountingArray(full[None])
    lazy = da.from_array(source, chunks=(1, 96, 160), meta=np.empty((0, 0, 0), full.dtype))
    stats = compute_stats(Image(lazy, "dask"), ZMUV)
    touched = {(k[1].start, k[2].start) for k in source.reads}
    assert len(source.reads) == len(touched) <= 2 * N_BLOCKS  # 192 x 160 blocks: two chunks
    assert all(y % 96 == 0 and x % 160 == 0 for y, x in touched)
    assert_close_to_truth(stats, full)


def test_huge_3d_dask_volume(nuclei_3d: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", N_BLOCKS * 8 * 64 * 64)
    full = mosaic(nuclei_3d, (2, 2))  # 60 x 512 x 512
    source = CountingArray(full[None])
    lazy = da.from_array(source, chunks=(1, 8, 32, 32), meta=np.empty((0,) * 4, full.dtype))
    stats = compute_stats(Image(lazy, "vol"), ZMUV)
    touched = {tuple(k[a].start for a in (1, 2, 3)) for k in source.reads}
    assert len(source.reads) == len(touched) <= 4 * N_BLOCKS  # 32³ blocks: 4 chunks, of 2048
    assert stats.offset[0] == pytest.approx(full.mean(), rel=0.05)  # sparse nuclei: looser
    assert stats.scale[0] == pytest.approx(full.std(), rel=0.10)


def test_blocks_are_distinct_in_bounds_and_seeded() -> None:
    shape, chunks = (5000, 7001), (700, 300)  # chunks larger and smaller than the block edge
    blocks = sample_blocks(shape, chunks)
    assert blocks == sample_blocks(shape, chunks) and 48 <= len(blocks) <= N_BLOCKS
    for y, x in blocks:
        assert 0 <= y.start < y.stop <= 5000 and 0 <= x.start < x.stop <= 7001
        assert y.stop - y.start <= 512 and y.start // 700 == (y.stop - 1) // 700  # inside a chunk
        assert x.start % 300 == 0 and x.stop - x.start <= 300  # one whole chunk (the last: less)
    assert len({(y.start // 700, x.start) for y, x in blocks}) == len(blocks)  # distinct cells


def test_plane_chunked_stack_reads_one_plane_per_block() -> None:
    blocks = sample_blocks((500, 2048, 2048), (1, 2048, 2048))  # e.g. a TIFF stack via dask
    assert len(blocks) == N_BLOCKS and len({z.start for z, _, _ in blocks}) == N_BLOCKS
    assert all((z.stop - z.start, y.stop - y.start, x.stop - x.start) == (1, 512, 512)
               for z, y, x in blocks)  # fmt: skip


def test_unchunked_arrays_are_read_in_bands_of_whole_rows() -> None:
    blocks = sample_blocks((6000, 6000), None)  # e.g. a memory-mapped .npy file
    assert len(blocks) == N_BLOCKS and all(x == slice(0, 6000) for _, x in blocks)
    rows = sum(y.stop - y.start for y, _ in blocks)
    assert rows <= 6000 // 4 and len({y.start for y, _ in blocks}) == N_BLOCKS
    assert max(y.start for y, _ in blocks) > 5000  # spread to the end


def test_nan_in_the_sample_is_refused(sem_2d: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", 100_000)
    big = np.tile(sem_2d, (2, 1)).astype(np.float32)
    big[:, ::64] = np.nan  # in every band of rows
    with pytest.raises(DataError, match="NaN or infinite"):
        compute_stats(as_image(big, "nan", 2), ZMUV)


@pytest.mark.parametrize("wrap", ["numpy", "dask", "zarr"])
def test_small_images_are_read_whole_bit_identically(
    sem_2d: np.ndarray, tmp_path: Path, wrap: str
) -> None:
    full = mosaic(sem_2d, (1, 2)).astype(np.uint16) * 257  # 1024 x 3072: read whole
    array: Any = full
    if wrap == "dask":
        array = da.from_array(full, chunks=(256, 256))
    elif wrap == "zarr":
        array = zarr.create_array(str(tmp_path / "s.zarr"), data=full, chunks=(256, 256))
    image = as_image(array, "small", 2)
    full64 = full.astype(np.float64)
    stats = compute_stats(image, ZMUV)
    assert stats.offset[0] == np.float32(full64.mean())
    assert stats.scale[0] == np.float32(full64.std())
    assert (stats.data_min, stats.data_max) == (full.min(), full.max())
    clipped = compute_stats(image, "scale_range", (1.0, 99.0))
    lo, hi = np.percentile(full64, [1.0, 99.0]).astype(np.float32)
    assert (clipped.clip_lo[0], clipped.clip_hi[0]) == (lo, hi)
    assert clipped.offset[0] == lo and clipped.scale[0] == np.float32(np.float64(hi) - lo)
