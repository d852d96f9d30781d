"""Train dock: a real tiny training in a worker, live plot, pause / resume / stop, closing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gui_helpers import SCALE, same, screenshot, tiny
from qtpy.QtCore import QTimer

pytestmark = pytest.mark.gui
LONG = 2000  # epochs for runs that are interrupted


def _steps(train) -> int:
    return train.plot.step_points


def test_train_updates_plot_files_and_live_layer(qtbot, viewer, docks, sem_layer, tmp_path):
    train = docks["Train"]
    tiny(docks, epochs=3)
    train.result_dir.setText(str(tmp_path))
    viewer.window._wrapped_dock_widgets["Train"].raise_()  # a hidden plot is not drawn
    original = sem_layer.data.copy()
    ticks = []
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    train.start_button.click()
    assert train.state.running and not train.start_button.isEnabled()
    assert train.stop_button.isEnabled() and train.pause_button.isEnabled()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    timer.stop()
    assert len(ticks) > 20  # the event loop kept running during training
    assert train.plot.step_points >= 3 and train.plot.epoch_points == 3
    qtbot.waitUntil(lambda: train.plot.redraws > 0, timeout=10_000)  # 2 s ticks
    ckpt = Path(train.state.checkpoint)
    assert ckpt.is_file() and ckpt.name == "ssl_1-checkpoint-best.pth"
    assert Path(train.checkpoint.text()).name == "ssl_1-checkpoint-last.pth"  # to continue it
    assert (tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth").is_file()
    live = viewer.layers["sem [live reconstruction]"]
    assert live.data.shape == (64, 64) and tuple(live.scale) == SCALE
    assert tuple(live.translate) == pytest.approx((10 + 16 * SCALE[0], 20 + 16 * SCALE[1]))
    assert same(sem_layer.data, original)
    assert train.start_button.isEnabled() and not train.stop_button.isEnabled()
    assert "finished" in train.progress.format()
    screenshot(viewer, "train_dock_finished", "Train")
    train.start_button.click()  # a second run gets the next run id
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert Path(train.state.checkpoint).name == "ssl_2-checkpoint-best.pth"


def test_continuing_a_finished_run_without_more_epochs_is_refused(
    qtbot, viewer, docks, sem_layer, tmp_path, notes
):
    train = docks["Train"]
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    train.start_mode.setCurrentIndex(1)  # continue: the field holds the run's last checkpoint
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    severity, message = notes[-1]
    assert severity == "error" and message.startswith("Cannot start training:")
    assert "raise 'Epochs' (1)" in message and train.progress.format() == "not started"


def test_garbage_collection_stays_on_the_gui_thread(
    qtbot, docks, sem_layer, tmp_path, collector_threads
):
    """A collection in the training thread could destroy Qt objects there and hold the GIL."""
    import gc

    train = docks["Train"]
    tiny(docks, epochs=2)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    assert not gc.isenabled() and gc.get_freeze_count() > 0  # napari's objects skipped
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert collector_threads and set(collector_threads) == {"MainThread"}


def test_start_twice_in_one_turn_starts_one_training(qtbot, docks, sem_layer, tmp_path):
    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start()
    first = train.session.worker
    train.start()
    train.start_button.click()
    assert train.session.worker is first
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    assert len(list((tmp_path / "ssl" / "checkpoints").glob("*-last.pth"))) == 1


def test_pause_resume_stop(qtbot, viewer, docks, sem_layer, tmp_path, notes):
    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 2, timeout=60_000)
    train.pause_button.click()
    assert train.pause_button.text() == "Resume"
    assert train.progress.format().endswith("(paused)") and train.progress.format().count("(") == 1
    qtbot.wait(500)  # the engine finishes at most the step it was in
    paused_at = _steps(train)
    qtbot.wait(1000)
    assert _steps(train) <= paused_at + 1
    screenshot(viewer, "train_dock_paused", "Train")
    train.pause_button.click()
    assert train.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: _steps(train) > paused_at + 2, timeout=30_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=30_000)
    last = Path(train.checkpoint.text())
    assert last.is_file() and last.name == "ssl_1-checkpoint-last.pth"
    assert any("stopped" in message for _, message in notes)
    from napari_ssl.engine.checkpoints import load_trained

    assert load_trained(last).cfg.train.epochs == LONG
    # continue the stopped run from its last checkpoint
    train.epochs.setValue(LONG)
    train.start_mode.setCurrentIndex(1)
    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    assert train.session.running
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=30_000)
    assert not list((tmp_path / "ssl" / "checkpoints").glob("ssl_2*"))  # same run continued


def test_continue_keeps_the_curves_and_a_stop_counts_as_the_bar(
    qtbot, viewer, docks, sem_layer, tmp_path, notes
):
    import torch

    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: train.plot.epoch_points >= 2, timeout=120_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    first = train.plot.points
    done = len(first["validation"][0])  # epochs completed: 2, or 3 when the stop came late
    steps = train._plan[1]
    # the stop in steps of its epoch, as the bar counts them (not the run's global step)
    stopped = train.progress.format()
    assert re.fullmatch(
        rf"stopped (at epoch {done + 1}, step \d+ of {steps}"
        rf"|at the end of epoch {done} \(step {steps} of {steps}\))",
        stopped,
    ), stopped
    assert notes[-1][0] == "info" and notes[-1][1].startswith(f"Training {stopped};")
    assert train.status.text().splitlines()[-1].startswith(f"{stopped};")
    last = Path(train.checkpoint.text())
    history = torch.load(last, weights_only=False)["train_state"]["history"]
    assert [row["epoch"] for row in history] == list(range(1, done + 1))
    # continue: the plot starts with the epochs so far, then the new steps
    train.start_mode.setCurrentIndex(1)
    train.start_button.click()
    qtbot.waitUntil(lambda: train.plot.step_points > done, timeout=60_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    resumed = train.plot.points
    epochs = [float(e) for e in range(1, done + 1)]
    assert resumed["train"][0][:done] == epochs
    assert resumed["train"][1][:done] == [row["train_loss"] for row in history]
    assert min(resumed["train"][0][done:]) > done  # the new steps come after them
    assert resumed["validation"][0][:done] == epochs
    assert resumed["validation"][1][:done] == first["validation"][1]
    assert resumed["psnr"][1][:done] == first["psnr"][1] == [r["val_psnr"] for r in history]
    assert not list((tmp_path / "ssl" / "checkpoints").glob("ssl_2*"))  # the same run


def test_closing_viewer_stops_training(qtbot, viewer, docks, sem_layer, tmp_path):
    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    worker = train.session.worker
    done = worker.done
    viewer.close()
    assert done.wait(30)  # the engine stopped, wrote its last checkpoint and freed its memory
    from napari_ssl.engine.checkpoints import load_trained

    last = tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth"
    assert load_trained(last).model is not None
    assert not train.state.running


def test_removing_dock_stops_training_without_freezing_the_viewer(
    qtbot, viewer, docks, sem_layer, tmp_path, monkeypatch
):
    import threading

    from napari_ssl.engine import checkpoints

    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    opened, writing = threading.Event(), threading.Event()
    save = checkpoints.save_checkpoint

    def slow_save(payload, path):  # a checkpoint that takes as long as the test says
        if threading.current_thread() is not threading.main_thread():
            writing.set()
            opened.wait(30)
        return save(payload, path)

    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    done = train.session.worker.done
    monkeypatch.setattr(checkpoints, "save_checkpoint", slow_save)
    viewer.window.remove_dock_widget(train)  # stops the run; the last checkpoint is written...
    assert writing.wait(30)  # ... while the viewer goes on (waiting, it would hang 30 s here)
    assert not done.is_set() and train.state.running  # no second Start until it is saved
    opened.set()
    assert done.wait(30)
    qtbot.waitUntil(lambda: not train.state.running, timeout=10_000)
    assert (tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth").is_file()
    train.deleteLater()  # napari hands a removed dock back without a parent: delete it in Qt
    qtbot.wait(50)


def test_a_run_stopped_by_closing_the_dock_is_continued_when_it_opens_again(
    qtbot, viewer, docks, sem_layer, notes, tmp_path, monkeypatch
):
    import threading

    from napari_ssl.engine import checkpoints
    from napari_ssl.widgets.train_dock import TrainDock

    def reopen() -> TrainDock:
        dock = TrainDock(viewer)
        viewer.window.add_dock_widget(dock, name="Train again")
        return dock

    def close(dock: TrainDock) -> None:
        viewer.window.remove_dock_widget(dock)
        dock.deleteLater()
        qtbot.wait(50)

    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    saved, save = threading.Event(), checkpoints.save_checkpoint

    def slow_save(payload, path):  # the last checkpoint is written once the test says so
        if threading.current_thread() is not threading.main_thread():
            saved.wait(30)
        return save(payload, path)

    monkeypatch.setattr(checkpoints, "save_checkpoint", slow_save)
    viewer.window.remove_dock_widget(train)  # deleted once the run has ended (below)
    last = tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth"
    assert notes[-1] == ("info", (
        f"Training stops: the Train dock was closed. Its last checkpoint will be saved to "
        f"{last}: open the Train dock again to continue the run."
    ))  # fmt: skip
    early = reopen()  # while the run is still stopping: its models are listed all the same
    assert train.state.running and early.architecture.currentText() == "unet"
    assert train.state.cfg.model.architecture == "unet"
    saved.set()
    qtbot.waitUntil(lambda: not train.state.running, timeout=30_000)
    monkeypatch.undo()
    train.deleteLater()
    close(early)  # closed and opened again without starting: still offered
    again = reopen()
    assert again.start_mode.currentIndex() == 1 and again.checkpoint.text() == str(last)
    assert again.status.text().startswith("Run ssl_1 stopped when the dock was closed")
    assert again.epochs.value() == LONG
    import torch  # epochs of 3 steps: on a slow host the stop may come after one or more

    done = len(torch.load(last, weights_only=False)["train_state"]["history"])
    again.epochs.setValue(done + 1)
    again.run_name.setText("renamed")  # a continued run stays where it is
    again.start_button.click()
    qtbot.waitUntil(lambda: not again.state.running, timeout=60_000)
    assert "resumed from ssl_1-checkpoint-last.pth" in again.status.text()
    assert (tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-best.pth").is_file()
    assert not (tmp_path / "ssl" / "results" / "ssl_2").exists()  # the same run, continued
    assert not (tmp_path / "renamed").exists() and again.state.run_name == "ssl"


def test_a_closed_run_that_saved_nothing_is_not_offered(
    qtbot, viewer, docks, sem_layer, tmp_path, monkeypatch
):
    """Closing the dock during a run whose last checkpoint cannot be written (a full disk):
    the dock opened again offers a new training, not a checkpoint that does not exist."""
    import threading

    from napari_ssl.engine import checkpoints
    from napari_ssl.widgets.train_dock import TrainDock

    train = docks["Train"]
    tiny(docks, epochs=LONG)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: _steps(train) > 0, timeout=60_000)
    save = checkpoints.save_checkpoint

    def full_disk(payload, path):
        if threading.current_thread() is not threading.main_thread():
            raise OSError(28, "No space left on device")
        return save(payload, path)

    monkeypatch.setattr(checkpoints, "save_checkpoint", full_disk)
    viewer.window.remove_dock_widget(train)
    qtbot.waitUntil(lambda: not train.state.running, timeout=30_000)
    assert not (tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth").exists()
    again = TrainDock(viewer)
    viewer.window.add_dock_widget(again, name="Train again")
    assert again.start_mode.currentIndex() == 0 and again.checkpoint.text() == ""
    train.deleteLater()
    qtbot.wait(50)


def test_a_closed_train_dock_no_longer_acts_and_the_vit_is_kept(qtbot, viewer, docks, sem_layer):
    """A closed Train dock (alive until collected) stops following the shared config; the
    ViT chosen under masking is shown again by a dock opened under crappify."""
    from napari_ssl.widgets.train_dock import TrainDock

    data, train = docks["Data and pretext"], docks["Train"]
    data.task.setCurrentText("masking")
    train.preset.setCurrentIndex(train.preset.findData("small"))
    data.task.setCurrentText("crappify")
    viewer.window.remove_dock_widget(train)  # kept alive by this test's reference
    again = TrainDock(viewer)
    viewer.window.add_dock_widget(again, name="Train again")
    again.epochs.setValue(7)
    data.task.setCurrentText("masking")
    assert train.architecture.currentText() == "unet"  # the closed dock did not follow
    assert again.architecture.currentText() == "mae"
    assert again.preset.currentData() == "small" and train.state.cfg.model.vit_preset == "small"
    assert train.state.cfg.train.epochs == 7  # not the closed dock's 100
    train.deleteLater()
    qtbot.wait(50)


def test_train_fields_do_not_redo_the_data_docks_preview(qtbot, docks, sem_layer, monkeypatch):
    from napari_ssl.widgets import data_dock

    data, train = docks["Data and pretext"], docks["Train"]
    data.run_preview()
    redone = []
    monkeypatch.setattr(data, "run_preview", lambda live=False: redone.append(live))
    train.epochs.setValue(3)
    train.lr.setValue(2e-4)
    train.validation.fraction.setValue(0.3)
    qtbot.wait(2 * data_dock.DEBOUNCE_MS)
    assert redone == []
    data.noise.setValue(0.3)  # its own fields still do
    qtbot.waitUntil(lambda: redone == [True], timeout=5000)


def test_a_start_refused_by_the_engine_leaves_no_folders(
    qtbot, viewer, docks, sem_layer, notes, tmp_path
):
    """Continuing from an exported .safetensors (no training state) is refused in the worker,
    after the run's folders were made: they go again, and the run id is not used up."""
    from napari_ssl.engine.checkpoints import export_checkpoint, load_trained

    train = docks["Train"]
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    exported = export_checkpoint(load_trained(train.state.checkpoint), tmp_path, "x")
    train.run_name.setText("cont")
    train.start_mode.setCurrentIndex(1)
    train.checkpoint.setText(str(exported["safetensors"]))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    assert notes[-1][0] == "error" and "has no training state" in notes[-1][1]
    assert not (tmp_path / "cont").exists()
    assert not list((tmp_path / "ssl" / "results").glob("*/per_image"))  # made by a test step


def test_start_errors_are_notifications(qtbot, viewer, docks, sem_layer, notes, tmp_path):
    train, data = docks["Train"], docks["Data and pretext"]
    assert train.progress.text() == "idle"
    tiny(docks)
    train.result_dir.setText(str(tmp_path))
    data.select([])
    train.start_button.click()
    assert notes[-1][0] == "error" and "select image layers" in notes[-1][1]
    assert train.progress.format() == "not started"
    assert not train.state.running and train.start_button.isEnabled()
    data.select(["sem"])
    data.task.setCurrentText("masking")
    data.token.setValue(12)  # patch 32 is not a multiple of 12
    train.start_button.click()
    assert notes[-1][0] == "error" and notes[-1][1].startswith(
        "Cannot start training: 'Patch size' (32, 32) must be a multiple of 'Token size' (12)"
    )  # the docks' words, not the config file's
    assert "vit_token_size" not in notes[-1][1] and "BiaPy" not in notes[-1][1]
    data.task.setCurrentText("crappify")
    train.start_mode.setCurrentIndex(1)
    train.checkpoint.setText(str(tmp_path / "missing.pth"))
    train.start_button.click()
    assert notes[-1][0] == "error" and "not found" in notes[-1][1]
    assert not train.state.running and not (tmp_path / "ssl").exists()
    train.start_mode.setCurrentIndex(0)
    (tmp_path / "a_file").write_text("")
    for where, said in ((tmp_path / "a_file", "is, or lies inside, a file"),
                        ("relative/runs", "is a relative path: give a full path")):  # fmt: skip
        train.result_dir.setText(str(where))
        train.start_button.click()  # refused before anything runs, not failed in the worker
        severity, message = notes[-1]
        assert severity == "error"
        assert message.startswith(f"Cannot start training: the result folder '{where}' {said}")
        assert not train.state.running and train.session.worker is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_small_image_is_noted_once(qtbot, viewer, docks, sem_2d, notes, tmp_path):
    train = docks["Train"]
    viewer.add_image(sem_2d[:24, :40].copy(), name="small")
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    small = [msg for _, msg in notes if "smaller than the patch" in msg]
    assert small == ["small (24, 40) is smaller than the patch (32, 32): it is reflect-padded."]
    assert f"note: {small[0]}" in train.status.text().splitlines()  # still readable in the dock


def test_without_validation_data_no_validation_curve_is_drawn(
    qtbot, viewer, docks, sem_layer, tmp_path
):
    train = docks["Train"]
    tiny(docks, epochs=2)
    train.validation.fraction.setValue(0.0)  # every image trains; nothing is held out
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert train.plot.step_points >= 2 and train.plot.epoch_points == 0
    assert "no validation data" in train.status.text()
    assert train.status.text().endswith(f"best checkpoint: {train.state.checkpoint}")
