"""Real microscopy samples shipped in the package (attribution: sample_data/SOURCES.md).

Pixel sizes come from each TIFF's own metadata (ImageJ resolution and spacing tags), not from
constants here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = Path(__file__).parent / "sample_data"
FILES = {"sem": "sem_retic_2d.tif", "nuclei": "nuclei_cells3d_3d.tif"}


def read_sample(path: str | Path) -> tuple[np.ndarray, tuple[float, ...], str]:
    """(data, pixel size per axis, unit) of an ImageJ TIFF; 1.0 where the file says nothing."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
        page = tif.pages[0]
        meta = tif.imagej_metadata or {}
        sizes = []
        for tag in ("YResolution", "XResolution"):
            num, den = page.tags[tag].value if tag in page.tags else (1, 1)
            sizes.append(den / num if num else 1.0)
    scale = tuple(sizes)
    if data.ndim == 3:
        scale = (float(meta.get("spacing", 1.0)), *scale)
    return data, scale, str(meta.get("unit", "pixel"))


def _layer(key: str, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    """The sample as a layer, its contrast set by percentiles (a few saturated pixels of the
    nuclei stack would otherwise show it nearly black)."""
    data, scale, unit = read_sample(SAMPLES / FILES[key])
    limits = tuple(float(v) for v in np.percentile(data, (0.1, 99.9)))
    return [
        (data, {"name": name, "scale": scale, "units": unit, "contrast_limits": limits}, "image")
    ]


def sem_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """2D scanning electron micrograph (uint8, 1.079 nm pixels), noisy."""
    return _layer("sem", "SEM (2D)")


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """3D confocal z-stack of nuclei (uint16, ZYX 0.29 x 0.26 x 0.26 µm)."""
    return _layer("nuclei", "nuclei (3D)")
