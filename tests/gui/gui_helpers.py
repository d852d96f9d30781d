"""Helpers for the GUI tests (imported by name: tests/gui is on sys.path under pytest)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

# screenshots of the tests go to a temp folder (or NAPARI_SSL_SCREENSHOTS); the README's come
# from docs/make_screenshots.py
SCREENSHOTS = Path(os.environ.get("NAPARI_SSL_SCREENSHOTS") or tempfile.mkdtemp(prefix="shots-"))
SCALE = (1.079, 1.079)


def tiny(docks, epochs: int = 2, patch: int = 32) -> None:
    """Make the Data and Train docks set up a tiny, fast CPU training."""
    data, train = docks["Data and pretext"], docks["Train"]
    data.patch_xy.setValue(patch)
    state = data.state
    state.update_cfg(
        model=dataclasses.replace(
            state.cfg.model, feature_maps=(4, 8, 16), dropout=(0.0, 0.0, 0.0), z_down=(2, 2)
        ),
        train=dataclasses.replace(state.cfg.train, log_every=1),
    )
    train.epochs.setValue(epochs)
    train.batch.setValue(2)
    train._set_devices([("CPU", "cpu")])  # as the device probe lists them, CPU only


def screenshot(viewer, name: str, dock: str | None = None) -> Path:
    """Save the whole window (docks included) to SCREENSHOTS/<name>.png."""
    if dock is not None:
        viewer.window._wrapped_dock_widgets[dock].raise_()
        QApplication.processEvents()  # lay out what changed while the dock was hidden
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    return path


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))
