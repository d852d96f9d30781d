"""Reading image folders: ``dataset/{train,test}/x/*.{tif,tiff,png,npy,zarr}`` (writing one
image as napari-ssl and BiaPy read it back: :func:`napari_ssl.tiffs.write_image`).

Files are opened lazily where the format allows (``.npy`` memory-mapped, ``.zarr`` as a zarr
array); TIFF and PNG files are read whole. The channel axis of a file with one axis more than the
spatial ones (PROBLEM.NDIM) is, in this order: the axis its TIFF axes metadata names C or S
(ImageJ ``CYX``, ``ZCYX``, ``YXS`` ...); with C > 1 channels expected (DATA.PATCH_SIZE's last
entry, or the checkpoint's model), the first or the last axis of length C (BiaPy 3.7.1 keeps
``(y, x, c)`` / ``(z, y, x, c)``; channels first is accepted too) and an error when both or
neither are; else the trailing axis (BiaPy's convention), unless the metadata says the first
axis is a stack (Z, T, or tifffile's unnamed Q / I pages of a plain TIFF).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssl.data.images import (
    CHANNELS_SET_BY,
    SPLIT,
    DataError,
    Image,
    as_image,
    check_dtype,
)
from napari_ssl.tiffs import imagej_pixel_size

EXTENSIONS = (".tif", ".tiff", ".png", ".npy", ".zarr")
PATH_KEYS = "DATA.TRAIN.PATH / DATA.TEST.PATH"
VAL_KEY = "data.val_path (BiaPy DATA.VAL.PATH)"  # a key of ours: BiaPy reads it only when told
SPLITS = ("train", "val", "test")
logging.getLogger("tifffile").addHandler(logging.NullHandler())  # a damaged file: our message
PAGE_AXES = "QI"  # tifffile's names for the pages of a plain TIFF: they say nothing of the axes


def list_images(folder: str | Path, key: str = PATH_KEYS) -> list[Path]:
    """Image files of a folder, sorted by name; clear errors, naming the config key or option
    (``key``) that gave the folder, for missing or empty folders."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"folder not found: '{_absolute(folder)}'. Check {key}.")
    if not folder.is_dir():
        raise DataError(f"'{folder}' is a file; give the folder that holds the images ({key}).")
    files = sorted(  # hidden files (macOS' ._name.tif beside name.tif) are not images
        p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
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
    if nested.is_dir():
        return nested
    others = [f"{name}/x" for name in SPLITS if name != split and (path / name / "x").is_dir()]
    if others:  # a dataset folder without this split
        raise DataError(
            f"no {split}/x in '{path}' (it has {' and '.join(others)}): the {split} images go in "
            f"'{nested}'."
        )
    return path


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
                array = np.asarray(img)
            rgb = array.ndim == 3  # a PNG is 2D: its third axis holds colours (samples)
            return array, 2 if rgb else None, "YXS" if rgb else "YX"
        if suffix == ".zarr":
            import zarr

            return zarr.open_array(str(path), mode="r"), None, None
    except DataError:
        raise
    except Exception as err:  # corrupt or unreadable file: name it
        raise _unreadable(path, err) from err
    raise DataError(f"'{path}': unsupported file type; use one of {', '.join(EXTENSIONS)}.")


def first_image(
    folder: str | Path, key: str = PATH_KEYS
) -> tuple[Path, tuple[int, ...], int | None]:
    """The first image file of ``folder`` (given by the config key ``key``), its shape as read
    and the channel axis its metadata names (TIFF: from the header alone, nothing else read)."""
    path = list_images(folder, key)[0]
    shape, channel_axis = _header(path)[:2]
    return path, shape, channel_axis


def _header(path: Path) -> tuple[tuple[int, ...], int | None, str | None, np.dtype]:
    """(shape, channel axis, axes, dtype) of a file: a TIFF's from its header alone, other
    formats opened as they are read (lazily, or small)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        array, channel_axis, axes = read_array(path)
        return tuple(array.shape), channel_axis, axes, np.dtype(array.dtype)
    try:
        return _tiff_series(path, read=False)[1:]
    except Exception as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: Exception) -> DataError:
    """A file that cannot be read, said in file words (a library's own words when it has some,
    e.g. tifffile's "not a TIFF file")."""
    if isinstance(err, (OSError, ValueError)) and str(err):
        return DataError(f"cannot read '{path}': {err}. Is the file complete and an image?")
    return DataError(f"cannot read '{path}': the file is damaged, or not an image.")


def _read_tiff(path: Path) -> tuple[np.ndarray, int | None, str | None]:
    data, _, channel_axis, axes, _ = _tiff_series(path, read=True)
    return data, channel_axis, axes


def _tiff_series(
    path: Path, read: bool
) -> tuple[np.ndarray | None, tuple[int, ...], int | None, str | None, np.dtype]:
    """(data if ``read``, shape without axes of length 1 (2D kept), channel axis, axes, dtype)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray() if read else None
    squeeze = len(series.shape) > 2 and 1 in series.shape
    kept = [(a, s) for a, s in zip(series.axes, series.shape, strict=True) if s != 1 or not squeeze]
    shape = tuple(s for _, s in kept)
    data = data.reshape(shape) if data is not None else None
    known = "".join(a for a, _ in kept) if len(series.axes) == len(series.shape) else None
    dtype = np.dtype(series.dtype)
    for name in ("C", "S"):
        if known and name in known:
            return data, shape, known.index(name), known, dtype
    return data, shape, None, known, dtype


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
    """One file as a channels-first :class:`Image` with ``ndim`` spatial axes and, when given,
    ``channels`` channels (see the module docstring for how the channel axis is found).

    ``by_checkpoint``: ``ndim`` and ``channels`` are a checkpoint's model's (predict), not the
    config's, so a mismatch is explained in terms of the checkpoint.
    """
    path = Path(path)
    array, channel_axis, axes = read_array(path)
    shape = tuple(array.shape)
    axis = _channel_axis(path.name, shape, channel_axis, axes, ndim, channels, by_checkpoint)
    tiff = path.suffix.lower() in (".tif", ".tiff")
    scale = imagej_pixel_size(path, ndim) if tiff else None  # kept by the outputs made from it
    return as_image(array, path.stem, ndim, axis, scale=scale)


def check_image_file(
    path: str | Path, ndim: int, channels: int | None = None, *, by_checkpoint: bool = False
) -> None:
    """Refuse what :func:`load_image` would, reading a TIFF's header only (other formats open
    lazily or are small): a batch is checked whole before anything is written."""
    path = Path(path)
    shape, channel_axis, axes, dtype = _header(path)
    _channel_axis(path.name, shape, channel_axis, axes, ndim, channels, by_checkpoint)
    check_dtype(dtype, path.name)


def _channel_axis(
    name: str,
    shape: tuple[int, ...],
    channel_axis: int | None,
    axes: str | None,
    ndim: int,
    channels: int | None,
    by_checkpoint: bool,
) -> int | None:
    """The channel axis of a file of ``shape`` (``channel_axis``: its metadata's), refusing a
    file that is not ``ndim``-D with ``channels`` channels (when given)."""
    if axes and "T" in axes:  # its metadata says so (axes of length 1 are dropped)
        raise DataError(f"'{name}' is a time series (axes {axes}, shape {shape}): {SPLIT}.")
    by_shape = channel_axis is None and len(shape) == ndim + 1
    if by_shape:
        channel_axis = _channel_axis_by_shape(name, shape, axes, ndim, channels, by_checkpoint)
    if channel_axis is not None and len(shape) == ndim:  # 2D with channels, not a volume
        raise DataError(
            f"'{name}' is a {ndim - 1}D image with {shape[channel_axis]} channels (axes "
            f"{axes}, shape {shape}): {_not_ndim(ndim, by_checkpoint)}"
        )
    if len(shape) not in (ndim, ndim + 1):
        raise DataError(f"'{name}' has shape {shape}: {_not_ndim(ndim, by_checkpoint)}")
    count = 1 if channel_axis is None else shape[channel_axis]
    if channels is not None and count != channels:
        expects = f"{_taker(by_checkpoint)} {channels}"
        if channels > 1:
            hint = f"channels first or last: {_layouts(ndim, channels)}"
        elif by_shape and ndim == 2:  # the trailing axis taken as channels may be Z
            hint = (
                "a 3D stack? the checkpoint's model is 2D: use a checkpoint trained in 3D"
                if by_checkpoint
                else "a 3D stack? then check PROBLEM.NDIM"
            )
        else:
            hint = ""
        if by_checkpoint:
            expects += f" ({hint})" if hint else ""
        else:
            expects += f" ({CHANNELS_SET_BY}{'; ' + hint if hint else ''})"
        raise DataError(f"'{name}' (shape {shape}) has {count} channel(s) but {expects}.")
    return channel_axis


def _not_ndim(ndim: int, by_checkpoint: bool) -> str:
    """What to do with a file that is not a ``ndim``-D image."""
    if by_checkpoint:
        return (
            f"the checkpoint's model is {ndim}D ({ndim} spatial axes, optionally one channel "
            f"axis): give {ndim}D images, or a checkpoint trained on images like this one."
        )
    return (
        f"not a {ndim}D image ({ndim} spatial axes, optionally one channel axis). "
        "Check PROBLEM.NDIM."
    )


def _taker(by_checkpoint: bool) -> str:
    return "the checkpoint's model takes" if by_checkpoint else "the config expects"


def _layouts(ndim: int, channels: int) -> str:
    """The two layouts read as ``channels`` channels without axes metadata, in words."""
    spatial = "Y, X" if ndim == 2 else "Z, Y, X"
    return f"({channels}, {spatial}) or ({spatial}, {channels})"


def _channel_axis_by_shape(
    name: str,
    shape: tuple[int, ...],
    axes: str | None,
    ndim: int,
    channels: int | None,
    by_checkpoint: bool,
) -> int:
    """The channel axis of a file with ``ndim + 1`` axes whose metadata names none."""
    many = channels is not None and channels > 1
    # Z, T: the file says it is a stack. Q, I: tifffile's names for the pages of a plain TIFF,
    # which say nothing: with C > 1 the shape decides; with one channel (or none given) a first
    # axis no longer than the last is a stack, as before, and a shorter last axis is channels
    # (BiaPy's (y, x, c), as its reader takes the shortest axis for channels)
    unnamed = bool(axes) and axes[0] in PAGE_AXES
    if (axes and axes[0] in "ZT") or (unnamed and not many and shape[-1] >= shape[0]):
        raise DataError(_stack_message(name, shape, axes, ndim, channels, by_checkpoint))
    if not many:
        return -1  # BiaPy's trailing channel axis
    first, last = shape[0] == channels, shape[-1] == channels
    if first != last:
        return 0 if first else -1
    takes = f"the {channels} channels {_taker(by_checkpoint)}"
    source = "" if by_checkpoint else f"{CHANNELS_SET_BY}; "
    if first:
        raise DataError(
            f"'{name}' has shape {shape}: its first and its last axis both have length "
            f"{channels}, so which one holds {takes} is ambiguous ({source}channels first or "
            f"last: {_layouts(ndim, channels)}). Save it as an ImageJ TIFF "
            f"whose axes name the channels ({'CYX' if ndim == 2 else 'ZCYX'})."
        )
    stack = ""
    if ndim == 2:
        stack = (
            "; a 3D stack needs a checkpoint trained in 3D"
            if by_checkpoint
            else "; a 3D stack needs PROBLEM.NDIM 3D"
        )
    raise DataError(
        f"'{name}' has shape {shape}: neither its first nor its last axis has {takes} "
        f"({source}channels first or last: {_layouts(ndim, channels)}){stack}."
    )


def _stack_message(
    name: str,
    shape: tuple[int, ...],
    axes: str,
    ndim: int,
    channels: int | None,
    by_checkpoint: bool,
) -> str:
    """The file's axes say its first axis is a stack (Z, T ...), not channels."""
    described = f"axes {axes}, shape {shape}" if axes[0] not in PAGE_AXES else f"shape {shape}"
    if by_checkpoint:
        with_channels = f" with {channels} channels" if channels and channels > 1 else ""
        fix = (
            f"give 2D images{with_channels}, or a checkpoint trained in 3D"
            if ndim == 2
            else "split it into 3D stacks"
        )
        text = (
            f"'{name}' is a {ndim + 1}D stack ({described}) but the checkpoint's "
            f"model is {ndim}D{with_channels}: {fix}"
        )
    else:
        with_channels = (
            f"with {channels} channels" if channels and channels > 1 else "with channels"
        )
        fix = "choose 3D (PROBLEM.NDIM) or split it" if ndim == 2 else "split it into 3D stacks"
        text = f"'{name}' is a stack ({described}), not a {ndim}D image {with_channels}: {fix}"
    if channels and channels > 1:
        text += (
            f"; if its first axis holds the channels, save it with axes "
            f"{'CYX' if ndim == 2 else 'ZCYX'} or as {_layouts(ndim, channels)} without axes"
        )
    return text + "."
