"""Images as the engine sees them: channels first, ``(C, *spatial)``, lazily indexable.

An :class:`Image` wraps a numpy, dask or zarr array without reading it: patches are read by
slicing, so inputs larger than memory are never materialised. numpy and dask arrays are reordered
as they are; other lazy arrays (zarr, h5py ...) are seen through a :class:`ChannelsFirst` view,
which reads each patch with one call to the array itself.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CHANNELS = 8  # more than this along an extra axis: rather a stack (Z, T) than channels
SPLIT_STACK = "right-click the layer ▸ Split Stack"  # napari's layer-list action
SPLIT = (  # what to do with a time series
    "napari-ssl works on 2D or 3D images: split it into its time points, separate images (in "
    f"napari: {SPLIT_STACK}, then select the new layers; as files: one file per time point)"
)
CHANNELS_SET_BY = "last entry of DATA.PATCH_SIZE"  # where a config sets its channel count


class DataError(ValueError):
    """Bad input data; the message names the file or layer and says how to fix it."""


@dataclass
class Image:
    """One image, channels first: ``array.shape == (C, *spatial)``, spatial (Y, X) or (Z, Y, X)."""

    array: Any  # numpy or dask array, or a ChannelsFirst view (zarr, h5py ...)
    name: str
    scale: tuple[float, ...] | None = None  # spatial pixel size, for outputs
    translate: tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.array.shape) - 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(
        self, region: tuple[slice, ...] | None = None, scheduler: str | None = None
    ) -> np.ndarray:
        """Read ``(C, *region)`` into memory as a numpy array (raw units, original dtype).

        ``scheduler``: dask's, for a dask array (``"synchronous"``: in the calling thread).
        """
        sub = self.array if region is None else self.array[(slice(None), *region)]
        if hasattr(sub, "compute"):
            sub = sub.compute(scheduler=scheduler)
        return np.asarray(sub)


def check_dtype(dtype: np.dtype, name: str) -> None:
    """Refuse dtypes that are not real-valued intensities."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(bool):
        raise DataError(f"{name}: boolean image (a mask?). Pick an intensity image instead.")
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{name}: complex image. Convert it to magnitude (np.abs) first.")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"{name}: unsupported pixel type {dtype}. Use integer or float images.")


def as_image(
    array: Any,
    name: str,
    ndim: int,
    channel_axis: int | None = None,
    scale: tuple[float, ...] | None = None,
    translate: tuple[float, ...] | None = None,
) -> Image:
    """Wrap an array given in the user's layout as a channels-first :class:`Image`.

    ``ndim`` is the number of spatial axes (2 or 3). ``channel_axis`` names the channel axis
    (any position, negative allowed); without it the array must have exactly ``ndim`` axes.
    """
    check_dtype(array.dtype, name)
    shape = tuple(array.shape)
    if len(shape) > ndim + 1:
        volume = " choose 3D if it is a volume with channels; or" * (ndim == 2 and len(shape) == 4)
        raise DataError(
            f"{name}: shape {shape} has more axes than {ndim}D images with channels:{volume} "
            f"a time series (or another extra axis)? {SPLIT}."
        )
    if channel_axis is None:
        if len(shape) != ndim:
            hint = f"choose {len(shape)}D or pick a {ndim}D image"
            if len(shape) == ndim + 1:
                hint = "set the channel axis"
                if min(shape) > MAX_CHANNELS:  # no axis holds channels
                    stack = f"a stack of {shape[0]} slices? choose 3D; or " * (ndim == 2)
                    hint = f"{stack}a time series? {SPLIT}"
            raise DataError(
                f"{name}: shape {shape} has {len(shape)} axes but {ndim}D without channels "
                f"was chosen; {hint}."
            )
        axis = None
    else:
        if len(shape) != ndim + 1:
            raise DataError(
                f"{name}: shape {shape} has {len(shape)} axes; {ndim}D with a channel axis needs "
                f"{ndim + 1}. Change the dimensionality or the channel axis."
            )
        axis = channel_axis % len(shape)
    if scale is not None and len(scale) != ndim:
        scale = tuple(scale[-ndim:])
    if translate is not None and len(translate) != ndim:
        translate = tuple(translate[-ndim:])
    return Image(_channels_first(array, axis), name, scale, translate)


def _channels_first(array: Any, axis: int | None) -> Any:
    """``array`` with its channel axis ``axis`` (None: a new one of length 1) first, unread."""
    if isinstance(array, np.ndarray):
        return array[None] if axis is None else np.moveaxis(array, axis, 0)
    if hasattr(array, "compute"):  # dask stays dask (napari layers, dask.array.from_zarr)
        import dask.array as da

        return array[None] if axis is None else da.moveaxis(da.asarray(array), axis, 0)
    return ChannelsFirst(array, axis)


class ChannelsFirst:
    """A lazy ``(C, *spatial)`` view of an array read by basic slicing (zarr, h5py ...).

    ``channel_axis`` is the source's channel axis, or None for a channel axis of length 1 that
    the source lacks. Keys are ints and slices (step >= 1, as zarr and h5py take); each is
    translated to the source's axis order, read with one call to the source, and the result
    reordered with numpy.
    """

    def __init__(self, source: Any, channel_axis: int | None) -> None:
        shape = tuple(int(s) for s in source.shape)
        self.source = source
        self.channel_axis = None if channel_axis is None else channel_axis % len(shape)
        self.shape = self._view_order(shape)
        self.dtype = np.dtype(source.dtype)

    def _view_order(self, per_axis: tuple[int, ...]) -> tuple[int, ...]:
        """Per-axis values of the source in view order (1 for an added channel axis)."""
        a = self.channel_axis
        if a is None:
            return (1, *per_axis)
        return (per_axis[a], *per_axis[:a], *per_axis[a + 1 :])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """The source's chunk shape in view order; None when the source is not chunked."""
        chunks = getattr(self.source, "chunks", None)
        return None if chunks is None else self._view_order(tuple(int(c) for c in chunks))

    def __getitem__(self, key: Any) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > self.ndim:
            raise IndexError(f"{len(keys)} indices for a {self.ndim}-axis array")
        keys = tuple(k if isinstance(k, slice) else operator.index(k) for k in keys)
        channel, *spatial = (*keys, *(slice(None),) * (self.ndim - len(keys)))
        a = self.channel_axis
        if a is None:
            return np.asarray(self.source[tuple(spatial)])[None][channel]
        data = np.asarray(self.source[(*spatial[:a], channel, *spatial[a:])])
        if isinstance(channel, int):
            return data
        kept_before = sum(isinstance(k, slice) for k in spatial[:a])
        return np.moveaxis(data, kept_before, 0)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole array, read (``np.asarray``); always a new array, whatever ``copy``."""
        data = self[()]
        return data if dtype is None else data.astype(dtype, copy=False)


def check_consistent(images: list[Image]) -> None:
    """All images must share dimensionality and channel count."""
    if not images:
        raise DataError("no images given: pick at least one image layer or a folder with images.")
    first = images[0]
    for img in images[1:]:
        if img.ndim != first.ndim:
            raise DataError(
                f"{img.name} is {img.ndim}D but {first.name} is {first.ndim}D: "
                "train on images of one dimensionality."
            )
        if img.channels != first.channels:
            raise DataError(
                f"{img.name} has {img.channels} channel(s) but {first.name} has "
                f"{first.channels}: all images need the same channels."
            )
