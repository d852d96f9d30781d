"""ImageJ-compatible TIFFs, written atomically with their pixel size: the reconstructions, MAE
views and augmented pairs of a run, ``predict``'s outputs and an exported dataset's images; and
the pixel size an ImageJ TIFF gives (:func:`imagej_pixel_size`), for the outputs made from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssl.data.images import Image
from napari_ssl.results import atomic_write, safe_filename

_IMAGEJ_AXES = "TZCYXS"


def save_tif(
    path: str | os.PathLike,
    array: np.ndarray,
    scale: tuple[float, ...] | None = None,
    axes: str | None = None,
    unit: str = "um",
) -> Path:
    """Write an ImageJ-compatible TIFF atomically, with the pixel size stored.

    ``axes`` uses the letters T, Z, C, Y, X in any order; the default follows the package's
    channels-first arrays: ``YX``, ``CYX`` or ``CZYX`` by ndim (pass ``ZYX`` for a bare stack).
    The data is reordered to ImageJ's TZCYX. ``scale`` is the pixel size of the spatial
    axes in ``axes`` order (Z if present, Y, X): X/Y go to the resolution tags, Z to ``spacing``.
    uint8, uint16 and float32 are kept; bool becomes uint8; every other type float32.
    Channels stay an ImageJ C axis, as BiaPy 3.7.1's own ``save_tif`` writes them (ImageJ keeps
    no (y, x, c) order with 2 channels): BiaPy reads the file as ``(y, x, c)`` / ``(z, y, x, c)``
    and napari-ssl by its axes, to the same values.
    """
    import tifffile

    array = np.asarray(array)
    axes = (axes or {2: "YX", 3: "CYX", 4: "CZYX"}.get(array.ndim, "")).upper()
    if len(axes) != array.ndim or set(axes) - set(_IMAGEJ_AXES[:-1]) or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} do not describe an array of shape {array.shape}")
    order = sorted(range(len(axes)), key=lambda i: _IMAGEJ_AXES.index(axes[i]))
    data = _imagej_dtype(np.transpose(array, order))
    ij_axes = "".join(axes[i] for i in order)
    metadata: dict[str, Any] = {"axes": ij_axes}
    kwargs: dict[str, Any] = {}
    if scale is not None:
        spatial = [a for a in axes if a in "ZYX"]
        if len(scale) != len(spatial):
            raise ValueError(f"scale {scale} needs one value per spatial axis {''.join(spatial)}")
        size = dict(zip(spatial, (float(s) for s in scale), strict=True))
        kwargs["resolution"] = (1.0 / size["X"], 1.0 / size["Y"])
        metadata["unit"] = unit
        if "Z" in size:
            metadata["spacing"] = size["Z"]
    path = Path(path)
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **kwargs)
    return path


MICRONS_PER = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0,
               "nm": 1e-3, "mm": 1e3}  # fmt: skip


def imagej_pixel_size(path: str | os.PathLike, ndim: int) -> tuple[float, ...] | None:
    """The pixel size in µm of an ImageJ TIFF's spatial axes (Z, Y, X or Y, X: ``spacing`` and
    the resolution tags), as :func:`save_tif` writes it; None without a length unit ImageJ
    names (a plain TIFF's dots per inch say nothing of a microscope's pixels)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        meta = tif.imagej_metadata or {}
        tags = tif.pages.first.tags
        factor = MICRONS_PER.get(str(meta.get("unit", "")).strip())
        if factor is None or "XResolution" not in tags or "YResolution" not in tags:
            return None
        (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and yn):
        return None
    size = [yd / yn * factor, xd / xn * factor]
    if ndim == 3:
        size.insert(0, float(meta.get("spacing", 1.0)) * factor)
    return tuple(float(v) for v in size)


def _imagej_dtype(data: np.ndarray) -> np.ndarray:
    if data.dtype in (np.uint8, np.uint16, np.float32):
        return data
    if data.dtype == bool:
        return data.astype(np.uint8)
    return data.astype(np.float32)


def write_image(image: Image, folder: str | Path) -> Path:
    """Write ``image`` as ``folder/<name>.tif`` so that napari-ssl and BiaPy 3.7.1 read it back
    the same (the Export dock's dataset folder): an ImageJ TIFF whose axes name the channels,
    ``CYX`` / ``ZCYX`` (one channel: ``YX`` / ``ZYX``), as BiaPy's own ``save_tif`` writes; BiaPy
    reads it as ``(y, x, c)`` / ``(z, y, x, c)``. The pixel size is kept (napari's default scale
    of 1, no pixel size, is not written as 1 um). uint8, uint16 and float32 stay; other types
    become float32 (ImageJ's types).
    """
    data = image.read()
    spatial = "YX" if image.ndim == 2 else "ZYX"
    axes = spatial if image.channels == 1 else "C" + spatial
    data = data[0] if image.channels == 1 else data
    scale = image.scale
    if scale is not None and all(float(s) == 1.0 for s in scale):
        scale = None
    return save_tif(Path(folder) / f"{safe_filename(image.name)}.tif", data, scale, axes)
