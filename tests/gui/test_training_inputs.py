"""What a training takes from the docks: each selected layer in its own layout (followed through
renames by its outputs and by the Export dock), settings fixed while it runs, the next run id."""

from __future__ import annotations

import numpy as np
from gui_helpers import tiny


def _train(qtbot, docks, tmp_path) -> None:
    train = docks["Train"]
    train.result_dir.setText(str(tmp_path / "runs"))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)


def test_layers_of_different_layouts_train_together(qtbot, viewer, docks, sem_2d, tmp_path):
    crop = sem_2d[:64, :64].astype(np.float32)
    viewer.add_image(np.stack([crop, crop[::-1]]), name="cyx")  # channels first
    viewer.add_image(np.stack([crop.T, crop], axis=-1), name="yxc")  # channels last
    data = docks["Data and pretext"]
    data.select(["cyx", "yxc"])
    assert data.state.channel_axis == 0  # detected from the first layer
    tiny(docks, epochs=1)
    _train(qtbot, docks, tmp_path)
    assert docks["Train"].progress.format().startswith("finished")
    trained = docks["Train"].state.trained_on
    assert trained.names == ("cyx", "yxc") and trained.channel_axes == (0, 2)


def test_previews_of_different_layouts_keep_each_layout(qtbot, viewer, docks, sem_2d):
    channels = [sem_2d[:64, :64].astype(np.float32), sem_2d[64:128, :64].astype(np.float32)]
    viewer.add_image(np.stack(channels), name="cyx")
    viewer.add_image(np.stack(channels, axis=-1), name="yxc")  # the same image, channels last
    data = docks["Data and pretext"]
    data.select(["cyx", "yxc"])
    data.patch_xy.setValue(32)
    data.preview.click()
    qtbot.waitUntil(lambda: "yxc [crappified]" in viewer.layers, timeout=30_000)
    cyx, yxc = (viewer.layers[f"{name} [crappified]"].data for name in ("cyx", "yxc"))
    assert cyx.shape == (2, 64, 64)
    np.testing.assert_allclose(np.moveaxis(yxc, -1, 0), cyx)  # degraded as 2 channels of 64²


def test_a_layer_that_does_not_fit_the_first_is_named(
    qtbot, viewer, docks, sem_2d, tmp_path, notes
):
    crop = sem_2d[:64, :64]
    viewer.add_image(np.stack([crop, crop]), name="cyx")
    viewer.add_image(np.stack([crop] * 3, axis=-1), name="rgb", rgb=True)
    train = docks["Train"]
    train.status.setText("best checkpoint: an earlier run's")
    docks["Data and pretext"].select(["cyx", "rgb"])
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "runs"))
    train.start_button.click()
    expected = (
        "'rgb' (64, 64, 3) does not fit the first selected layer 'cyx' (2D, 2 channel(s)): pick "
        "a 2D image with 2 channel(s), or train it on its own."
    )
    assert notes[-1] == ("error", f"Cannot start training: {expected}")
    assert train.status.text() == f"not started: {expected}"  # not the earlier run's status
    assert not train.state.running and not (tmp_path / "runs").exists()


def test_outputs_and_export_follow_a_renamed_input(
    qtbot, viewer, docks, sem_layer, tmp_path, notes
):
    tiny(docks, epochs=1)
    _train(qtbot, docks, tmp_path)
    assert "sem [live reconstruction]" in viewer.layers
    sem_layer.name = "sem renamed"
    assert "sem renamed [live reconstruction]" in viewer.layers
    assert "sem [live reconstruction]" not in viewer.layers
    export = docks["Export"]
    export.out_dir.setText(str(tmp_path / "export"))
    export.export_button.click()
    qtbot.waitUntil(lambda: export.worker is None and bool(export.paths), timeout=60_000)
    saved = tmp_path / "export" / "pretrained_data" / "train" / "x"
    assert sorted(p.name for p in saved.iterdir()) == ["sem renamed.tif"]
    viewer.layers.remove(sem_layer)
    export.replace.setChecked(True)
    export.export_button.click()
    assert notes[-1] == (
        "error",
        "Cannot export: the run trained on 'sem', no longer in the viewer: add the layer(s) back, "
        "or untick 'save the training layers'.",
    )


def test_outputs_follow_a_rename_with_the_data_dock_closed(
    qtbot, viewer, docks, sem_layer, tmp_path
):
    tiny(docks, epochs=1)
    _train(qtbot, docks, tmp_path)
    data = docks["Data and pretext"]
    viewer.window.remove_dock_widget(data)
    data.deleteLater()
    qtbot.wait(50)
    sem_layer.name = "renamed"
    assert "renamed [live reconstruction]" in viewer.layers
    assert "sem [live reconstruction]" not in viewer.layers


def test_settings_are_fixed_while_a_run_trains(qtbot, viewer, docks, sem_layer, tmp_path):
    data, train = docks["Data and pretext"], docks["Train"]
    tiny(docks, epochs=50)
    train.result_dir.setText(str(tmp_path / "runs"))
    train.start_button.click()
    qtbot.waitUntil(lambda: train.progress.value() > 0, timeout=60_000)
    assert not train.epochs.isEnabled() and not train.run_name.isEnabled()
    data.task.setCurrentText("masking")  # the Train dock shows the run's model until it ends
    assert train.architecture.currentText() == "unet"
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    assert train.epochs.isEnabled() and train.architecture.currentText() == "mae"


def test_the_exported_command_takes_the_next_free_run_id(qtbot, viewer, docks, sem_layer, tmp_path):
    tiny(docks, epochs=1)
    _train(qtbot, docks, tmp_path)
    export = docks["Export"]
    export.out_dir.setText(str(tmp_path / "export"))
    export.export_button.click()
    qtbot.waitUntil(lambda: export.worker is None and bool(export.paths), timeout=60_000)
    assert export.fields["command"].toPlainText().endswith("--name ssl --run_id 2")
    _train(qtbot, docks, tmp_path)  # run 2, after the export
    assert export.fields["command"].toPlainText().endswith("--name ssl --run_id 3")


def test_a_train_dock_opened_again_keeps_its_settings_and_where_the_runs_went(
    qtbot, viewer, docks, sem_layer, tmp_path
):
    from napari_ssl.widgets.train_dock import TrainDock

    tiny(docks, epochs=1)
    train = docks["Train"]
    train.run_name.setText("mine")
    train.precision.setCurrentText("off")
    train.augment.setChecked(False)
    _train(qtbot, docks, tmp_path)
    viewer.window.remove_dock_widget(train)  # closed, then opened again from the menu
    train.deleteLater()
    qtbot.wait(50)
    again = TrainDock(viewer)
    viewer.window.add_dock_widget(again, name="Train again")
    assert again.result_dir.text() == str(tmp_path / "runs") and again.run_name.text() == "mine"
    assert (again.epochs.value(), again.batch.value()) == (1, 2)  # its settings too
    assert again.precision.currentText() == "off" and not again.augment.isChecked()
    qtbot.waitUntil(lambda: again.device.count() > 1, timeout=30_000)  # the devices listed
    assert again.device.currentData() == "cpu"
    assert again._config() == train.state.cfg  # what Start would use: what the viewer had
    again.start_mode.setCurrentIndex(2)  # fine-tune from a file: kept too
    again.checkpoint.setText(str(tmp_path / "pretrained.pth"))
    again.checkpoint.editingFinished.emit()
    viewer.window.remove_dock_widget(again)
    third = TrainDock(viewer)
    viewer.window.add_dock_widget(third, name="Train third")
    assert third.start_mode.currentIndex() == 2
    assert third.checkpoint.text() == str(tmp_path / "pretrained.pth")
    third.start_mode.setCurrentIndex(0)  # and back to a new training
    assert not train.state.cfg.model.load_checkpoint and not train.state.cfg.model.checkpoint_file
    again.deleteLater()
