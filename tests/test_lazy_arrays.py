"""zarr (and h5py) images through the lazy :class:`ChannelsFirst` view: patches equal numpy's in
every channel layout, each patch is one read of its own chunks, statistics match the dask and
numpy paths, and a tiny run trains and reconstructs, on real SEM / nuclei crops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_ssl.data import normalization
from napari_ssl.data.images import ChannelsFirst, as_image
from napari_ssl.data.normalization import N_BLOCKS, compute_stats
from napari_ssl.data.sampling import PatchSampler, split_regions, validation_patches
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import load_trained
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import ResultsLayout
from test_normalization_lazy import CountingStore
from test_training import (  # shared helpers and fixtures
    no_charts,  # noqa: F401
    one_thread,  # noqa: F401
    run_events,
    tiny_config,
)

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
CPU = torch.device("cpu")
ZMUV = "zero_mean_unit_variance"


class Recording:
    """A lazy array whose reads are recorded; numpy may not convert it whole."""

    def __init__(self, source: Any) -> None:
        self.source, self.shape, self.dtype = source, source.shape, source.dtype
        self.chunks = getattr(source, "chunks", None)
        self.reads: list[tuple] = []

    def __getitem__(self, key: tuple) -> np.ndarray:
        self.reads.append(key)
        return self.source[key]

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole array was materialised")


def two_channels(sem_2d: np.ndarray, nuclei_3d: np.ndarray, ndim: int) -> np.ndarray:
    """Channels first: a real crop and its inverse, (2, 96, 128) or (2, 12, 48, 64)."""
    crop = sem_2d[:96, :128].astype(np.uint16) if ndim == 2 else nuclei_3d[20:32, :48, :64]
    return np.stack([crop, crop.max() - crop])


def layout(ref: np.ndarray, axis: int | None) -> np.ndarray:
    """``ref`` (C, *S) in the source's layout: channel axis at ``axis``, or none (C == 1)."""
    return ref[0] if axis is None else np.moveaxis(ref, 0, axis)


def write_zarr(path: Path, data: np.ndarray, axis: int | None) -> Any:
    """``data`` as a compressed zarr v3 array chunked 16 (Z: 4) per spatial axis, 1 per channel."""
    chunks = [4 if s <= 12 else 16 for s in data.shape]
    if axis is not None:
        chunks[axis % data.ndim] = 1
    zarr.create_array(str(path), data=data, chunks=tuple(chunks))
    return zarr.open_array(str(path), mode="r")


LAYOUTS = [(2, None), (2, 0), (2, 1), (2, -1), (3, None), (3, 0), (3, 2), (3, -1)]


@pytest.mark.parametrize(("ndim", "axis"), LAYOUTS)
def test_patches_equal_numpy_in_every_channel_layout(
    sem_2d: np.ndarray, nuclei_3d: np.ndarray, tmp_path: Path, ndim: int, axis: int | None
) -> None:
    ref = two_channels(sem_2d, nuclei_3d, ndim)
    if axis is None:
        ref = ref[:1]
    source = Recording(write_zarr(tmp_path / "img.zarr", layout(ref, axis), axis))
    image = as_image(source, "img", ndim, axis)
    view = image.array
    assert isinstance(view, ChannelsFirst) and (view.shape, view.ndim) == (ref.shape, ndim + 1)
    assert view.dtype == ref.dtype and image.spatial_shape == ref.shape[1:]
    assert view.chunks == (1, *(4 if s <= 12 else 16 for s in ref.shape[1:]))
    assert source.reads == []  # wrapping reads nothing
    region = (slice(5, 37), slice(17, 41)) if ndim == 2 else (slice(3, 9), *[slice(7, 30)] * 2)
    keys = [
        (slice(None), *region),  # what Image.read asks for
        (0, *region),  # one channel
        (slice(-1, None), 4),  # the last channel, an int spatial index, the rest whole
        (slice(None), slice(1, 40, 3)),  # a step
        -1,
        (),
    ]
    for key in keys:
        source.reads.clear()
        np.testing.assert_array_equal(view[key], ref[key])
        assert len(source.reads) == 1  # one read of the source per key
    np.testing.assert_array_equal(image.read(region), ref[(slice(None), *region)])
    np.testing.assert_array_equal(np.asarray(view, dtype=np.float32), ref.astype(np.float32))


def test_bad_keys_are_refused(sem_2d: np.ndarray, tmp_path: Path) -> None:
    view = ChannelsFirst(write_zarr(tmp_path / "s.zarr", sem_2d[:32, :32], None), None)
    with pytest.raises(IndexError, match="4 indices for a 3-axis array"):
        view[0, 1, 2, 3]
    with pytest.raises(TypeError):
        view[:, np.array([1, 2])]  # no fancy indexing: not what zarr's basic slicing takes


def test_sampling_reads_patches_never_the_image(sem_2d: np.ndarray, tmp_path: Path) -> None:
    data = np.stack([sem_2d[:256, :256], 255 - sem_2d[:256, :256]], axis=-1)  # YXC
    zarr.create_array(str(tmp_path / "s.zarr"), data=data, chunks=(32, 32, 2))
    store = CountingStore(zarr.storage.LocalStore(tmp_path / "s.zarr", read_only=True))
    source = Recording(zarr.open_array(store, mode="r"))
    image = as_image(source, "s", 2, channel_axis=-1)
    train, val = split_regions([image], 0.1, (32, 32))
    sampler = PatchSampler([image], train, (32, 32), CPU, seed=0)
    assert not sampler.on_device
    store.keys.clear()
    batch, _ = sampler.sample(6)
    assert batch.shape == (6, 2, 32, 32)
    assert [key[2] for key in source.reads] == [slice(None)] * 6  # all channels
    sizes = [math.prod(s.stop - s.start for s in key[:2]) for key in source.reads]
    assert sizes == [32 * 32] * 6  # one patch-sized read per patch
    chunk_reads = [k for k in store.keys if k.startswith("c/")]
    assert 6 <= len(chunk_reads) <= 6 * 4  # a 32² patch touches at most 4 chunks of 32²
    for patch, (y, x, _) in zip(batch, source.reads, strict=True):  # real crops, channels first
        want = np.moveaxis(data[y, x], -1, 0).astype(np.float32)
        np.testing.assert_array_equal(patch.numpy(), want)
    source.reads.clear()
    patches, _ = validation_patches([image], val, (32, 32))
    assert len(source.reads) == len(patches) and patches.shape[1:] == (2, 32, 32)


@pytest.mark.parametrize("sampled", [False, True])
def test_statistics_equal_the_dask_and_numpy_paths(
    nuclei_3d: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sampled: bool
) -> None:
    if sampled:  # a block sample, not the whole image
        monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", N_BLOCKS * 4 * 16 * 16)
    data = layout(two_channels(np.empty(0), nuclei_3d, 3), 2)  # ZYCX
    z = write_zarr(tmp_path / "v.zarr", data, 2)
    images = {
        "zarr": as_image(z, "v", 3, channel_axis=2),
        "dask": as_image(da.from_zarr(z), "v", 3, channel_axis=2),
        "numpy": as_image(data, "v", 3, channel_axis=2),
    }
    assert isinstance(images["zarr"].array, ChannelsFirst)
    assert hasattr(images["dask"].array, "compute")  # dask stays dask
    for kind, clip in [(ZMUV, None), ("scale_range", (1.0, 99.0))]:
        stats = {name: compute_stats(image, kind, clip) for name, image in images.items()}
        same_as = ["dask"] if sampled else ["dask", "numpy"]  # numpy: unchunked, other blocks
        for name in same_as:
            for field in ("offset", "scale", "clip_lo", "clip_hi", "data_min", "data_max"):
                got, want = getattr(stats["zarr"], field), getattr(stats[name], field)
                np.testing.assert_array_equal(got, want, err_msg=f"{kind} {field} vs {name}")


def test_zarr_image_trains_and_reconstructs(sem_2d: np.ndarray, tmp_path: Path) -> None:
    crop = sem_2d[:96, :128]
    source = write_zarr(tmp_path / "s.zarr", np.stack([crop, 255 - crop], axis=-1), -1)
    image = as_image(source, "zarr", 2, channel_axis=-1)
    results = ResultsLayout(tmp_path, "zarr", 1)
    events = run_events(tiny_config(epochs=1), [image], results)
    assert isinstance(events[-1], ev.Finished)
    out = reconstruct(load_trained(results.best_checkpoint), image, device="cpu")
    assert out["reconstruction"].shape == (2, 96, 128)
    assert np.isfinite(out["reconstruction"]).all()


def test_h5py_dataset_reads_through_the_view(nuclei_3d: np.ndarray, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    ref = two_channels(np.empty(0), nuclei_3d, 3)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("x", data=layout(ref, -1), chunks=(4, 16, 16, 2))
    with h5py.File(tmp_path / "v.h5", "r") as f:
        image = as_image(f["x"], "h5", 3, channel_axis=-1)
        assert isinstance(image.array, ChannelsFirst) and image.array.chunks == (2, 4, 16, 16)
        region = (slice(2, 10), slice(5, 37), slice(0, 64))
        np.testing.assert_array_equal(image.read(region), ref[(slice(None), *region)])
        np.testing.assert_array_equal(image.read(), ref)
