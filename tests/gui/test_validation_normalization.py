"""Train dock's validation images (a fraction or a folder) and the Data dock's normalisation
section: what is typed or chosen reaches the run, and bad values start nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from gui_helpers import same, screenshot, tiny
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

pytestmark = pytest.mark.gui


def _type(qtbot, edit, text: str) -> None:
    """Type ``text`` into a line edit as a user would, then press Enter."""
    edit.clear()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def _pick_folder(monkeypatch, path: Path | str) -> None:
    """The next folder dialog answers ``path`` ("" = cancelled)."""
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: str(path))


def _val_folder(root: Path, sem_2d: np.ndarray, images: dict[str, np.ndarray]) -> Path:
    folder = root / "dataset" / "val" / "x"
    folder.mkdir(parents=True)
    for name, pixels in images.items():  # .tif, or .npy (a trailing axis is the channel axis)
        if name.endswith(".npy"):
            np.save(folder / name, pixels)
        else:
            tifffile.imwrite(folder / name, pixels)
    return folder


def _run(qtbot, train) -> dict:
    train.start_button.click()
    assert train.state.running
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    return torch.load(train.state.checkpoint, weights_only=True)


def test_a_validation_folder_validates_then_clearing_holds_out_again(
    qtbot, viewer, docks, sem_layer, sem_2d, tmp_path, monkeypatch, notes
):
    from napari_ssl.data import splits

    read = []  # what each run read as validation folder, as the engine calls it
    real = splits.load_val_folder
    monkeypatch.setattr(
        splits, "load_val_folder", lambda *a: read.append([i.name for i in real(*a)]) or real(*a)
    )
    train = docks["Train"]
    box = train.validation
    tiny(docks, epochs=2)
    train.result_dir.setText(str(tmp_path / "results"))
    folder = _val_folder(
        tmp_path, sem_2d, {"v1.tif": sem_2d[500:564, 600:664], "v2.tif": sem_2d[700:764, 200:264]}
    )
    _pick_folder(monkeypatch, "")
    box.use_folder.click()  # no folder yet: the dialog opens; cancelled, nothing changes
    assert box.use_fraction.isChecked() and train.state.cfg.data.val_path == ""
    _pick_folder(monkeypatch, tmp_path / "dataset")  # the dataset folder: its val/x is used
    box.use_folder.click()
    assert train.state.cfg.data.val_path == str(tmp_path / "dataset")
    assert box.use_folder.isChecked() and not box.fraction.isEnabled()
    assert box.hint.isVisible() and box.hint.text() == f"2 validation image(s) in {folder}"
    screenshot(viewer, "train_dock_validation_folder", "Train")
    original = sem_layer.data.copy()
    ckpt = _run(qtbot, train)
    assert read == [["v1", "v2"]]
    assert ckpt["napari_ssl_config"]["data"]["val_path"] == str(tmp_path / "dataset")
    assert ckpt["cfg"]["DATA"]["VAL"]["FROM_TRAIN"] is False
    assert train.plot.epoch_points == 2  # validated every epoch
    assert same(sem_layer.data, original)

    box.use_fraction.click()  # back to holding out a fraction: the folder is cleared
    assert train.state.cfg.data.val_path == "" and box.folder.text() == ""
    assert box.fraction.isEnabled() and not box.hint.isVisible()
    box.fraction.setValue(0.25)
    assert train.state.cfg.data.val_fraction == 0.25
    ckpt = _run(qtbot, train)
    assert read == [["v1", "v2"]]  # not read again
    data = ckpt["napari_ssl_config"]["data"]
    assert (data["val_path"], data["val_fraction"]) == ("", 0.25)
    assert ckpt["cfg"]["DATA"]["VAL"]["FROM_TRAIN"] is True
    assert not any(severity == "error" for severity, _ in notes)


def test_a_bad_validation_folder_starts_nothing(
    qtbot, viewer, docks, sem_layer, sem_2d, tmp_path, notes
):
    train = docks["Train"]
    box = train.validation
    tiny(docks, epochs=1)
    results = tmp_path / "results"
    train.result_dir.setText(str(results))
    original = sem_layer.data.copy()
    _type(qtbot, box.folder, str(tmp_path / "missing"))  # typed: the folder option is chosen
    assert box.use_folder.isChecked()
    assert train.state.cfg.data.val_path == str(tmp_path / "missing")
    assert "folder not found" in box.hint.text() and "'Validation folder'" in box.hint.text()
    train.start_button.click()
    severity, message = notes[-1]
    assert severity == "error" and message.startswith("Cannot start training: folder not found")
    assert message.endswith("Check 'Validation folder'.")  # the field, as the dock names it
    assert not train.state.running and train.start_button.isEnabled()
    empty = tmp_path / "empty"
    empty.mkdir()
    box.folder.setText(str(empty))  # typed without Enter: Start takes it as it is
    train.start_button.click()
    assert "Cannot start training: no images in" in notes[-1][1] and not train.state.running
    # images the engine refuses when it reads them (two channels; the layer has one)
    two = _val_folder(tmp_path, sem_2d, {"two.npy": np.zeros((64, 64, 2), np.uint8)})
    _type(qtbot, box.folder, str(two))
    assert box.hint.text() == "1 validation image(s)"
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=60_000)
    severity, message = notes[-1]
    assert severity == "error" and "Cannot start training: validation image 'two.npy'" in message
    assert "2 channel(s)" in message and "training images have 1" in message
    assert not results.exists() and same(sem_layer.data, original)
    assert [layer.name for layer in viewer.layers] == ["sem"]


def test_fixed_normalisation_reaches_the_checkpoint(
    qtbot, viewer, docks, sem_layer, tmp_path, notes
):
    data, train = docks["Data and pretext"], docks["Train"]
    box = data.normalization
    assert not box.section.isExpanded()
    assert box.summary == "Normalisation: zero mean, unit variance"
    box.section.expand(animate=False)
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path))
    _type(qtbot, box.mean, "120")
    _type(qtbot, box.std, " 40.5 ")
    box.clip.setChecked(True)
    box.clip_lo.setValue(1.0)
    box.clip_hi.setValue(99.5)
    cfg = data.state.cfg.data
    assert (cfg.normalization_mean, cfg.normalization_std) == ((120.0,), (40.5,))
    assert cfg.percentile_clip == (1.0, 99.5) and not box.message.isVisible()
    box.clip_lo.setValue(0.1)
    box.clip_hi.setValue(99.0)
    box.clip_hi.setValue(99.9)  # back to the first values shown: what the fields show trains
    assert data.state.cfg.data.percentile_clip == (0.1, 99.9)
    box.clip_lo.setValue(1.0)
    box.clip_hi.setValue(99.5)
    title = "Normalisation: zero mean, unit variance, clip 1–99.5 %, mean 120, std 40.5"
    assert box.summary == title
    data.noise.setValue(0.3)  # other settings change: the fields keep their values
    assert (box.mean.text(), box.std.text()) == ("120", "40.5")
    screenshot(viewer, "data_dock_normalization", "Data and pretext")
    ckpt = _run(qtbot, train)
    assert ckpt["normalization"] == {
        "type": "zero_mean_unit_variance", "percentile_clip": [1.0, 99.5], "mean": [120.0],
        "std": [40.5], "per_image": True,  # clipping bounds are each image's own
    }  # fmt: skip
    zmuv = ckpt["cfg"]["DATA"]["NORMALIZATION"]["ZERO_MEAN_UNIT_VAR"]
    assert zmuv == {"MEAN_VAL": [120.0], "STD_VAL": [40.5]}
    assert any(sev == "info" and "Training finished" in msg for sev, msg in notes)
    box.kind.setCurrentIndex(box.kind.findData("scale_range"))  # no fixed values for this type
    assert not box.mean.isEnabled() and box.mean.text() == "120"
    cfg = data.state.cfg.data
    assert (cfg.normalization, cfg.normalization_mean, cfg.normalization_std) == (
        "scale_range", None, None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("mean", "12a", "Fixed mean: '12a' is not a list of numbers"),
        ("mean", "120,", "Fixed mean: '120,' is not a list of numbers"),
        ("std", "0", "'Fixed std' must be > 0 for every channel; got (0.0,)"),
        ("std", "35, -2", "must be > 0 for every channel"),
        ("mean", "nan", "must list numbers in raw units"),
        ("mean", "100, 90", "'sem' has 1 channel(s): give one value for every channel, or 1; "
                            "got 100, 90"),
    ],
)  # fmt: skip
def test_bad_normalisation_values_are_named_and_start_nothing(
    qtbot, viewer, docks, sem_layer, tmp_path, notes, field, text, expected
):
    data, train = docks["Data and pretext"], docks["Train"]
    box = data.normalization
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "results"))
    _type(qtbot, box.mean, "110")  # a valid value first: the state keeps it
    before = data.state.cfg
    assert before.data.normalization_mean == (110.0,)
    _type(qtbot, getattr(box, field), text)
    assert box.message.isVisible() and expected in box.message.text()
    assert box.message.text().startswith("Not used: ")
    assert data.state.cfg == before
    train.start_button.click()
    severity, message = notes[-1]
    assert severity == "error" and message.startswith("Cannot start training: Normalisation: ")
    assert expected in message
    assert not train.state.running and not (tmp_path / "results").exists()
    getattr(box, field).clear()  # fixed: the message goes, the state follows
    qtbot.keyClick(getattr(box, field), Qt.Key.Key_Return)
    assert not box.message.isVisible()
    assert data.state.cfg.data.normalization_mean == (None if field == "mean" else (110.0,))


def test_a_layer_with_other_channels_makes_the_values_invalid(qtbot, viewer, docks, notes):
    data, train = docks["Data and pretext"], docks["Train"]
    box = data.normalization
    viewer.add_image(np.zeros((2, 64, 64), np.uint16), name="cyx")  # channel axis 0
    assert data.state.channel_axis == 0
    _type(qtbot, box.std, "30, 40")
    assert data.state.cfg.data.normalization_std == (30.0, 40.0) and not box.message.isVisible()
    viewer.add_image(np.zeros((64, 64), np.uint16), name="yx")
    data.select(["yx"])
    assert "'yx' has 1 channel(s)" in box.message.text()
    train.start_button.click()
    assert "Cannot start training: Normalisation: 'yx' has 1 channel(s)" in notes[-1][1]
    data.select(["cyx"])
    assert not box.message.isVisible()


def test_a_closed_data_dock_is_left_alone(qtbot, viewer, docks):
    from napari_ssl.widgets.normalization_box import commit_inputs

    data, train = docks["Data and pretext"], docks["Train"]
    data.normalization.kind.setCurrentIndex(
        data.normalization.kind.findData("zero_mean_unit_variance")
    )
    data.normalization.mean.setText("abc")  # typed, never confirmed: refused at Start ...
    assert commit_inputs(train.state)
    viewer.window.remove_dock_widget(data)
    assert commit_inputs(train.state) == []  # ... but not once its dock is closed (still alive)
    data.deleteLater()  # napari hands a removed dock back without a parent: deleted in Qt
    qtbot.wait(50)
    train.validation.fraction.setValue(0.3)  # a config event: the deleted widgets are not called
    assert train.state.cfg.data.val_fraction == 0.3
    assert commit_inputs(train.state) == []


def _type_value(qtbot, spin, text: str) -> None:
    """Type ``text`` into a spin box as a user would, then press Enter."""
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def test_the_clipping_percentiles_bound_each_other(qtbot, viewer, docks, sem_layer):
    """The lower percentile cannot reach the upper one, typed or stepped, either way round; a
    loaded config's pair shows whole, whatever the fields held."""
    import dataclasses

    data = docks["Data and pretext"]
    viewer.window._wrapped_dock_widgets["Data and pretext"].raise_()
    box = data.normalization
    box.section.expand(animate=False)
    box.clip.setChecked(True)
    assert data.state.cfg.data.percentile_clip == (0.1, 99.9)
    _type_value(qtbot, box.clip_hi, "40")
    _type_value(qtbot, box.clip_lo, "60")  # the "0" is refused: 60 is above the upper one
    assert box.clip_lo.value() == 6.0
    box.clip_lo.stepBy(1000)  # the arrows stop below the upper one
    assert box.clip_lo.value() == pytest.approx(39.99)
    assert data.state.cfg.data.percentile_clip == pytest.approx((39.99, 40.0))
    box.clip_hi.stepBy(-1000)  # and the upper one above the lower one
    assert box.clip_hi.value() == pytest.approx(40.0) and not box.message.isVisible()
    _type_value(qtbot, box.clip_hi, "20")  # below the lower one: not taken
    assert box.clip_hi.value() == pytest.approx(40.0)
    _type_value(qtbot, box.clip_lo, "2")  # room again: the upper one may go down to 2.01
    _type_value(qtbot, box.clip_hi, "5")
    assert data.state.cfg.data.percentile_clip == pytest.approx((2.0, 5.0))
    loaded = dataclasses.replace(data.state.cfg.data, percentile_clip=(99.5, 99.99))
    data.state.update_cfg(data=loaded)  # as "Load config…" does
    assert (box.clip_lo.value(), box.clip_hi.value()) == pytest.approx((99.5, 99.99))
    assert data.state.cfg.data.percentile_clip == (99.5, 99.99)
