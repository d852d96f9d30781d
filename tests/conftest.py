"""Shared fixtures: real sample images, the BiaPy peer interpreter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(__file__).resolve().parents[1] / "src" / "napari_ssl" / "sample_data"
BIAPY_VENV = Path(os.environ.get("BIAPY_VENV", "/tmp/biapy/v"))


@pytest.fixture(scope="session")
def sem_2d() -> np.ndarray:
    """Real SEM image (uint8, 1024x1536, YX)."""
    return tifffile.imread(DATA / "sem_retic_2d.tif")


@pytest.fixture(scope="session")
def nuclei_3d() -> np.ndarray:
    """Real confocal nuclei stack (uint16, 60x256x256, ZYX)."""
    return tifffile.imread(DATA / "nuclei_cells3d_3d.tif")


@pytest.fixture(scope="session")
def biapy_python() -> Path:
    """The BiaPy 3.7.1 peer's interpreter; tests using it skip when the venv is absent."""
    python = BIAPY_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(
            f"BiaPy peer venv not found at {BIAPY_VENV} (../shared/tools/biapy_peer.sh setup)"
        )
    return python


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)  # tiny models: threads only add contention on small machines
