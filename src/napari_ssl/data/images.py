"""Images as the engine sees them: channels first, ``(C, *spatial)``, lazily indexable.

An :class:`Image` wraps a numpy, dask or zarr array without reading it: patches are read by
slicing, so inputs larger than memory are never materialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class DataError(ValueError):
    """Bad input data; the message names the file or layer and says how to fix it."""


@dataclass
class Image:
    """One image, channels first: ``array.shape == (C, *spatial)``, spatial (Y, X) or (Z, Y, X)."""

    array: Any  # numpy / dask / zarr array, or anything sliceable with .shape and .dtype
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
    array = _indexable(array)
    shape = tuple(array.shape)
    if channel_axis is None:
        if len(shape) != ndim:
            hint = (
                "set the channel axis"
                if len(shape) == ndim + 1
                else f"choose {len(shape)}D or pick a {ndim}D image"
            )
            raise DataError(
                f"{name}: shape {shape} has {len(shape)} axes but {ndim}D without channels "
                f"was chosen; {hint}."
            )
        arr = array[None]
    else:
        if len(shape) != ndim + 1:
            raise DataError(
                f"{name}: shape {shape} has {len(shape)} axes; {ndim}D with a channel axis needs "
                f"{ndim + 1}. Change the dimensionality or the channel axis."
            )
        axis = channel_axis % len(shape)
        arr = _moveaxis(array, axis, 0)
    if scale is not None and len(scale) != ndim:
        scale = tuple(scale[-ndim:])
    if translate is not None and len(translate) != ndim:
        translate = tuple(translate[-ndim:])
    return Image(arr, name, scale, translate)


def _indexable(array: Any) -> Any:
    """numpy and dask arrays as they are; other lazy arrays (zarr, h5py ...), which cannot be
    indexed with ``None``, wrapped lazily in dask."""
    if isinstance(array, np.ndarray) or hasattr(array, "compute"):
        return array
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is optional
        return np.asarray(array)
    return da.from_array(array, chunks=getattr(array, "chunks", "auto"))


def _moveaxis(array: Any, source: int, dest: int) -> Any:
    if source == dest:
        return array
    if isinstance(array, np.ndarray):
        return np.moveaxis(array, source, dest)
    try:  # dask
        import dask.array as da

        return da.moveaxis(da.asarray(array), source, dest)
    except ImportError:  # pragma: no cover - dask is optional
        return np.moveaxis(np.asarray(array), source, dest)


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
