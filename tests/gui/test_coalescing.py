"""GUI responsiveness (issue #5): worker events coalesce into one update per tick, the plot
renders off the GUI thread and only when shown, and exiting during the device probe is clean."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QObject

from napari_ssl.engine import events as ev
from napari_ssl.results import ResultsLayout

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


class PaintCounter(QObject):
    def __init__(self, widget) -> None:
        super().__init__()
        self.paints = 0
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        self.paints += event.type() == QEvent.Type.Paint
        return False


def _raise(viewer, title: str) -> None:
    viewer.window._wrapped_dock_widgets[title].raise_()


def _started(train, steps: int = 100) -> None:
    train._layout = ResultsLayout("results", "ssl", 1)
    train._on_event(ev.Started(2, steps, 0, "cpu", "fp32", "unet", 1000, 4 * steps))


def test_steps_coalesce_into_one_update_per_tick(qtbot, viewer, docks):
    train = docks["Train"]
    _raise(viewer, "Train")
    _started(train)
    qtbot.wait(50)
    train.updates.flush()
    qtbot.wait(300)  # the dock's layout settles after the status text (the first relayout)
    applied, paints = train.updates.applied, PaintCounter(train.progress)
    for step in range(1, 101):  # 100 Step events in one event-loop turn
        train._on_event(ev.Step(1, step, 1.0 / step, 1e-4, 30.0, 60.0))
    assert train.plot.step_points == 100  # the data is kept at once ...
    assert train.progress.value() == 0 and train.updates.applied == applied  # ... shown later
    qtbot.waitUntil(lambda: train.updates.applied > applied, timeout=5000)
    qtbot.wait(100)
    assert train.updates.applied == applied + 1
    assert train.progress.value() == 100 and "step 100/100" in train.progress.format()
    assert paints.paints <= 1


def test_finished_shows_the_last_step_at_once(qtbot, viewer, docks):
    train = docks["Train"]
    _started(train, steps=10)
    train._on_event(ev.Step(1, 10, 0.5, 1e-4, 30.0, 0.0))
    train._on_event(ev.Finished(1, 0.5, "best.pth", "last.pth", 3.0))
    assert train.progress.value() == 10 and train.progress.format().startswith("finished")


def test_plot_renders_off_the_gui_thread_only_when_shown(qtbot, viewer, docks):
    train = docks["Train"]
    plot = train.plot
    threads: list[str] = []
    render = plot._renderer.render

    def spy(*args):
        threads.append(threading.current_thread().name)
        return render(*args)

    plot._renderer.render = spy
    _raise(viewer, "Data and pretext")  # the Train tab is hidden: nothing is drawn
    qtbot.waitUntil(lambda: plot.visibleRegion().isEmpty(), timeout=2000)
    redraws = plot.redraws
    for step in range(1, 201):
        plot.add_step(step / 100, 2.0 / step)
    plot.add_epoch(1, 0.05, 21.5)
    plot.add_epoch(2, 0.02, 24.0)
    qtbot.wait(2500)
    assert plot.redraws == redraws and not threads
    _raise(viewer, "Train")
    qtbot.waitUntil(lambda: plot.redraws > redraws, timeout=10_000)
    assert threads and all(name.startswith("napari-ssl-loss-plot") for name in threads)
    image = plot.pixmap().toImage()
    ratio = image.devicePixelRatio()
    assert abs(image.width() / ratio - plot.width()) <= 1
    assert abs(image.height() / ratio - plot.height()) <= 1
    from napari.utils.theme import get_theme

    assert image.pixelColor(2, 2).name() == get_theme(viewer.theme).background.as_hex()
    pixels = np.frombuffer(image.constBits().asstring(image.sizeInBytes()), np.uint8)
    assert len(np.unique(pixels.reshape(-1, 4)[:, :3], axis=0)) > 20  # curves, text, grid
    settled = plot.redraws
    qtbot.wait(2500)  # nothing new: no more renders
    assert plot.redraws == settled


def test_preview_updates_the_layer_in_place(qtbot, viewer, docks, sem_layer):
    train = docks["Train"]
    train._sources, train._source_axes = [sem_layer], [None]
    train._region = (slice(16, 48), slice(16, 48))
    image = sem_layer.data[None, 16:48, 16:48].astype(np.float32)
    train._show_preview(ev.Preview(1, 1, image, 0))
    layer = viewer.layers["sem [live reconstruction]"]
    translated: list[object] = []
    layer.events.translate.connect(translated.append)
    train._show_preview(ev.Preview(1, 2, image + 1, 0))
    assert viewer.layers["sem [live reconstruction]"] is layer
    assert np.array_equal(layer.data, image[0] + 1) and not translated


def test_progress_relay_is_throttled_and_keeps_the_last(qtbot):
    from napari_ssl.widgets.worker import ProgressRelay

    relay = ProgressRelay()
    seen: list[tuple[int, int]] = []
    relay.progressed.connect(lambda done, total: seen.append((done, total)))
    for done in range(1, 501):  # 500 tiles in well under 0.25 s
        relay(done, 500)
    assert seen[0] == (1, 500) and seen[-1] == (500, 500) and len(seen) <= 3


def test_reconstruct_progress_coalesces(qtbot, viewer, docks):
    dock = docks["Reconstruct"]
    _raise(viewer, "Reconstruct")
    dock.updates.flush()
    applied = dock.updates.applied
    for done in range(1, 41):
        dock._on_progress(done, 40)
    assert dock.progress.value() <= 0
    qtbot.waitUntil(lambda: dock.updates.applied > applied, timeout=5000)
    assert dock.updates.applied == applied + 1 and dock.progress.value() == 40


EXIT_DURING_PROBE = """
    import sys, threading, time
    import napari
    from qtpy.QtCore import QCoreApplication
    from napari_ssl.widgets.train_dock import TrainDock

    viewer = napari.Viewer(show=True)
    dock = TrainDock(viewer)
    viewer.window.add_dock_widget(dock, name="Train")
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and not any(
        t.name == "napari-ssl-device-probe" for t in threading.enumerate()
    ):
        QCoreApplication.processEvents()
    print("probe running:", any(t.name == "napari-ssl-device-probe" for t in threading.enumerate()))
"""


def test_exit_while_the_device_probe_runs_is_clean(tmp_path):
    script = tmp_path / "exit_during_probe.py"
    script.write_text(textwrap.dedent(EXIT_DURING_PROBE))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "probe running: True" in out.stdout  # it exited while torch was loading
    assert "has been deleted" not in out.stderr
