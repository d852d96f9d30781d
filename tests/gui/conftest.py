"""GUI fixtures: a shown viewer with every dock, real sample crops, captured notifications."""

from __future__ import annotations

import threading

import pytest
from gui_helpers import SCALE


@pytest.fixture
def viewer(make_napari_viewer):
    v = make_napari_viewer(show=True)
    v.window.resize(1500, 950)
    return v


@pytest.fixture
def docks(viewer, qtbot):
    from napari_ssl.widgets.launch import add_docks

    yield add_docks(viewer)
    # hidden first: the wait below paints nothing (Mesa llvmpipe crashed in a canvas repaint
    # there in three CI runs of sessions 6 to 8)
    window = getattr(viewer.window, "_qt_window", None)  # none left: the test closed the viewer
    if window is not None:
        window.hide()
    # let the Train dock's device probe finish and deliver before the viewer closes
    for thread in threading.enumerate():
        if thread.name == "napari-ssl-device-probe":
            thread.join(timeout=60)
    qtbot.wait(200)


@pytest.fixture
def sem_layer(viewer, sem_2d):
    """A 96x96 crop of the real SEM image, with a pixel size and an offset."""
    return viewer.add_image(sem_2d[200:296, 300:396].copy(), name="sem", scale=SCALE,
                            translate=(10.0, 20.0))  # fmt: skip


@pytest.fixture
def notes():
    """Every napari notification shown during the test: list of (severity, message)."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(event) -> None:
        seen.append((str(event.severity), event.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def collector_threads(qtbot):
    """Names of the threads that ran each garbage collection during the test.

    At the end it waits for napari-ssl to give collection back, and checks it did so unchanged.
    """
    import gc

    from napari_ssl.widgets import gui_collection

    # a thread of an earlier step (the Train dock's device probe) may still hold collection
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=10_000)
    enabled = gc.isenabled()
    names: list[str] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            names.append(threading.current_thread().name)

    gc.callbacks.append(record)
    yield names
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=10_000)
    gc.callbacks.remove(record)
    assert gc.isenabled() == enabled and gc.get_freeze_count() == 0
