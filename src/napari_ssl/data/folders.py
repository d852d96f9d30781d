"""Reading image folders: ``dataset/{train,test}/x/*.{tif,tiff,png,npy,zarr}``.

Files are opened lazily where the format allows (``.npy`` memory-mapped, ``.zarr`` as a zarr
array); TIFF and PNG files are read whole. Channel axes come from the TIFF's axes metadata when it
names one, else a trailing extra axis is the channel axis (BiaPy's convention).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssl.data.images import DataError, Image, as_image

EXTENSIONS = (".tif", ".tiff", ".png", ".npy", ".zarr")
PATH_KEYS = "DATA.TRAIN.PATH / DATA.TEST.PATH"
VAL_KEY = "data.val_path (BiaPy DATA.VAL.PATH)"  # a key of ours: BiaPy reads it only when told


def list_images(folder: str | Path, key: str = PATH_KEYS) -> list[Path]:
    """Image files of a folder, sorted by name; clear errors, naming the config key or option
    (``key``) that gave the folder, for missing or empty folders."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"folder not found: '{_absolute(folder)}'. Check {key}.")
    if not folder.is_dir():
        raise DataError(f"'{folder}' is a file; give the folder that holds the images ({key}).")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise DataError(
            f"no images in '{folder}' (looked for {', '.join(EXTENSIONS)}). "
            f"Point {key} to the folder with the images, e.g. dataset/{{train,val,test}}/x."
        )
    return files


def resolve_dataset(path: str | Path, split: str = "train") -> Path:
    """``dataset`` -> ``dataset/<split>/x`` when laid out so; otherwise the path itself."""
    if not str(path).strip():  # Path("") would be the current folder
        raise DataError(
            f"no {split} folder given: set DATA.{split.upper()}.PATH to the folder with the "
            f"{split} images."
        )
    path = Path(path)
    nested = path / split / "x"
    return nested if nested.is_dir() else path


def split_key(split: str) -> str:
    """The config key of a split's folder, as messages name it."""
    return VAL_KEY if split == "val" else f"DATA.{split.upper()}.PATH"


def dataset_folder(path: str, split: str, config_dir: str | Path | None = None) -> Path:
    """``DATA.<SPLIT>.PATH`` as the folder to read. A relative path is read from the current
    folder, as BiaPy does; when it is not found there, the error names the key and the absolute
    path tried, and says so when the path exists relative to ``config_dir`` (the YAML's folder)."""
    key = split_key(split)
    folder = resolve_dataset(path, split)
    if folder.exists():
        return folder
    message = f"folder not found: '{_absolute(folder)}'. Check {key}."
    if folder.is_absolute():
        raise DataError(message)
    if config_dir is not None:
        beside = resolve_dataset(Path(config_dir) / path, split)
        if beside.exists() and _absolute(beside) != _absolute(folder):
            raise DataError(
                f"{message} It is found next to the config, at '{_absolute(beside)}': run from "
                f"{_absolute(Path(config_dir))} or give an absolute path (a relative path is "
                "read from the current folder, as in BiaPy)."
            )
    raise DataError(f"{message} (A relative path is read from the current folder, as in BiaPy.)")


def _absolute(path: Path) -> Path:
    """``path`` from the root, with ``..`` resolved (links are kept as they are)."""
    return Path(os.path.abspath(path))


def read_array(path: str | Path) -> tuple[Any, int | None, str | None]:
    """Open one file: (array, channel axis or None, the file's axes letters when it names them)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            return _read_tiff(path)
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None, None
        if suffix == ".png":
            from PIL import Image as PILImage

            with PILImage.open(path) as img:
                return np.asarray(img), None, None
        if suffix == ".zarr":
            import zarr

            return zarr.open_array(str(path), mode="r"), None, None
    except DataError:
        raise
    except Exception as err:  # corrupt or unreadable file: name it
        raise DataError(f"cannot read '{path}': {err}. Is the file complete and an image?") from err
    raise DataError(f"'{path}': unsupported file type; use one of {', '.join(EXTENSIONS)}.")


def _read_tiff(path: Path) -> tuple[np.ndarray, int | None, str | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        data = series.asarray()
    data = np.squeeze(data) if data.ndim > 2 and 1 in data.shape else data
    if data.ndim != len(axes):  # squeezed: recompute axes of the kept dimensions
        axes = "".join(a for a, s in zip(series.axes, series.shape, strict=True) if s != 1)
    known = axes if len(axes) == data.ndim else None
    for name in ("C", "S"):
        if known and name in known:
            return data, known.index(name), known
    return data, None, known


def load_folder(
    folder: str | Path, ndim: int, channels: int | None = None, key: str = PATH_KEYS
) -> list[Image]:
    """All images of a folder (given by the config key ``key``) as channels-first
    :class:`Image` objects (checked consistent)."""
    paths = list_images(folder, key)
    images = [load_image(path, ndim, channels) for path in paths]
    first = images[0]
    for path, img in zip(paths[1:], images[1:], strict=True):
        if img.channels != first.channels:
            raise DataError(
                f"'{path.name}' reads as {img.channels} channel(s) of {img.spatial_shape} but "
                f"'{paths[0].name}' as {first.channels} of {first.spatial_shape}: a folder needs "
                f"images of one dimensionality and channel count (a 3D stack in a {ndim}D folder "
                "reads as many channels). Move the odd file out or check PROBLEM.NDIM."
            )
    return images


def load_image(
    path: str | Path, ndim: int, channels: int | None = None, *, by_checkpoint: bool = False
) -> Image:
    """One file as a channels-first :class:`Image` with ``ndim`` spatial axes.

    ``by_checkpoint``: ``ndim`` and ``channels`` are a checkpoint's model's (predict), not the
    config's, so a mismatch is explained in terms of the checkpoint.
    """
    path = Path(path)
    array, channel_axis, axes = read_array(path)
    shape = tuple(array.shape)
    model = f"the checkpoint's model is {ndim}D"
    if channel_axis is None and array.ndim == ndim + 1:
        if axes and axes[0] in "ZTQI":  # the file says: a stack, not channels
            if by_checkpoint:
                raise DataError(
                    f"'{path.name}' is a {ndim + 1}D stack (axes {axes}, shape {shape}) but "
                    f"{model}: give {ndim}D images, or a checkpoint trained in {ndim + 1}D."
                )
            raise DataError(
                f"'{path.name}' is a stack (axes {axes}, shape {shape}), not a "
                f"{ndim}D image with channels: choose {ndim + 1}D (PROBLEM.NDIM) or split it."
            )
        channel_axis = -1
    if channel_axis is not None and array.ndim == ndim:
        channel_axis = None  # a single-channel file whose metadata names C
    if array.ndim not in (ndim, ndim + 1):
        fix = (
            f"{model} ({ndim} spatial axes, optionally one channel axis): give {ndim}D images, "
            "or a checkpoint trained on images like this one."
            if by_checkpoint
            else f"not a {ndim}D image ({ndim} spatial axes, optionally one channel axis). "
            "Check PROBLEM.NDIM."
        )
        raise DataError(f"'{path.name}' has shape {shape}: {fix}")
    image = as_image(array, path.stem, ndim, channel_axis)
    if channels is not None and image.channels != channels:
        if by_checkpoint:
            stack = f" (a 3D stack? {model}: use a checkpoint trained in 3D)" if ndim == 2 else ""
            expects = f"the checkpoint's model takes {channels}{stack}"
        else:
            stack = f"; a {ndim + 1}D stack? then check PROBLEM.NDIM" if ndim == 2 else ""
            expects = f"the config expects {channels} (last entry of DATA.PATCH_SIZE{stack})"
        raise DataError(
            f"'{path.name}' (shape {shape}) has {image.channels} channel(s) but {expects}."
        )
    return image
