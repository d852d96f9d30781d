"""Take the README screenshots: the real docks driven on the bundled samples, in a shown viewer.

Run from the repository root under Xvfb (a few minutes on a 2-core CPU)::

    PYTHONPATH=src xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py

Every step presses the docks' own buttons and waits on their workers with the Qt event loop, as
a user would; only the tiny model sizes (so that a CPU trains in about a minute) are set on the
shared state directly. PNGs go to ``docs/screenshots/``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from napari_ssl.widgets.launch import add_docks, add_sample

OUT = Path(__file__).parent / "screenshots"
WINDOW = (1500, 950)
EPOCHS = {"crappify": 30, "masking": 40}  # 20-60 s each on a 2-core CPU
NO_DITHER = Image.Dither.NONE
CROP = (slice(120, 632), slice(1000, 1512))  # 512 x 512 of the SEM sample, with its bead


def wait(seconds: float) -> None:
    """Run the Qt event loop for ``seconds``."""
    wait_until(lambda: False, seconds, "", fail=False)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, fail: bool = True) -> None:
    """Run the Qt event loop until ``cond()`` (or ``timeout`` seconds: an error if ``fail``)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            if fail:
                raise TimeoutError(f"waited {timeout} s for {what}")
            return
        QApplication.processEvents()
        time.sleep(0.02)


def new_viewer() -> tuple[Any, dict[str, Any]]:
    viewer = napari.Viewer(title="napari-ssl", show=True)
    viewer.window.resize(*WINDOW)
    docks = add_docks(viewer)
    wait(1.0)
    return viewer, docks


def add_sem_crop(viewer: Any) -> Any:
    """The SEM sample, then a 512 x 512 crop of it named 'sem' (the full image is removed)."""
    add_sample(viewer, "sem")
    full = viewer.layers["SEM (2D)"]
    viewer.layers.remove(full)
    return viewer.add_image(
        full.data[CROP].copy(), name="sem", scale=full.scale, units=full.units,
        contrast_limits=(50, 255),
    )  # fmt: skip


def show_only(viewer: Any, names: list[str], grid: bool) -> None:
    """Make only ``names`` visible (in that order, first on the left), grid on or off, fit."""
    for layer in viewer.layers:
        layer.visible = layer.name in names
    viewer.canvas.grid.enabled = grid
    viewer.canvas.grid.stride = 1  # the bottom layer of the list (names[0]) top left
    for i, name in enumerate(names):
        viewer.layers.move(viewer.layers.index(name), i)
    viewer.layers.selection = {viewer.layers[names[-1]]}
    wait(0.3)
    viewer.reset_view()
    wait(0.5)


def close_notifications(viewer: Any) -> None:
    """Dismiss the notification toasts (they would hide the canvas' bottom right)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def shot(viewer: Any, name: str, dock: str) -> None:
    viewer.window._wrapped_dock_widgets[dock].raise_()
    close_notifications(viewer)
    wait(0.8)
    OUT.mkdir(parents=True, exist_ok=True)
    pixels = viewer.screenshot(canvas_only=False, flash=False)[..., :3]
    image = Image.fromarray(pixels).quantize(256, Image.Quantize.MEDIANCUT, dither=NO_DITHER)
    image.save(OUT / f"{name}.png", optimize=True)  # 256 colours: half the size, same look
    print(f"wrote {OUT / name}.png", flush=True)


def small_models(docks: dict[str, Any], **model: Any) -> None:
    """Small networks (a CPU trains them in about a minute) and a loss point per step."""
    state = docks["Data and pretext"].state
    state.update_cfg(
        model=dataclasses.replace(state.cfg.model, **model),
        train=dataclasses.replace(state.cfg.train, log_every=1),
    )


def train(docks: dict[str, Any], viewer: Any, run: Path, epochs: int, lr: float) -> None:
    """Press Start in the Train dock (in front: the plot renders while shown) and wait."""
    dock = docks["Train"]
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    wait_until(lambda: dock.device.findData("cpu") >= 0, 60, "the device probe")
    dock.device.setCurrentIndex(dock.device.findData("cpu"))
    dock.epochs.setValue(epochs)
    dock.batch.setValue(4)
    dock.lr.setValue(lr)
    dock.result_dir.setText(str(run.parent))
    dock.run_name.setText(run.name)
    dock.start_button.click()
    wait_until(lambda: not dock.state.running, 300, "the training")
    plot, redraws = dock.plot, dock.plot.redraws
    wait_until(  # a render of every point shown (one may have started before the last epoch)
        lambda: plot.redraws > redraws and not plot._dirty and plot._future is None,
        30,
        "the last plot render",
    )
    wait(0.5)


def reconstruct(docks: dict[str, Any], degrade: bool) -> None:
    dock = docks["Reconstruct"]
    dock.select(["sem"])
    dock.degrade.setChecked(degrade)
    dock.run_button.click()
    wait_until(lambda: dock.worker is None, 300, "the reconstruction")
    wait(0.5)


def crappify_session(tmp: Path) -> None:
    """Data preview, training, reconstruction with scores and export of a crappify U-Net."""
    viewer, docks = new_viewer()
    add_sem_crop(viewer)
    data = docks["Data and pretext"]
    data.select(["sem"])
    data.patch_xy.setValue(128)
    data.noise.setValue(0.2)
    data.factor.setValue(4.0)
    data.preview.click()
    wait_until(lambda: "sem [crappified]" in viewer.layers, 60, "the preview")
    show_only(viewer, ["sem", "sem [crappified]"], grid=True)
    shot(viewer, "data_dock_crappify", "Data and pretext")

    small_models(docks, feature_maps=(16, 32, 64, 128), dropout=(0.0,) * 4, z_down=(2,) * 3)
    train(docks, viewer, tmp / "runs" / "sem_crappify", epochs=EPOCHS["crappify"], lr=1e-3)
    show_only(viewer, ["sem", "sem [live reconstruction]"], grid=True)
    shot(viewer, "train_dock_finished", "Train")

    reconstruct(docks, degrade=True)
    show_only(viewer, ["sem", "sem [degraded]", "sem [reconstruction]"], grid=True)
    shot(viewer, "reconstruct_dock_crappify", "Reconstruct")

    export = docks["Export"]
    export.out_dir.setText(str(tmp / "export"))
    export.name.setText("sem_crappify_pretrained")
    export.export_button.click()
    wait_until(lambda: export.worker is None and bool(export.paths), 120, "the export")
    shot(viewer, "export_dock", "Export")
    viewer.close()


def masking_session(tmp: Path) -> None:
    """A tiny masked-autoencoder training, then the four MAE views of the reconstruction."""
    viewer, docks = new_viewer()
    add_sem_crop(viewer)
    data = docks["Data and pretext"]
    data.select(["sem"])
    data.task.setCurrentText("masking")
    data.mask_type.setCurrentText("grid")  # learns faster than 75% random in a minute
    data.token.setValue(8)
    data.patch_xy.setValue(64)
    data.preview.click()
    small_models(
        docks, mae_dec_hidden_size=128, mae_dec_num_layers=2, mae_dec_num_heads=4,
        mae_dec_mlp_dims=256,
    )  # fmt: skip
    docks["Train"].preset.setCurrentText("tiny")
    train(docks, viewer, tmp / "runs" / "sem_mae", epochs=EPOCHS["masking"], lr=5e-4)
    reconstruct(docks, degrade=False)
    viewer.layers["sem [MAE reconstruction]"].reset_contrast_limits()  # "auto-contrast: once"
    views = [f"sem [MAE {v}]" for v in ("original", "masked", "reconstruction")]
    show_only(viewer, [*views, "sem [MAE reconstruction + visible]"], grid=True)
    shot(viewer, "reconstruct_dock_masking", "Reconstruct")
    viewer.close()


def nuclei_session() -> None:
    """Masking preview of the 3D nuclei sample, one z slice shown."""
    viewer, docks = new_viewer()
    add_sample(viewer, "nuclei")
    nuclei = viewer.layers["nuclei (3D)"]
    nuclei.contrast_limits = tuple(np.percentile(nuclei.data, (0.5, 99.8)))
    data = docks["Data and pretext"]
    data.task.setCurrentText("masking")
    data.mask_type.setCurrentText("random")
    data.ratio.setValue(0.75)
    data.token.setValue(16)
    data.patch_xy.setValue(64)
    data.patch_z.setValue(32)
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, 30 * viewer.layers["nuclei (3D)"].scale[0])
    data.preview.click()  # a crop around slice 30, computed in the background
    wait_until(lambda: "nuclei (3D) [masked]" in viewer.layers, 60, "the preview")
    show_only(viewer, ["nuclei (3D)", "nuclei (3D) [masked]"], grid=True)
    shot(viewer, "data_dock_masking_3d", "Data and pretext")
    viewer.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ssl-") as tmp:  # short paths in the fields
        crappify_session(Path(tmp))
        masking_session(Path(tmp))
        nuclei_session()


if __name__ == "__main__":
    main()
