"""Train dock events from the engine, fed to the real dock: a resumed run's history on the
plot (with and without validation data), where a stop happened counted as the bar counts, and
how a slow epoch's rate and a one-epoch run read."""

from __future__ import annotations

import pytest

from napari_ssl.engine import events as ev
from napari_ssl.results import ResultsLayout

pytestmark = pytest.mark.gui


def _started(train, steps: int, start: int, history=()) -> None:
    train._layout = ResultsLayout("results", "ssl", 1)
    train.plot.clear()  # as Start does
    event = ev.Started(20, steps, start, "cpu", "fp32", "unet", 1000, 4 * steps, history=history)
    train._on_event(event)


def test_a_resumed_run_shows_its_epochs_so_far(qtbot, docks):
    train = docks["Train"]
    history = tuple(
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_psnr": 20.0 + e,
         "val_ssim": 0.5}
        for e in (1, 2, 3)
    )  # fmt: skip
    _started(train, steps=6, start=3, history=history)
    points = train.plot.points
    assert points["train"] == ([1, 2, 3], [1.0, 0.5, 1 / 3])  # one point per epoch, at its end
    assert points["validation"] == ([1, 2, 3], [2.0, 1.0, 2 / 3])
    assert points["psnr"] == ([1, 2, 3], [21.0, 22.0, 23.0])
    train._on_event(ev.Step(4, 19, 0.25, 1e-4, 30.0, 60.0))  # the run goes on after them
    assert train.plot.points["train"] == ([1, 2, 3, 19 / 6], [1.0, 0.5, 1 / 3, 0.25])


def test_a_resumed_run_without_validation_data_has_no_validation_curve(qtbot, docks):
    train = docks["Train"]
    history = tuple({"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in (1, 2))
    _started(train, steps=6, start=2, history=history)  # the engine's val loss: the train loss
    points = train.plot.points
    assert points["train"] == ([1, 2], [1.0, 0.5])
    assert points["validation"] == ([], []) and points["psnr"] == ([], [])
    _started(train, steps=6, start=0)  # a new run: nothing before it
    assert train.plot.step_points == 0 and train.plot.epoch_points == 0


@pytest.mark.parametrize(
    ("stopped", "where", "again"),
    [
        (ev.Stopped(14, 81, "last.pth"), "at epoch 14, step 3 of 6", "epoch 14 runs again whole"),
        # between two epochs: the bar still shows the last step of the epoch before
        (ev.Stopped(14, 78, "last.pth"), "at the end of epoch 13 (step 6 of 6)", "from epoch 14"),
        (ev.Stopped(1, 0, "last.pth"), "at epoch 1, step 0 of 6", "epoch 1 runs again whole"),
    ],
)
def test_a_stop_is_counted_in_steps_of_its_epoch(qtbot, docks, notes, stopped, where, again):
    train = docks["Train"]
    _started(train, steps=6, start=0)
    train._on_event(stopped)
    assert train.progress.format() == f"stopped {where}"
    assert notes[-1] == (
        "info",
        f"Training stopped {where}; the weights are saved. To continue ({again}), choose "
        "'Start as: continue' with last.pth",
    )
    assert train.status.text().endswith(f"stopped {where}; to continue: last.pth")
    assert "step 78" not in notes[-1][1] and "step 81" not in notes[-1][1]  # not global steps


def test_a_slow_epoch_shows_its_rate_and_one_epoch_is_singular(qtbot, docks):
    train = docks["Train"]
    _started(train, steps=1, start=0)
    train._on_event(ev.Epoch(1, 0.5, 0.4, seconds=5.1, patches_per_s=2 / 5.1))  # a 3D epoch
    train.updates.flush()
    assert "(5.1 s, 0.39 patches/s)" in train.status.text()
    train._on_event(ev.Finished(1, 0.4, "best.pth", "last.pth", 5.1))
    assert train.progress.format() == "finished: 1 epoch"
