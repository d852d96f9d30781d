"""Data: folders of tif / tiff / png / npy / zarr, axes and channels, normalisation, lazy patch
sampling, validation split, augmentation, and bad inputs, on real SEM / nuclei crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage

from napari_ssl.data.folders import list_images, load_folder, load_image, resolve_dataset
from napari_ssl.data.images import ChannelsFirst, DataError, Image, as_image
from napari_ssl.data.normalization import compute_stats
from napari_ssl.data.sampling import (
    PatchSampler,
    read_patch,
    split_regions,
    validation_patches,
)
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import load_trained
from napari_ssl.engine.checks import size_notes
from napari_ssl.engine.tasks import StatsTable, augment
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import ResultsLayout
from test_training import (  # shared helpers and fixtures
    no_charts,  # noqa: F401
    of_type,
    one_thread,  # noqa: F401
    run_events,
    tiny_config,
)

CPU = torch.device("cpu")


def _write(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array, **kw)
    elif suffix == ".png":
        PILImage.fromarray(array).save(path)
    elif suffix == ".npy":
        np.save(path, array)
    return path


# ----- reading


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".png", ".npy"])
def test_read_2d_formats(sem_2d: np.ndarray, tmp_path: Path, suffix: str) -> None:
    crop = sem_2d[:40, :56]
    image = load_image(_write(tmp_path / f"sem{suffix}", crop), ndim=2)
    assert image.name == "sem" and image.channels == 1 and image.spatial_shape == (40, 56)
    np.testing.assert_array_equal(image.read()[0], crop)
    assert image.dtype == np.uint8


def test_folder_sorted_and_filtered(sem_2d: np.ndarray, tmp_path: Path) -> None:
    folder = tmp_path / "dataset" / "train" / "x"
    for name in ("b.tif", "a.PNG", "c.npy"):
        _write(folder / name.lower(), sem_2d[:32, :32])
    (folder / "notes.txt").write_text("not an image")
    (folder / "._b.tif").write_bytes(b"\x00\x05\x16\x07")  # macOS' resource fork of b.tif
    assert [p.name for p in list_images(folder)] == ["a.png", "b.tif", "c.npy"]
    assert resolve_dataset(tmp_path / "dataset", "train") == folder
    assert resolve_dataset(folder, "train") == folder
    assert len(load_folder(folder, 2)) == 3


def test_read_3d_stack(nuclei_3d: np.ndarray, tmp_path: Path) -> None:
    crop = nuclei_3d[:6, :40, :48]
    image = load_image(_write(tmp_path / "n.tif", crop), ndim=3)
    assert (image.channels, image.spatial_shape, image.dtype) == (1, (6, 40, 48), np.uint16)
    np.testing.assert_array_equal(image.read()[0], crop)


def test_trailing_channel_axis(sem_2d: np.ndarray, nuclei_3d: np.ndarray, tmp_path: Path) -> None:
    two = np.stack([sem_2d[:32, :40], 255 - sem_2d[:32, :40]], axis=-1)  # (Y, X, C)
    image = load_image(_write(tmp_path / "two.npy", two), ndim=2)
    assert (image.channels, image.spatial_shape) == (2, (32, 40))
    np.testing.assert_array_equal(image.read()[1], two[..., 1])
    stack = np.stack([nuclei_3d[:4, :16, :24]] * 3, axis=-1)  # (Z, Y, X, C)
    image3 = load_image(_write(tmp_path / "zyxc.tif", stack), ndim=3)
    assert (image3.channels, image3.spatial_shape) == (3, (4, 16, 24))


def test_imagej_channel_axis(sem_2d: np.ndarray, nuclei_3d: np.ndarray, tmp_path: Path) -> None:
    cyx = np.stack([sem_2d[:32, :40], sem_2d[32:64, :40]])
    path = _write(tmp_path / "cyx.tif", cyx, imagej=True, metadata={"axes": "CYX"})
    image = load_image(path, ndim=2)
    assert (image.channels, image.spatial_shape) == (2, (32, 40))
    np.testing.assert_array_equal(image.read(), cyx)
    zcyx = np.stack([nuclei_3d[:5, :16, :24], nuclei_3d[5:10, :16, :24]], axis=1)
    path = _write(tmp_path / "zcyx.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    image3 = load_image(path, ndim=3)
    assert (image3.channels, image3.spatial_shape) == (2, (5, 16, 24))
    np.testing.assert_array_equal(image3.read()[1], zcyx[:, 1])


def test_rgb_png_is_three_channels(sem_2d: np.ndarray, tmp_path: Path) -> None:
    rgb = np.stack([sem_2d[:24, :32]] * 3, axis=-1)
    image = load_image(_write(tmp_path / "rgb.png", rgb), ndim=2)
    assert (image.channels, image.spatial_shape) == (3, (24, 32))


def test_zarr_array_is_read_lazily(sem_2d: np.ndarray, tmp_path: Path) -> None:
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp_path / "sem.zarr"), mode="w", shape=(64, 96), chunks=(32, 32),
                        dtype="u1")  # fmt: skip
    z[:] = sem_2d[:64, :96]
    image = load_image(tmp_path / "sem.zarr", ndim=2)
    assert isinstance(image.array, ChannelsFirst)  # still lazy, and not wrapped in dask
    np.testing.assert_array_equal(image.read((slice(8, 24), slice(0, 16)))[0], sem_2d[8:24, :16])


# ----- normalisation


def test_zero_mean_unit_variance_per_image_and_channel(sem_2d: np.ndarray) -> None:
    crop = sem_2d[:64, :64].astype(np.float32)
    two = np.stack([crop, 1000 + 50 * crop])
    stats = compute_stats(Image(two, "two"), "zero_mean_unit_variance")
    out = stats.normalize(two)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(stats.denormalize(out), two, rtol=1e-5)
    other = compute_stats(Image(two[:, :32] * 2, "other"), "zero_mean_unit_variance")
    assert not np.allclose(other.offset, stats.offset)  # per image
    assert stats.data_max == pytest.approx(two.max())


def test_training_batches_use_each_images_own_statistics(sem_2d: np.ndarray) -> None:
    dim = sem_2d[:64, :64][None].astype(np.float32)
    bright = 5000 + 40 * sem_2d[64:128, :64][None].astype(np.float32)
    stats = [compute_stats(Image(a, n), "zero_mean_unit_variance") for a, n in ((dim, "d"),
             (bright, "b"))]  # fmt: skip
    table = StatsTable(stats, CPU)
    batch = torch.from_numpy(np.stack([dim, bright]))
    out = table.normalize(batch, torch.tensor([0, 1]))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(table.denormalize(out, torch.tensor([0, 1])), batch, rtol=1e-5,
                               atol=1e-2)  # fmt: skip


def test_scale_range_and_div(sem_2d: np.ndarray, nuclei_3d: np.ndarray) -> None:
    crop = sem_2d[:64, :64][None]
    out = compute_stats(Image(crop, "s"), "scale_range").normalize(crop)
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)
    np.testing.assert_allclose(compute_stats(Image(crop, "s"), "div").normalize(crop), crop / 255)
    stack = nuclei_3d[:4, :32, :32][None]
    div16 = compute_stats(Image(stack, "n"), "div").normalize(stack)
    np.testing.assert_allclose(div16, stack / 65535, rtol=1e-6)


def test_percentile_clipping_first(sem_2d: np.ndarray) -> None:
    crop = sem_2d[:128, :128][None].astype(np.float32)
    crop[0, 0, :10] = 10_000  # outliers
    stats = compute_stats(Image(crop, "s"), "scale_range", (1.0, 99.0))
    lo, hi = np.percentile(crop, [1.0, 99.0])
    assert stats.clip_lo[0] == pytest.approx(lo) and stats.clip_hi[0] == pytest.approx(hi)
    out = stats.normalize(crop)
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)
    assert (stats.data_min, stats.data_max) == (lo, hi)  # crappify's range: the outliers clipped


@pytest.mark.parametrize("kind", ["zero_mean_unit_variance", "scale_range", "div"])
def test_constant_image_never_nan(kind: str) -> None:
    const = np.full((1, 32, 32), 7, np.uint16)
    stats = compute_stats(Image(const, "c"), kind, (1.0, 99.0))
    assert np.isfinite(stats.normalize(const)).all() and np.isfinite(stats.scale).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_pixels_refused(sem_2d: np.ndarray, bad: float) -> None:
    crop = sem_2d[:32, :32].astype(np.float32)
    crop[3, 4] = bad
    with pytest.raises(DataError, match=r"^nanimg: contains NaN or infinite pixels.*nan_to_num"):
        compute_stats(as_image(crop, "nanimg", 2), "zero_mean_unit_variance")


@pytest.mark.parametrize("kind", ["zero_mean_unit_variance", "scale_range", "div"])
def test_constant_image_trains_without_nan(tmp_path: Path, kind: str) -> None:
    image = as_image(np.full((64, 64), 7, np.uint8), "flat", 2)
    cfg = tiny_config(epochs=1)
    cfg.data.normalization = kind
    events = run_events(cfg, [image], ResultsLayout(tmp_path, "flat", 1))
    assert isinstance(events[-1], ev.Finished)
    steps = of_type(events, ev.Step)
    epoch = of_type(events, ev.Epoch)[0]
    values = [s.loss for s in steps] + [epoch.train_loss, epoch.val_loss, *epoch.metrics.values()]
    assert np.isfinite(values).all() and steps[-1].skipped_nonfinite == 0


def test_two_channel_image_trains_and_reconstructs(sem_2d: np.ndarray, tmp_path: Path) -> None:
    crop = sem_2d[:96, :96]
    image = as_image(np.stack([crop, 255 - crop], axis=-1), "two", 2, channel_axis=-1)
    layout = ResultsLayout(tmp_path, "two", 1)
    events = run_events(tiny_config(epochs=1), [image], layout)
    assert isinstance(events[-1], ev.Finished)
    trained = load_trained(layout.best_checkpoint)
    assert trained.in_channels == 2
    out = reconstruct(trained, image, device="cpu")["reconstruction"]
    assert out.shape == (2, 96, 96) and np.isfinite(out).all()


# ----- lazy sampling


class CountingArray:
    """A lazy array that records every read (and refuses to be converted whole)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):
        out = np.asarray(self.array[key])
        self.reads.append(out.size)
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was materialised")


def test_memmap_is_read_patch_by_patch(sem_2d: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", sem_2d[:512, :512])
    image = load_image(tmp_path / "big.npy", ndim=2)
    assert isinstance(image.array, np.memmap)
    counting = CountingArray(image.array)
    lazy = Image(counting, "big")
    train, _ = split_regions([lazy], 0.1, (32, 32))
    sampler = PatchSampler([lazy], train, (32, 32), CPU, seed=0)
    assert not sampler.on_device
    batch, index = sampler.sample(6)
    assert batch.shape == (6, 1, 32, 32) and batch.dtype == torch.float32
    assert index.tolist() == [0] * 6
    assert counting.reads == [32 * 32] * 6  # one patch per read, never the image
    # the patches are real crops of the image
    flat = sem_2d[:512, :512]
    first = batch[0, 0].numpy().astype(np.uint8)
    hits = [(y, x) for y in range(0, 481) for x in range(481) if flat[y, x] == first[0, 0]]
    assert any(np.array_equal(flat[y : y + 32, x : x + 32], first) for y, x in hits)


def test_in_memory_images_sample_on_the_device(sem_2d: np.ndarray) -> None:
    image = as_image(sem_2d[:96, :96].copy(), "s", 2)
    sampler = PatchSampler([image], split_regions([image], 0.1, (32, 32))[0], (32, 32), CPU)
    assert sampler.on_device
    assert sampler.sample(3)[0].shape == (3, 1, 32, 32)


def test_dask_backed_image_trains(sem_2d: np.ndarray, tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(sem_2d[:128, :128], chunks=(32, 32))
    image = as_image(lazy, "dask", 2)
    assert hasattr(image.array, "compute")
    events = run_events(tiny_config(epochs=1), [image], ResultsLayout(tmp_path, "dask", 1))
    assert isinstance(events[-1], ev.Finished)


def test_small_image_is_reflect_padded(sem_2d: np.ndarray, tmp_path: Path) -> None:
    image = as_image(sem_2d[:20, :24].copy(), "tiny", 2)
    patch = read_patch(image, split_regions([image], 0.0, (32, 32))[0][0], (0, 0), (32, 32))
    assert patch.shape == (1, 32, 32)
    np.testing.assert_array_equal(patch[0, :20, :24], sem_2d[:20, :24])
    np.testing.assert_array_equal(patch[0, 20, :24], sem_2d[18, :24])  # reflected
    events = run_events(tiny_config(epochs=1), [image], ResultsLayout(tmp_path, "tiny", 1))
    notes = events[0].notes
    assert any("tiny (20, 24) is smaller than the patch (32, 32)" in n for n in notes)
    assert isinstance(events[-1], ev.Finished)


def test_a_stack_is_not_taken_for_channels(nuclei_3d: np.ndarray) -> None:
    """A 2D choice on a (Z, Y, X) stack: the hint says 3D; taken as channels, a note says so."""
    stack = nuclei_3d[:20, :64, :64]
    with pytest.raises(DataError, match=r"a stack of 20 slices\? choose 3D; or a time series\?"):
        as_image(stack, "stack", 2)
    with pytest.raises(DataError, match=r"axes but 2D without channels was chosen; set the chan"):
        as_image(stack[:3], "three", 2)  # 3 along the extra axis: channels, likely
    many = as_image(stack, "stack", 2, channel_axis=0)
    assert size_notes([many], (32, 32)) == [
        "stack is read as 20 channels of 2D images: if these are Z slices or time points, train "
        "in 3D instead (PROBLEM.NDIM); a model of 20 channels only takes images of 20 channels."
    ]
    assert size_notes([as_image(stack[:8], "eight", 2, channel_axis=0)], (32, 32)) == []


def test_a_time_series_is_not_taken_for_channels_or_z() -> None:
    """Axes beyond the image's and its channels (time points?) are refused with what to do."""
    tzyx = np.zeros((20, 16, 64, 64), np.uint16)
    with pytest.raises(DataError, match=r"3D without channels was chosen; a time series\? .*"
                       r"right-click the layer ▸ Split Stack"):  # fmt: skip
        as_image(tzyx, "movie", 3)
    tzcyx = np.zeros((3, 8, 2, 64, 64), np.uint16)
    with pytest.raises(DataError, match=r"more axes than 3D images with channels: a time series"):
        as_image(tzcyx, "movie", 3, channel_axis=2)
    with pytest.raises(DataError, match=r"2D images with channels: choose 3D if it is a volume"):
        as_image(tzcyx[0], "volume", 2, channel_axis=1)


def test_a_constant_image_is_noted(sem_2d: np.ndarray, tmp_path: Path) -> None:
    flat = as_image(np.full((64, 64), 7, np.uint8), "flat", 2)
    events = run_events(
        tiny_config(epochs=1), [flat, as_image(sem_2d[:64, :64].copy(), "sem", 2)],
        ResultsLayout(tmp_path, "flat", 1),
    )  # fmt: skip
    assert "flat is constant (every pixel 7): there is nothing to learn from it." in events[0].notes
    assert not any(note.startswith("sem is constant") for note in events[0].notes)


# ----- validation split and augmentation


def test_validation_by_image_when_several(sem_2d: np.ndarray) -> None:
    images = [as_image(sem_2d[:64, 64 * i : 64 * (i + 1)], f"i{i}", 2) for i in range(10)]
    train, val = split_regions(images, 0.1, (32, 32))
    assert [r.image for r in train] == list(range(9)) and [r.image for r in val] == [9]
    assert val[0].shape == (64, 64)


def test_validation_by_region_of_a_single_image(sem_2d: np.ndarray) -> None:
    image = as_image(sem_2d[:200, :640], "wide", 2)
    train, val = split_regions([image], 0.1, (32, 32))
    assert train[0].shape == (200, 576) and val[0].shape == (200, 64)  # along the longest axis
    assert train[0].box[1].stop == val[0].box[1].start  # disjoint, adjacent
    raw, index = validation_patches([image], val, (32, 32))
    assert raw.shape[1:] == (1, 32, 32) and len(raw) == len(index) == 7 * 2
    small = as_image(sem_2d[:40, :40], "small", 2)
    train, val = split_regions([small], 0.1, (32, 32))
    assert val[0].shape == (20, 40) and train[0].shape == (20, 40)  # at most half


@pytest.mark.parametrize("shape", [(5, 2, 32, 32), (5, 1, 16, 32, 48), (5, 1, 32, 48)])
def test_augmentation_keeps_shapes_and_values(shape: tuple[int, ...]) -> None:
    x = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    gen = torch.Generator().manual_seed(0)
    outs = [augment(x, gen) for _ in range(8)]
    for out in outs:
        assert out.shape == x.shape
        for a, b in zip(out, x, strict=True):  # each sample keeps its own pixels
            assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    assert any(not torch.equal(out, x) for out in outs)


# ----- bad inputs


def test_mixed_dimensionality_in_a_folder(
    sem_2d: np.ndarray, nuclei_3d: np.ndarray, tmp_path: Path
) -> None:
    _write(tmp_path / "a.tif", sem_2d[:64, :64])
    _write(tmp_path / "b.tif", nuclei_3d[:5, :64, :64])
    with pytest.raises(DataError, match=r"'b\.tif' is a stack .*choose 3D \(PROBLEM\.NDIM\)"):
        load_folder(tmp_path, 2)
    with pytest.raises(DataError, match=r"'a\.tif' has shape \(64, 64\): not a 3D image"):
        load_folder(tmp_path, 3)


def test_mixed_channel_counts(sem_2d: np.ndarray, tmp_path: Path) -> None:
    _write(tmp_path / "a.tif", sem_2d[:64, :64])
    _write(tmp_path / "b.npy", np.stack([sem_2d[:64, :64]] * 2, axis=-1))
    with pytest.raises(DataError, match=r"'b\.npy' reads as 2 channel\(s\).*'a\.tif' as 1"):
        load_folder(tmp_path, 2)
    with pytest.raises(
        DataError, match=r"'a\.tif' \(shape \(64, 64\)\) has 1 channel\(s\).*expects 2"
    ):
        load_folder(tmp_path, 2, channels=2)


@pytest.mark.parametrize(
    ("dtype", "words"), [(bool, "boolean image"), (np.complex64, "complex image")]
)
def test_bool_and_complex_refused(tmp_path: Path, dtype: type, words: str) -> None:
    path = _write(tmp_path / "weird.npy", np.zeros((32, 32), dtype))
    with pytest.raises(DataError, match=rf"^weird: {words}"):
        load_image(path, 2)
