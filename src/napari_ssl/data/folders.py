"""Reading image folders: ``dataset/{train,test}/x/*.{tif,tiff,png,npy,zarr}``.

Files are opened lazily where the format allows (``.npy`` memory-mapped, ``.zarr`` as a zarr
array); TIFF and PNG files are read whole. Channel axes come from the TIFF's axes metadata when it
names one, else a trailing extra axis is the channel axis (BiaPy's convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_ssl.data.images import DataError, Image, as_image

EXTENSIONS = (".tif", ".tiff", ".png", ".npy", ".zarr")
PATH_KEYS = "DATA.TRAIN.PATH / DATA.TEST.PATH"


def list_images(folder: str | Path, key: str = PATH_KEYS) -> list[Path]:
    """Image files of a folder, sorted by name; clear errors, naming the config ``key`` that
    gave the folder, for missing or empty folders."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"folder not found: '{folder}'. Check {key}.")
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


def load_folder(folder: str | Path, ndim: int, channels: int | None = None) -> list[Image]:
    """All images of a folder as channels-first :class:`Image` objects (checked consistent)."""
    paths = list_images(folder)
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


def load_image(path: str | Path, ndim: int, channels: int | None = None) -> Image:
    """One file as a channels-first :class:`Image` with ``ndim`` spatial axes."""
    path = Path(path)
    array, channel_axis, axes = read_array(path)
    if channel_axis is None and array.ndim == ndim + 1:
        if axes and axes[0] in "ZTQI":  # the file says: a stack, not channels
            raise DataError(
                f"'{path.name}' is a stack (axes {axes}, shape {tuple(array.shape)}), not a "
                f"{ndim}D image with channels: choose {ndim + 1}D (PROBLEM.NDIM) or split it."
            )
        channel_axis = -1
    if channel_axis is not None and array.ndim == ndim:
        channel_axis = None  # a single-channel file whose metadata names C
    if array.ndim not in (ndim, ndim + 1):
        raise DataError(
            f"'{path.name}' has shape {tuple(array.shape)}: not a {ndim}D image "
            f"({ndim} spatial axes, optionally one channel axis). Check PROBLEM.NDIM."
        )
    image = as_image(array, path.stem, ndim, channel_axis)
    if channels is not None and image.channels != channels:
        stack = f"; a {ndim + 1}D stack? then check PROBLEM.NDIM" if ndim == 2 else ""
        raise DataError(
            f"'{path.name}' (shape {tuple(array.shape)}) has {image.channels} channel(s) but the "
            f"config expects {channels} (last entry of DATA.PATCH_SIZE{stack})."
        )
    return image
