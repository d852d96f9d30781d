"""The Train dock's learning-rate schedule box: each schedule shows its fields and sets the shared
config, a choice starts valid, a bad combination is shown and starts nothing, a loaded BiaPy
YAML shows in it, and the run gets what the box shows."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from gui_helpers import screenshot, tiny
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QFileDialog

from napari_ssl.biapy_config import BIAPY_KEYS

pytestmark = pytest.mark.gui

USED = {  # schedule -> the fields the box shows for it
    "": set(),
    "warmupcosine": {"min_lr", "warmup_epochs", "cosine_decay_fraction"},
    "reduceonplateau": {"min_lr", "plateau_factor", "plateau_patience"},
    "onecycle": set(),
    "warmupreduceonplateau": set(),
}
WORDS = {
    "": "constant",
    "warmupcosine": "warm-up + cosine decay",
    "reduceonplateau": "reduce on plateau",
    "onecycle": "one cycle",
    "warmupreduceonplateau": "warm-up + step halving",
}

BIAPY_YAML = """\
PROBLEM: {TYPE: SELF_SUPERVISED, NDIM: 2D, SELF_SUPERVISED: {PRETEXT_TASK: crappify}}
DATA:
    PATCH_SIZE: (32, 32, 1)
TRAIN: {ENABLE: True, LR: 2.E-4, EPOCHS: 12, PATIENCE: %(patience)s,
        LR_SCHEDULER: %(schedule)s}
"""


@pytest.fixture
def train(viewer, docks):
    """The Train dock, in front of the other docks: its widgets are visible."""
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    QApplication.processEvents()
    return docks["Train"]


def _choose(box, name: str) -> None:
    box.kind.setCurrentIndex(box.kind.findData(name))


def _type(qtbot, spin, text: str, enter: bool = True) -> None:
    """Type ``text`` into a spin box as a user would (then Enter)."""
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    if enter:
        qtbot.keyClick(spin, Qt.Key.Key_Return)


def _shown(box) -> set[str]:
    shown = {name for name, field in box.fields.items() if field.isVisible()}
    labels = {
        name for name, field in box.fields.items() if box.form.labelForField(field).isVisible()
    }
    assert labels == shown
    return shown


def _load(train, monkeypatch, path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(path), ""))
    train.load_button.click()


def test_each_schedule_shows_its_fields_and_sets_the_config(qtbot, viewer, docks, train):
    box, state = train.schedule, train.state
    assert state.cfg.train.lr_schedule == "" and box.summary == "Learning-rate schedule: constant"
    assert not box.section.isExpanded() and not box.note.isVisible()
    box.section.expand(animate=False)
    assert box.note.text() == "The learning rate stays as set." and box.note.isVisible()
    for name, field in {**box.fields, "lr_schedule": box.kind}.items():  # tooltips name BiaPy's
        key = BIAPY_KEYS[f"train.{name}"]
        assert key in field.toolTip() and key in box.form.labelForField(field).toolTip()
    train.lr.setValue(3e-4)
    for name in ("warmupcosine", "reduceonplateau", "onecycle", "warmupreduceonplateau", ""):
        _choose(box, name)
        assert state.cfg.train.lr_schedule == name
        assert _shown(box) == USED[name] and box.kind.currentText() == WORDS[name]
        assert box.summary == f"Learning-rate schedule: {WORDS[name]}"
        assert box.section.text() == f"▼ {box.summary}"
        assert not box.message.isVisible(), box.message.text()  # every choice starts valid
    t = state.cfg.train  # filled in: lr / 100, 5 warm-up epochs of 100, under the patience 20
    assert (t.min_lr, t.plateau_patience, t.warmup_epochs, t.cosine_decay_fraction) == (
        3e-6, 10, 5, -1.0
    )  # fmt: skip
    _choose(box, "warmupcosine")
    assert box.min_lr.text() == "3e-06" and box.warmup_epochs.text() == "5"
    assert box.cosine_decay_fraction.text() == "after warm-up"
    screenshot(viewer, "train_dock_schedule_warmupcosine", "Train")
    _type(qtbot, box.min_lr, "5e-7")
    _type(qtbot, box.warmup_epochs, "4")
    _type(qtbot, box.cosine_decay_fraction, "0.5")
    t = state.cfg.train
    assert (t.min_lr, t.warmup_epochs, t.cosine_decay_fraction) == (5e-7, 4, 0.5)
    assert t.plateau_patience == 10  # fields of other schedules are kept
    _choose(box, "reduceonplateau")  # a min lr given: kept
    _type(qtbot, box.plateau_factor, "0.2")
    _type(qtbot, box.plateau_patience, "7")
    t = state.cfg.train
    assert (t.lr_schedule, t.min_lr, t.plateau_factor, t.plateau_patience) == (
        "reduceonplateau", 5e-7, 0.2, 7
    )  # fmt: skip
    assert box.plateau_patience.text() == "7 epochs" and not box.message.isVisible()
    note = box.note.text()  # torch reduces after MORE than `patience` epochs without progress
    assert "after plateau patience + 1 epochs in a row without a better validation loss" in note
    assert note.endswith("with a patience of 3, at the 4th such epoch.")
    assert "(patience 3: at the 4th)" in box.plateau_patience.toolTip()
    box.section.collapse(animate=False)
    assert box.section.text() == "▶ Learning-rate schedule: reduce on plateau"
    assert not box.note.isVisible()


@pytest.mark.parametrize(("patience", "expected"), [(5, 4), (1, 0), (0, 10), (-1, 10)])
def test_the_plateau_patience_filled_in_is_under_the_early_stopping_patience(
    qtbot, train, patience, expected
):
    box, state = train.schedule, train.state
    state.update_cfg(train=dataclasses.replace(state.cfg.train, patience=patience))
    _choose(box, "reduceonplateau")
    assert state.cfg.train.plateau_patience == expected
    assert state.cfg.train.min_lr == pytest.approx(1e-6)
    assert not box.message.isVisible() and box.message.text() == ""
    state.cfg.validate()


def test_a_bad_combination_is_shown_and_starts_nothing(
    qtbot, viewer, docks, train, sem_layer, tmp_path, notes
):
    box, state = train.schedule, train.state
    tiny(docks, epochs=1)
    results = tmp_path / "results"
    train.result_dir.setText(str(results))
    _choose(box, "reduceonplateau")
    assert not box.message.isVisible()  # collapsed: the hint shows all the same
    _type(qtbot, box.plateau_patience, "20")  # the early-stopping patience is 20
    assert state.cfg.train.plateau_patience == 20  # as typed
    rule = (  # the dock has no early-stopping field: said in words, and where it is set
        "'Plateau patience' must be less than the early-stopping patience (20, set with "
        "Load config…); got 20"
    )
    assert box.message.isVisible() and box.message.text() == rule
    train.start_button.click()
    severity, message = notes[-1]
    assert (severity, message) == (
        "error",
        f"Cannot start training: Learning-rate schedule: {rule}",
    )
    assert not state.running and train.start_button.isEnabled() and not results.exists()
    _type(qtbot, box.plateau_patience, "25", enter=False)  # typed without Enter: Start takes it
    train.start_button.click()
    assert notes[-1][1].endswith("got 25") and "got 25" in box.message.text()
    assert not state.running and not results.exists()
    _type(qtbot, box.plateau_patience, "19")
    assert not box.message.isVisible()
    # warm-up + cosine decay over the last half: the warm-up must end by the decay's start
    _choose(box, "warmupcosine")
    train.epochs.setValue(10)
    _type(qtbot, box.cosine_decay_fraction, "0.5")
    _type(qtbot, box.warmup_epochs, "6")
    assert box.message.text().startswith("'Warm-up epochs' must end by epoch 5")
    train.start_button.click()
    assert "Learning-rate schedule: 'Warm-up epochs' must end by epoch 5" in notes[-1][1]
    assert not state.running and not results.exists()
    train.epochs.setValue(12)  # the dock's epochs count before Start: the decay starts at 6
    assert not box.message.isVisible()
    train.lr.setValue(box.min_lr.value() / 2)  # the dock's learning rate under the minimum
    assert box.message.text() == (
        f"'Minimum lr' must be >= 0 and at most 'Learning rate' ({train.lr.value():g}); got "
        f"{box.min_lr.value()!r}"
    )
    train.lr.setValue(box.min_lr.value() * 100)
    assert not box.message.isVisible()
    assert [layer.name for layer in viewer.layers] == ["sem"]


def test_a_loaded_biapy_schedule_shows_in_the_box(qtbot, train, tmp_path, monkeypatch, notes):
    box, state = train.schedule, train.state
    path = tmp_path / "biapy.yaml"
    schedule = "{NAME: warmupcosine, MIN_LR: 1.0e-6, WARMUP_COSINE_DECAY_EPOCHS: 3}"
    path.write_text(BIAPY_YAML % {"patience": -1, "schedule": schedule})
    _load(train, monkeypatch, path)
    assert notes[-1][0] == "info" and "cannot hold" not in notes[-1][1]
    t = state.cfg.train
    assert (t.lr_schedule, t.min_lr, t.warmup_epochs, t.cosine_decay_fraction) == (
        "warmupcosine", 1e-6, 3, -1.0
    )  # fmt: skip
    assert box.summary == "Learning-rate schedule: warm-up + cosine decay"
    assert box.kind.currentData() == "warmupcosine"
    assert (box.min_lr.text(), box.warmup_epochs.text()) == ("1e-06", "3")
    assert box.cosine_decay_fraction.text() == "after warm-up"
    box.section.expand(animate=False)
    assert _shown(box) == USED["warmupcosine"] and not box.message.isVisible()
    schedule = "{NAME: reduceonplateau, MIN_LR: 0, REDUCEONPLATEAU_FACTOR: 0.25, "
    schedule += "REDUCEONPLATEAU_PATIENCE: 4}"
    path.write_text(BIAPY_YAML % {"patience": 6, "schedule": schedule})
    _load(train, monkeypatch, path)
    assert notes[-1][0] == "info" and "cannot hold" not in notes[-1][1]
    assert box.kind.currentData() == "reduceonplateau" and _shown(box) == USED["reduceonplateau"]
    assert (box.min_lr.text(), box.plateau_factor.text(), box.plateau_patience.text()) == (
        "0", "0.25", "4 epochs"
    )  # fmt: skip
    t = state.cfg.train
    assert (t.min_lr, t.plateau_factor, t.plateau_patience, t.patience) == (0.0, 0.25, 4, 6)
    _type(qtbot, box.plateau_patience, "6")  # the loaded patience counts
    assert box.message.text() == (
        "'Plateau patience' must be less than the early-stopping patience (6, set with "
        "Load config…); got 6"
    )


def test_the_run_uses_the_schedule_shown(qtbot, docks, train, sem_layer, tmp_path, notes):
    box, state = train.schedule, train.state
    tiny(docks, epochs=2)
    train.result_dir.setText(str(tmp_path))
    train.lr.setValue(2e-4)
    _choose(box, "warmupcosine")
    _type(qtbot, box.warmup_epochs, "1")
    train.start_button.click()
    assert state.running
    qtbot.waitUntil(lambda: not state.running, timeout=120_000)
    assert any(sev == "info" and "Training finished" in msg for sev, msg in notes), notes
    ckpt = torch.load(state.checkpoint, weights_only=True)
    t = ckpt["napari_ssl_config"]["train"]
    assert (t["lr_schedule"], t["lr"], t["min_lr"], t["warmup_epochs"]) == (
        "warmupcosine", 2e-4, 2e-6, 1
    )  # fmt: skip
