"""The plugin as napari sees it: manifest, sample data, launcher, start-up cost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
SRC = Path(__file__).resolve().parents[2] / "src"
MANIFEST = SRC / "napari_ssl" / "napari.yaml"


def test_manifest_is_valid_and_complete():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Data and pretext", "Train", "Reconstruct", "Export"}
    assert {s.key for s in manifest.contributions.sample_data} == {"sem", "nuclei"}
    for command in manifest.contributions.commands:  # every python_name resolves
        module, attr = command.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr))
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_samples_carry_the_tiff_pixel_size():
    from napari_ssl._sample_data import nuclei_sample, sem_sample

    [(sem, sem_kw, kind)] = sem_sample()
    assert kind == "image" and sem.shape == (1024, 1536) and sem.dtype.name == "uint8"
    assert sem_kw["scale"] == pytest.approx((1.079, 1.079), abs=1e-3) and sem_kw["units"] == "nm"
    [(nuclei, nuclei_kw, _)] = nuclei_sample()
    assert nuclei.shape == (60, 256, 256) and nuclei.dtype.name == "uint16"
    assert nuclei_kw["scale"] == pytest.approx((0.29, 0.26, 0.26), abs=1e-3)
    low, high = nuclei_kw["contrast_limits"]  # not 0-65535 for a few saturated pixels
    assert nuclei.max() == 65535 and 0 < low < high < 45_000


def test_widgets_do_not_import_torch():
    code = (
        "import sys, napari_ssl.widgets.launch as l, importlib\n"
        "for _, m, c in l.DOCKS: getattr(importlib.import_module(m), c)\n"
        "import napari_ssl._sample_data\n"
        "print('torch' in sys.modules)"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


def test_open_gui_shows_docks_and_sample(monkeypatch, qtbot):
    import napari

    from napari_ssl.widgets import launch

    viewers = []
    monkeypatch.setattr(napari, "run", lambda: viewers.append(napari.current_viewer()))
    start = time.perf_counter()
    launch.open_gui("nuclei")
    elapsed = time.perf_counter() - start
    viewer = viewers[0]
    try:
        assert set(viewer.window._wrapped_dock_widgets) >= {"Data and pretext", "Train"}
        layer = viewer.layers["nuclei (3D)"]
        assert tuple(layer.scale) == pytest.approx((0.29, 0.26, 0.26), abs=1e-3)
        data = viewer.window._wrapped_dock_widgets["Data and pretext"].widget()
        assert data.state.ndim == 3 and data.state.layers == ("nuclei (3D)",)
        train = viewer.window._wrapped_dock_widgets["Train"].widget()
        qtbot.waitUntil(lambda: train.device.findData("cpu") >= 0, timeout=30_000)
        export = viewer.window._wrapped_dock_widgets["Export"].widget()
        qtbot.waitUntil(lambda: not data.visibleRegion().isEmpty(), timeout=5_000)
        assert export.visibleRegion().isEmpty()  # the docks' tabs start at the first step
        assert elapsed < 30  # a whole window with four docks, on a shared 2-core machine
    finally:
        viewer.close()


def test_first_dock_opens_fast(viewer):
    from napari_ssl.widgets.data_dock import DataDock

    start = time.perf_counter()
    dock = DataDock(viewer)
    viewer.window.add_dock_widget(dock, name="d")
    assert time.perf_counter() - start < 2.0


def test_fields_explain_themselves(docks):
    from napari_ssl.widgets.wording import TIPS

    data, train, recon = docks["Data and pretext"], docks["Train"], docks["Reconstruct"]
    fields = {"Token size": data.token, "Mask ratio": data.ratio, "Batch size": train.batch,
              "Patch size (Y, X)": data.patch_xy, "Start as": train.start_mode,
              "Tile overlap": recon.overlap}  # fmt: skip
    for label, widget in fields.items():
        assert widget.toolTip() == TIPS[label]
    assert data.noise.toolTip().startswith("Gaussian noise")  # a field's own tooltip is kept


def test_picked_layers_stand_out_in_the_theme_highlight(viewer, docks):
    from napari.utils.theme import get_theme

    for theme in (viewer.theme, "light"):  # and they follow a change of theme
        viewer.theme = theme
        highlight = get_theme(theme).current.as_hex()
        for title in ("Data and pretext", "Reconstruct"):
            assert f"background-color: {highlight}" in docks[title].layer_list.styleSheet()


def test_the_loss_plot_follows_the_theme(qtbot, viewer, docks):
    from napari.utils.theme import get_theme

    plot = docks["Train"].plot
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    for step in range(20):
        plot.add_step(step / 10, 1.0 / (step + 1))
    for theme in ("dark", "light"):
        viewer.theme = theme
        redraws = plot.redraws
        qtbot.waitUntil(lambda r=redraws: plot.redraws > r, timeout=10_000)
        corner = plot.pixmap().toImage().pixelColor(2, 2).name()
        assert corner == get_theme(theme).background.as_hex().lower()


def test_a_tab_raised_after_the_docks_were_added_stays_in_front(qtbot, viewer, docks):
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    qtbot.waitUntil(lambda: not docks["Train"].visibleRegion().isEmpty(), timeout=5_000)
    qtbot.wait(200)  # nothing deferred brings another tab back
    assert docks["Data and pretext"].visibleRegion().isEmpty()


def test_docks_scroll_on_a_laptop_screen(qtbot, viewer, docks):
    """At 1280x760 the window keeps its size (the Train dock alone needs ~815 px): docks scroll."""
    from gui_helpers import screenshot

    window = viewer.window._qt_window
    train = docks["Train"]
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    train.schedule.section.expand(animate=False)  # the tallest the dock gets
    viewer.window.resize(1280, 760)
    qtbot.wait(300)
    assert window.height() <= 760
    assert train.height() < train.layout().itemAt(0).widget().widget().minimumSizeHint().height()
    screenshot(viewer, "train_dock_laptop", "Train")


def test_docks_opened_from_the_plugins_menu_share_one_tab_group(qtbot, viewer):
    """As Plugins ▸ napari-ssl ▸ each dock in turn: napari would stack them, each too short for
    its fields; they end up tabbed, the last one opened in front."""
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "napari-ssl" not in pm._manifests:  # not pip-installed here: registered as napari would
        pm.register(PluginManifest.from_file(MANIFEST))
    frames = []
    for name in ("Data and pretext", "Train", "Reconstruct", "Export"):
        frame, _ = viewer.window.add_plugin_dock_widget("napari-ssl", name)
        frames.append(frame)
        qtbot.wait(50)  # the menu's event loop turns between two clicks
    window = viewer.window._qt_window
    qtbot.waitUntil(lambda: len(window.tabifiedDockWidgets(frames[0])) == 3, timeout=5_000)
    in_front = frames[-1].widget().visibleRegion  # the last opened, as after a click
    qtbot.waitUntil(lambda: not in_front().isEmpty(), timeout=5_000)
    assert frames[0].widget().visibleRegion().isEmpty()
    from qtpy.QtWidgets import QTabBar

    tabs = [[bar.tabText(i) for i in range(bar.count())] for bar in window.findChildren(QTabBar)]
    assert [frame.windowTitle() for frame in frames] in tabs  # in the order they were opened
