"""Multichannel images in and out: a 2-channel 2D (or 3D) file is read the same whether it is
BiaPy's (y, x, c), channels first or named by ImageJ axes; what napari-ssl writes (the Export
dock's dataset folder, results, predict) reads back identical, in napari-ssl and in BiaPy 3.7.1;
a channel count that does not fit is explained in channel words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from biapy_peer import run_biapy
from napari_ssl.data.folders import first_image, load_folder, load_image
from napari_ssl.data.images import DataError, as_image
from napari_ssl.tiffs import save_tif, write_image
from test_cli import run_cli, write_yaml
from test_training import no_charts, one_thread  # noqa: F401  (shared fixtures)

LAYOUTS = ["yxc", "cyx", "imagej", "yxs", "npy_yxc", "npy_cyx"]


def _two(sem: np.ndarray, y: int = 0, shape: tuple[int, int] = (48, 56)) -> np.ndarray:
    """Two real channels, (2, Y, X) uint8: an SEM crop and its inverse, shifted."""
    crop = sem[y : y + shape[0], : shape[1]]
    return np.stack([crop, 255 - sem[y + 5 : y + 5 + shape[0], 3 : 3 + shape[1]]])


def _save(folder: Path, name: str, cyx: np.ndarray, layout: str) -> Path:
    """``cyx`` (C, *S) written in one of the layouts a user may have; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    last = np.ascontiguousarray(np.moveaxis(cyx, 0, -1))
    if layout.startswith("npy"):
        path = folder / f"{name}.npy"
        np.save(path, last if layout == "npy_yxc" else cyx)
        return path
    path = folder / f"{name}.tif"
    if layout == "yxc":  # plain: tifffile stores pages, axes read back as QYX
        tifffile.imwrite(path, last)
    elif layout == "cyx":
        tifffile.imwrite(path, cyx)
    elif layout == "imagej":
        tifffile.imwrite(path, cyx, imagej=True, metadata={"axes": "CYX"[-cyx.ndim :]})
    else:  # one page, the channels as samples per pixel: axes YXS
        tifffile.imwrite(path, last, photometric="minisblack", planarconfig="contig")
    return path


# ----- reading


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("by_checkpoint", [False, True])
def test_two_channel_2d_layouts_read_the_same(
    sem_2d: np.ndarray, tmp_path: Path, layout: str, by_checkpoint: bool
) -> None:
    cyx = _two(sem_2d)
    image = load_image(_save(tmp_path, "two", cyx, layout), 2, 2, by_checkpoint=by_checkpoint)
    assert image.channels == 2 and image.spatial_shape == (48, 56)
    np.testing.assert_array_equal(image.read(), cyx)


@pytest.mark.parametrize("layout", ["zyxc", "czyx", "imagej"])
def test_two_channel_3d_layouts_read_the_same(
    nuclei_3d: np.ndarray, tmp_path: Path, layout: str
) -> None:
    czyx = np.stack([nuclei_3d[:5, :24, :32], nuclei_3d[10:15, 8:32, :32]])
    path = tmp_path / "two.tif"
    if layout == "zyxc":
        tifffile.imwrite(path, np.ascontiguousarray(np.moveaxis(czyx, 0, -1)))
    elif layout == "czyx":
        tifffile.imwrite(path, czyx)
    else:
        zcyx = np.ascontiguousarray(np.moveaxis(czyx, 0, 1))
        tifffile.imwrite(path, zcyx, imagej=True, metadata={"axes": "ZCYX"})
    image = load_image(path, 3, 2)
    assert image.spatial_shape == (5, 24, 32)
    np.testing.assert_array_equal(image.read(), czyx)


def test_one_channel_reading_is_unchanged(sem_2d: np.ndarray, tmp_path: Path) -> None:
    crop = sem_2d[:48, :56]
    tifffile.imwrite(tmp_path / "a.tif", crop)
    np.testing.assert_array_equal(load_image(tmp_path / "a.tif", 2, 1).read()[0], crop)
    tifffile.imwrite(tmp_path / "s.tif", np.stack([crop] * 5))  # a plain 3D stack in 2D
    with pytest.raises(DataError, match=r"'s\.tif' is a stack \(shape .*PROBLEM\.NDIM"):
        load_image(tmp_path / "s.tif", 2, 1)
    # a plain (y, x, 2) file for a 1-channel config: 2 channels (the shorter last axis)
    tifffile.imwrite(tmp_path / "b.tif", np.stack([crop] * 2, axis=-1))
    with pytest.raises(DataError, match=r"^'b\.tif' \(shape \(48, 56, 2\)\) has 2 channel\(s\) "):
        load_image(tmp_path / "b.tif", 2, 1)
    assert load_image(tmp_path / "b.tif", 2).channels == 2  # no channel count given


# ----- messages


def _message(path: Path, ndim: int, channels: int, by_checkpoint: bool) -> str:
    with pytest.raises(DataError) as info:
        load_image(path, ndim, channels, by_checkpoint=by_checkpoint)
    return str(info.value)


def test_a_missing_or_extra_channel_is_said_in_channel_words(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    cyx = _two(sem_2d)
    tifffile.imwrite(tmp_path / "one.tif", cyx[0])
    three = np.concatenate([cyx, cyx[:1]])
    tifffile.imwrite(tmp_path / "three.tif", three, imagej=True, metadata={"axes": "CYX"})
    assert _message(tmp_path / "one.tif", 2, 2, True) == (
        "'one.tif' (shape (48, 56)) has 1 channel(s) but the checkpoint's model takes 2 "
        "(channels first or last: (2, Y, X) or (Y, X, 2))."
    )
    assert _message(tmp_path / "one.tif", 2, 2, False) == (
        "'one.tif' (shape (48, 56)) has 1 channel(s) but the config expects 2 (last entry of "
        "DATA.PATCH_SIZE; channels first or last: (2, Y, X) or (Y, X, 2))."
    )
    three = _message(tmp_path / "three.tif", 2, 2, True)
    assert three.startswith("'three.tif' (shape (3, 48, 56)) has 3 channel(s) but the ")
    for text in (three, _message(tmp_path / "one.tif", 2, 2, True)):
        assert "stack" not in text and "3D" not in text


def test_shapes_that_fit_neither_layout(sem_2d: np.ndarray, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "both.tif", np.zeros((2, 48, 2), np.uint8))
    tifffile.imwrite(tmp_path / "five.tif", np.stack([sem_2d[:48, :56]] * 5))
    assert _message(tmp_path / "both.tif", 2, 2, True) == (
        "'both.tif' has shape (2, 48, 2): its first and its last axis both have length 2, so "
        "which one holds the 2 channels the checkpoint's model takes is ambiguous (channels "
        "first or last: (2, Y, X) or (Y, X, 2)). Save it as an ImageJ TIFF whose axes name the "
        "channels (CYX)."
    )
    assert _message(tmp_path / "five.tif", 2, 2, False) == (
        "'five.tif' has shape (5, 48, 56): neither its first nor its last axis has the 2 "
        "channels the config expects (last entry of DATA.PATCH_SIZE; channels first or last: "
        "(2, Y, X) or (Y, X, 2)); a 3D stack needs PROBLEM.NDIM 3D."
    )
    assert _message(tmp_path / "five.tif", 2, 2, True).endswith(
        "a 3D stack needs a checkpoint trained in 3D."
    )
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((2, 8, 8, 2), np.uint8))
    assert "(2, Z, Y, X) or (Z, Y, X, 2)" in _message(tmp_path / "z.tif", 3, 2, False)


def test_a_stack_named_by_its_axes_is_not_read_as_channels(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, _two(sem_2d), imagej=True, metadata={"axes": "ZYX"})
    assert _message(path, 2, 2, False) == (
        "'z.tif' is a stack (axes ZYX, shape (2, 48, 56)), not a 2D image with 2 channels: "
        "choose 3D (PROBLEM.NDIM) or split it; if its first axis holds the channels, save it "
        "with axes CYX or as (2, Y, X) or (Y, X, 2) without axes."
    )
    assert _message(path, 2, 2, True).startswith(
        "'z.tif' is a 3D stack (axes ZYX, shape (2, 48, 56)) but the checkpoint's model is 2D "
        "with 2 channels: give 2D images with 2 channels, or a checkpoint trained in 3D;"
    )


def test_a_2d_image_with_channels_is_not_read_as_a_volume(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    """An ImageJ CYX file or an RGB PNG has as many axes as a volume: its metadata says the
    first (last) holds channels, so a 3D config or checkpoint refuses it."""
    cyx = tmp_path / "cyx.tif"
    tifffile.imwrite(cyx, _two(sem_2d), imagej=True, metadata={"axes": "CYX"})
    assert _message(cyx, 3, None, False) == (
        "'cyx.tif' is a 2D image with 2 channels (axes CYX, shape (2, 48, 56)): not a 3D image "
        "(3 spatial axes, optionally one channel axis). Check PROBLEM.NDIM."
    )
    assert _message(cyx, 3, 1, True).endswith(
        "the checkpoint's model is 3D (3 spatial axes, optionally one channel axis): give 3D "
        "images, or a checkpoint trained on images like this one."
    )
    png = tmp_path / "rgb.png"
    PILImage.fromarray(np.stack([sem_2d[:48, :56]] * 3, axis=-1)).save(png)
    assert _message(png, 3, None, False).startswith(
        "'rgb.png' is a 2D image with 3 channels (axes YXS, shape (48, 56, 3)): not a 3D image"
    )
    # in a grayscale 2D folder: a colour image, said in channel words (no "3D stack?")
    assert _message(png, 2, 1, False) == (
        "'rgb.png' (shape (48, 56, 3)) has 3 channel(s) but the config expects 1 (last entry of "
        "DATA.PATCH_SIZE)."
    )
    assert load_image(png, 2, 3).channels == 3


def test_a_time_series_named_by_its_axes_is_refused(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """An ImageJ TYX file would read as a 3D stack (time as Z): refused, with what to do."""
    path = tmp_path / "movie.tif"
    movie = np.stack([sem_2d[:48, :56], sem_2d[48:96, :56], sem_2d[96:144, :56]])
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX"})
    for ndim in (2, 3):
        assert _message(path, ndim, None, False) == (
            "'movie.tif' is a time series (axes TYX, shape (3, 48, 56)): napari-ssl works on 2D "
            "or 3D images: split it into its time points, separate images (in napari: "
            "right-click the layer ▸ Split Stack, then select the new layers; as files: one file "
            "per time point)."
        )
    tifffile.imwrite(path, movie[:1], imagej=True, metadata={"axes": "TYX"})  # one time point
    assert load_image(path, 2).spatial_shape == (48, 56)


# ----- writing


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_written_images_read_back_identical(
    nuclei_3d: np.ndarray, tmp_path: Path, ndim: int, channels: int, dtype: type
) -> None:
    spatial = (5, 24, 32) if ndim == 3 else (24, 32)
    data = np.stack([nuclei_3d[k : k + 5, :24, :32] for k in (0, 20)][:channels])
    data = (data if ndim == 3 else data[:, 2]).astype(dtype)
    scale = (2.0, 0.5, 0.25)[-ndim:]
    path = write_image(as_image(data, "img", ndim, 0, scale=scale), tmp_path / "x")
    assert path == tmp_path / "x" / "img.tif"
    for given in (channels, None):
        back = load_image(path, ndim, given)
        assert back.dtype == dtype and back.spatial_shape == spatial
        np.testing.assert_array_equal(back.read(), data)
    with tifffile.TiffFile(path) as tif:  # ImageJ axes name the channels; pixel size kept
        axes = ("C" if channels > 1 else "") + "YX"
        assert tif.series[0].axes == ("Z" + axes if ndim == 3 else axes)
        page = tif.pages[0]
        assert page.tags["XResolution"].value == (4, 1) and page.tags["YResolution"].value == (2, 1)
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata.get("spacing") == (2.0 if ndim == 3 else None)


def test_first_image_gives_the_shape_as_read_from_the_header(
    nuclei_3d: np.ndarray, tmp_path: Path
) -> None:
    """What the Data dock guesses a folder's axes from: the shape and axes :func:`load_image`
    reads, without reading the pixels."""
    data = np.stack([nuclei_3d[k : k + 5, :24, :32] for k in (0, 20)])  # C, Z, Y, X
    write_image(as_image(data, "b", 3, 0), tmp_path)  # ImageJ ZCYX
    tifffile.imwrite(tmp_path / "a.tif", data[:1])  # plain, a length-1 axis squeezed
    assert first_image(tmp_path) == (tmp_path / "a.tif", (5, 24, 32), None)
    (tmp_path / "a.tif").unlink()
    assert first_image(tmp_path) == (tmp_path / "b.tif", (5, 2, 24, 32), 1)
    np.save(tmp_path / "a.npy", data)
    assert first_image(tmp_path) == (tmp_path / "a.npy", (2, 5, 24, 32), None)


def test_default_scale_is_not_written_as_a_pixel_size(sem_2d: np.ndarray, tmp_path: Path) -> None:
    path = write_image(as_image(_two(sem_2d), "a", 2, 0, scale=(1.0, 1.0)), tmp_path)
    with tifffile.TiffFile(path) as tif:
        assert "unit" not in tif.imagej_metadata


def test_results_and_predict_outputs_read_back(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """``save_tif`` of a channels-first output (per_image, MAE_checks, predict)."""
    out = _two(sem_2d).astype(np.float32) / 7
    path = save_tif(tmp_path / "o.tif", out, (0.5, 0.5))
    np.testing.assert_array_equal(load_image(path, 2, 2, by_checkpoint=True).read(), out)
    np.testing.assert_array_equal(load_image(path, 2).read(), out)


# ----- through the CLI


@pytest.mark.parametrize("layout", ["yxc", "cyx", "imagej"])
def test_two_channel_folders_train_and_predict(
    sem_2d: np.ndarray, tmp_path: Path, layout: str
) -> None:
    data = tmp_path / "data"
    for name, y in (("a", 0), ("b", 100)):
        _save(data / "train" / "x", name, _two(sem_2d, y), layout)
    test = _two(sem_2d, 300, (40, 48))
    _save(data / "test" / "x", "t", test, layout)
    config = write_yaml(tmp_path / "cfg.yaml", data, patch="(32, 32, 2)", epochs=1)
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out", "--name", "two",
                  "--run_id", 1)  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    run = tmp_path / "out" / "two"
    per_image = load_image(run / "results" / "two_1" / "per_image" / "t.tif", 2, 2)
    assert per_image.spatial_shape == (40, 48) and np.isfinite(per_image.read()).all()
    best = run / "checkpoints" / "two_1-checkpoint-best.pth"
    inputs = [_save(tmp_path / "in", f"t_{k}", test, k) for k in ("yxc", "cyx", "imagej")]
    ran = run_cli("predict", "--checkpoint", best, "--input", *inputs, "--output", tmp_path / "p")
    assert ran.code == 0, ran.err
    outs = [load_image(tmp_path / "p" / f"t_{k}.tif", 2, 2) for k in ("yxc", "cyx", "imagej")]
    for out in outs[1:]:  # the same input in any layout: the same reconstruction
        np.testing.assert_allclose(out.read(), outs[0].read(), atol=1e-5)
    tifffile.imwrite(tmp_path / "one.tif", test[0])
    ran = run_cli("predict", "--checkpoint", best, "--input", tmp_path / "one.tif",
                  "--output", tmp_path / "p1")  # fmt: skip
    assert (ran.code, ran.err) == (1, (
        "napari-ssl predict: 'one.tif' (shape (40, 48)) has 1 channel(s) but the checkpoint's "
        "model takes 2 (channels first or last: (2, Y, X) or (Y, X, 2)).\n"
    ))  # fmt: skip


def test_a_folder_may_mix_the_layouts(sem_2d: np.ndarray, tmp_path: Path) -> None:
    for k, layout in enumerate(LAYOUTS):
        _save(tmp_path, f"{k}_{layout}", _two(sem_2d, 10 * k), layout)
    images = load_folder(tmp_path, 2, 2)
    for k, image in enumerate(images):
        np.testing.assert_array_equal(image.read(), _two(sem_2d, 10 * k))


@pytest.mark.parametrize("layout", ["yxc", "cyx"])
def test_a_validation_folder_reads_its_channels_by_count(
    sem_2d: np.ndarray, tmp_path: Path, layout: str
) -> None:
    from napari_ssl.config import DataConfig
    from napari_ssl.data.splits import load_val_folder

    _save(tmp_path / "val", "v", _two(sem_2d), layout)
    (image,) = load_val_folder(DataConfig(val_path=str(tmp_path / "val")), channels=2)
    np.testing.assert_array_equal(image.read(), _two(sem_2d))


# ----- BiaPy 3.7.1 reads what we write

_BIAPY_READ = """
import sys
import numpy as np
from biapy.data.data_manipulation import read_img_as_ndarray
for path, out, is_3d in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    np.save(out, read_img_as_ndarray(path, is_3d=is_3d == "3"))
"""


def test_biapy_reads_what_we_write_as_y_x_c(
    biapy_python: Path, sem_2d: np.ndarray, nuclei_3d: np.ndarray, tmp_path: Path
) -> None:
    two = _two(sem_2d)
    czyx = np.stack([nuclei_3d[:5, :24, :32], nuclei_3d[10:15, :24, :32]])
    written = {
        "export_2d": (write_image(as_image(two, "e2", 2, 0, scale=(0.5, 0.5)), tmp_path), two),
        "export_3d": (write_image(as_image(czyx, "e3", 3, 0), tmp_path), czyx),
        "result_2d": (save_tif(tmp_path / "r2.tif", two.astype(np.float32) / 3), two / 3),
    }
    args = []
    for key, (path, _) in written.items():
        args += [str(path), str(tmp_path / f"{key}.npy"), key[-2]]
    run_biapy(biapy_python, _BIAPY_READ, *args)
    for key, (path, expected) in written.items():
        theirs = np.load(tmp_path / f"{key}.npy")
        assert theirs.shape == np.moveaxis(expected, 0, -1).shape, key  # (y, x, c) / (z, y, x, c)
        np.testing.assert_allclose(theirs, np.moveaxis(expected, 0, -1), rtol=1e-6)
        ours = load_image(path, int(key[-2]), 2).read()
        np.testing.assert_allclose(np.moveaxis(ours, 0, -1), theirs, rtol=1e-6)
