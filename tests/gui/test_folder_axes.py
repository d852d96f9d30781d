"""A dataset folder in the Data dock: its axes read from its first file, as for a layer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile
from gui_helpers import screenshot, tiny

pytestmark = pytest.mark.gui


def _dataset(root: Path, images: list[np.ndarray]) -> Path:
    folder = root / "dataset" / "train" / "x"
    folder.mkdir(parents=True)
    for i, pixels in enumerate(images):
        tifffile.imwrite(folder / f"im{i}.tif", pixels)  # a plain TIFF: no axes metadata
    return root / "dataset"


def _choose(data, folder: Path | str) -> None:
    data.folder.setText(str(folder))
    data.folder.editingFinished.emit()  # as when the user presses Enter or leaves the field


def test_a_channels_first_folder_trains_with_its_channels(
    qtbot, viewer, docks, sem_2d, notes, tmp_path
):
    from napari_ssl.engine.checkpoints import load_trained

    data, train = docks["Data and pretext"], docks["Train"]
    crops = [np.stack([sem_2d[:64, :64], sem_2d[64:128, :64]]) for _ in range(2)]
    dataset = _dataset(tmp_path, crops)
    _choose(data, dataset)
    assert (data.ndim.currentText(), data.channel_axis.currentData()) == ("2D", 0)
    assert data.axes.detected.text() == (
        "detected: 2D, channel axis 0 (the folder's first file, 'im0.tif': shape (2, 64, 64)); "
        "edit if wrong"
    )
    assert (data.state.folder, data.state.ndim, data.state.channel_axis) == (str(dataset), 2, 0)
    viewer.window._wrapped_dock_widgets["Data and pretext"].raise_()
    qtbot.wait(300)  # laid out once shown
    screenshot(viewer, "data_dock_folder", "Data and pretext")
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "out"))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert load_trained(train.state.checkpoint).in_channels == 2
    data.channel_axis.setCurrentIndex(0)  # "none": the user says these are 2-slice stacks
    train.start_button.click()
    severity, message = notes[-1]
    assert severity == "error" and "is a stack" in message and "choose 3D" in message
    assert not train.state.running


def test_a_dataset_folders_test_images_are_scored_after_training(
    qtbot, viewer, docks, sem_2d, notes, tmp_path
):
    """As the CLI on the same folder: test/x is read at Start (a bad file refuses it), then
    reconstructed and scored with the best checkpoint; the dock says the means and where."""
    from napari_ssl.engine.checkpoints import load_trained

    data, train = docks["Data and pretext"], docks["Train"]
    dataset = _dataset(tmp_path, [sem_2d[:64, :64], sem_2d[64:128, :64]])
    test = dataset / "test" / "x"
    test.mkdir(parents=True)
    tifffile.imwrite(test / "t1.tif", sem_2d[200:264, :80])
    np.save(test / "t1.npy", sem_2d[300:364, :80])  # the same output name as t1.tif
    _choose(data, dataset)
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "out"))
    train.run_name.setText("folder")
    train.start_button.click()
    severity, message = notes[-1]
    assert severity == "error" and "test images t1.npy, t1.tif" in message
    assert not train.state.running and not (tmp_path / "out").exists()
    (test / "t1.npy").rename(test / "t2.npy")
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    run = tmp_path / "out" / "folder"
    assert sorted(p.name for p in (run / "results" / "folder_1" / "per_image").iterdir()) == [
        "t1.tif", "t2.tif"]  # fmt: skip
    assert (run / "results" / "folder_1" / "test_results_metrics.csv").is_file()
    assert train.progress.format() == "finished: 1 epoch · tested 2 images"
    assert "test mean: psnr " in train.status.text()
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    qtbot.wait(300)
    screenshot(viewer, "train_dock_tested", "Train")
    assert notes[-1][0] == "info" and notes[-1][1].startswith("Test images scored (2 images): psnr")
    cfg = load_trained(train.state.checkpoint).cfg  # its exported config tests the same folder
    assert cfg.test.enable and cfg.data.test_path == str(test)


def test_a_failed_test_step_keeps_the_finished_training(
    qtbot, viewer, docks, sem_2d, notes, tmp_path, monkeypatch
):
    from napari_ssl.inference import evaluate

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(evaluate, "evaluate", out_of_memory)
    data, train = docks["Data and pretext"], docks["Train"]
    dataset = _dataset(tmp_path, [sem_2d[:64, :64]])
    (dataset / "test" / "x").mkdir(parents=True)
    tifffile.imwrite(dataset / "test" / "x" / "t.tif", sem_2d[200:264, :80])
    _choose(data, dataset)
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "out"))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert train.progress.format() == "finished: 1 epoch · test failed"
    severity, message = notes[-1]
    assert severity == "error" and message.startswith("Testing failed (the training finished")
    assert "Out of GPU memory: lower the batch size" in message
    assert Path(train.state.checkpoint).is_file()


def test_a_volume_folder_is_3d_and_a_missing_one_is_said(viewer, docks, nuclei_3d, tmp_path):
    data = docks["Data and pretext"]
    dataset = _dataset(tmp_path, [nuclei_3d[:12, :64, :64]])
    _choose(data, dataset)
    assert (data.ndim.currentText(), data.channel_axis.currentData()) == ("3D", None)
    assert data.state.cfg.data.ndim == 3 and data.patch_xy.value() == 128  # the 3D default
    later = tmp_path / "later" / "dataset"
    _choose(data, later)
    assert data.axes.detected.text().startswith("folder not found:")
    assert data.channel_axis.count() == 0
    _dataset(later.parent, [nuclei_3d[:12, :64, :48]])  # made now; Enter pressed again
    _choose(data, later)
    assert data.axes.detected.text().startswith("detected: 3D, no channel axis")
    assert "shape (12, 64, 48)" in data.axes.detected.text() and data.channel_axis.count() == 4
    _choose(data, "")
    assert data.axes.detected.text() == "no layer selected"


def test_a_loaded_3d_config_keeps_its_dimensions(viewer, docks, nuclei_3d, tmp_path):
    data = docks["Data and pretext"]
    dataset = _dataset(tmp_path, [nuclei_3d[:5, :64, :64]])  # 5 slices: a guess would say C
    state = data.state
    cfg = state.cfg
    state.folder, state.ndim = str(dataset), 3  # as "Load config…" sets a BiaPy 3D config
    state.cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, ndim=3, patch_size=(4, 32, 32),
                                      train_path=str(dataset)),
    )  # fmt: skip
    assert (data.ndim.currentText(), data.channel_axis.currentData()) == ("3D", None)
    assert state.cfg.data.ndim == 3 and state.cfg.data.patch_size == (4, 32, 32)
    assert "detected: 3D, no channel axis" in data.axes.detected.text()


def test_browse_buttons_fill_their_fields(viewer, docks, nuclei_3d, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog, QPushButton

    dataset = _dataset(tmp_path, [nuclei_3d[:12, :64, :64]])
    checkpoint = tmp_path / "run.safetensors"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(dataset))
    picked = []
    monkeypatch.setattr(
        QFileDialog,
        "getOpenFileName",
        lambda *a, **_k: picked.append(a[-1]) or (str(checkpoint), ""),
    )
    data, dock = docks["Data and pretext"], docks["Reconstruct"]
    data.folder.parent().findChild(QPushButton).click()  # "Browse…": as if typed, then Enter
    assert data.state.folder == str(dataset) and data.ndim.currentText() == "3D"
    dock.checkpoint.parent().findChild(QPushButton).click()  # "…"
    assert dock.checkpoint.text() == str(checkpoint)
    assert picked == ["Checkpoints (*.pth *.safetensors)"]
