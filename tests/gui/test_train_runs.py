"""Which run a Start writes to, and which checkpoint the other docks then offer: continuing a
run's last checkpoint goes on in that run (also from a new dock, as the CLI's --resume), a
fine-tuned run is the one continued next, a stop in the first epoch hands its own checkpoint on.
Also: what a BiaPy template brings that the docks do not show does not refuse a Start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from gui_helpers import tiny

pytestmark = pytest.mark.gui

LONG = 2000  # epochs for runs that are stopped


def _long_epochs(docks) -> None:
    """Epochs of 2000 patches: a stop comes within the first."""
    state = docks["Train"].state
    state.update_cfg(train=replace(state.cfg.train, patches_per_epoch=2000))


def _one_epoch_run(qtbot, docks, tmp_path: Path):
    """The Train dock after a finished one-epoch run ssl_1 in ``tmp_path``."""
    train = docks["Train"]
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    return train


def _stop_after_steps(qtbot, train, steps: int = 2) -> None:
    qtbot.waitUntil(lambda: train.plot.step_points >= steps, timeout=60_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)


def test_continuing_a_runs_last_checkpoint_goes_on_in_that_run(
    qtbot, docks, sem_layer, tmp_path, notes
):
    train = docks["Train"]
    tiny(docks, epochs=LONG)
    _long_epochs(docks)
    train.result_dir.setText(str(tmp_path))
    train.start_button.click()
    _stop_after_steps(qtbot, train)
    last = tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-last.pth"
    assert train.state.checkpoint == str(last)  # stopped in epoch 1: its own checkpoint
    train._layout = None  # as a dock of another napari session knows no run
    train.start_mode.setCurrentIndex(2)  # "fine-tune" then "continue": the field is kept
    train.start_mode.setCurrentIndex(1)
    train.checkpoint.setText("")
    train.start_button.click()
    said = "no checkpoint chosen: pick the .pth file to continue from (a stopped run's"
    assert notes[-1] == ("error", f"Cannot start training: {said} '-checkpoint-last.pth').")
    train.checkpoint.setText(str(last))
    train.start_button.click()
    _stop_after_steps(qtbot, train)
    assert not list((tmp_path / "ssl" / "checkpoints").glob("ssl_2*"))  # ssl_1 went on
    assert train.state.run_id == "1"


def test_a_fine_tuned_run_is_the_one_continued(qtbot, docks, sem_layer, tmp_path):
    train = _one_epoch_run(qtbot, docks, tmp_path)
    best = tmp_path / "ssl" / "checkpoints" / "ssl_1-checkpoint-best.pth"
    train.start_mode.setCurrentIndex(2)
    train.checkpoint.setText(str(best))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert train.checkpoint.text() == str(best)  # fine-tune keeps the file it started from
    train.start_mode.setCurrentIndex(1)  # ... but "continue" is the tuned run's
    tuned = tmp_path / "ssl" / "checkpoints" / "ssl_2-checkpoint-last.pth"
    assert train.checkpoint.text() == str(tuned)


def test_a_templates_test_padding_gives_way_to_a_smaller_patch(docks, sem_layer, notes):
    """BiaPy's 2D template pads test tiles by 32 pixels: a patch of 32 chosen in the Data dock
    takes the default padding instead of refusing the Start (blamed on Normalisation)."""
    data = docks["Data and pretext"]
    cfg = data.state.cfg
    data.state.update_cfg(data=replace(cfg.data, test_padding=(32, 32)))
    data.patch_xy.setValue(128)
    assert data.state.cfg.data.test_padding == (32, 32)  # still fits: kept
    tiny(docks, epochs=1)  # patch 32
    assert data.state.cfg.data.test_padding is None
    assert data.normalization.commit() == ""


def test_a_dock_opened_on_one_image_selects_it(viewer, sem_2d):
    from napari_ssl.widgets.launch import add_docks

    viewer.add_image(sem_2d[:64, :64], name="sample")  # e.g. File ▸ Open Sample, then the dock
    docks = add_docks(viewer)
    assert docks["Data and pretext"].state.layers == ("sample",)


def test_a_stop_in_the_first_epoch_is_the_checkpoint_offered(qtbot, docks, sem_layer, tmp_path):
    """Run 1 finished; run 2 stopped before its first best: Reconstruct and Export get run 2."""
    train = _one_epoch_run(qtbot, docks, tmp_path)
    assert Path(train.state.checkpoint).name == "ssl_1-checkpoint-best.pth"
    train.epochs.setValue(LONG)
    _long_epochs(docks)
    train.start_button.click()
    _stop_after_steps(qtbot, train)
    assert Path(train.state.checkpoint).name == "ssl_2-checkpoint-last.pth"
    assert docks["Reconstruct"].checkpoint.text() == train.state.checkpoint
