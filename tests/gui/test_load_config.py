"""Train dock "Load config…": napari-ssl and BiaPy YAML files into both docks and the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from gui_helpers import same, screenshot
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

pytestmark = pytest.mark.gui

# our layout, partial: the rest takes napari-ssl's defaults; small enough to train on a CPU
NAPARI_SSL_YAML = """\
data: {ndim: 2, patch_size: [32, 32], train_path: no/such/dataset, val_fraction: 0.2}
pretext: {task: crappify, noise: 0.3, resizing_factor: 2.0}
model: {architecture: resunet, feature_maps: [6, 12, 24], dropout: [0, 0, 0], z_down: [2, 2]}
train: {optimizer: ADAM, lr: 0.0003, batch_size: 3, epochs: 2, patience: 7, log_every: 1,
        augment: false, mixed_precision: "off"}
system: {device: cpu, seed: 3}
"""

# BiaPy's layout (as its templates write it): string tuples, "2.E-4", a key napari-ssl ignores
BIAPY_YAML = """\
SYSTEM:
    NUM_CPUS: -1
PROBLEM:
    TYPE: SELF_SUPERVISED
    NDIM: 2D
    SELF_SUPERVISED:
        PRETEXT_TASK: masking
DATA:
    PATCH_SIZE: (64, 64, 1)
    TRAIN:
        PATH: dataset/train/x
    VAL:
        SPLIT_TRAIN: 0.15
MODEL:
    ARCHITECTURE: mae
    VIT_TOKEN_SIZE: 8
    VIT_EMBED_DIM: 96
    VIT_NUM_LAYERS: 4
    VIT_NUM_HEADS: 4
    MAE_MASK_TYPE: random
    MAE_MASK_RATIO: 0.6
    MAE_DEC_HIDDEN_SIZE: 64
AUGMENTOR: {ENABLE: True, VFLIP: True, HFLIP: True, ROT90: True}
TRAIN: {ENABLE: True, OPTIMIZER: ADAMW, LR: 2.E-4, BATCH_SIZE: 4, EPOCHS: 12, PATIENCE: 5}
"""


def _load(train, monkeypatch, path: Path) -> None:
    """Press "Load config…" and pick ``path`` in its file dialog."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(path), ""))
    train.load_button.click()


def _shown(docks) -> dict:
    """What the two docks' fields show."""
    data, train = docks["Data and pretext"], docks["Train"]
    return {
        "task": data.task.currentText(), "noise": data.noise.value(),
        "factor": data.factor.value(), "mask": data.mask_type.currentText(),
        "ratio": data.ratio.value(), "token": data.token.value(),
        "patch": data.patch_xy.value(), "ndim": data.ndim.currentText(),
        "folder": data.folder.text(), "model": train.architecture.currentText(),
        "preset": train.preset.currentText(), "epochs": train.epochs.value(),
        "batch": train.batch.value(), "lr": train.lr.value(),
        "val": train.validation.fraction.value(), "val_folder": train.validation.folder.text(),
        "augment": train.augment.isChecked(), "precision": train.precision.currentText(),
        "device": train.device.currentData(), "normalization": data.normalization.summary,
    }  # fmt: skip


def test_napari_ssl_yaml_shows_in_both_docks_and_reaches_the_run(
    qtbot, viewer, docks, sem_layer, notes, tmp_path, monkeypatch
):
    from napari_ssl.engine.checkpoints import load_trained

    train = docks["Train"]
    train._set_devices([("CPU", "cpu")])  # the CPU only, as a machine without a GPU lists it
    train.result_dir.setText(str(tmp_path / "results"))
    path = tmp_path / "run.yaml"
    path.write_text(NAPARI_SSL_YAML)
    original = sem_layer.data.copy()
    _load(train, monkeypatch, path)
    assert _shown(docks) == {
        "task": "crappify", "noise": 0.3, "factor": 2.0, "mask": "grid", "ratio": 0.5,
        "token": 16, "patch": 32, "ndim": "2D", "folder": "", "model": "resunet",
        "preset": "tiny", "epochs": 2, "batch": 3,  # a CNN leaves the unused ViT preset be
        "lr": 0.0003, "val": 0.2, "val_folder": "", "augment": False, "precision": "off",
        "device": "cpu", "normalization": "Normalisation: zero mean, unit variance",
    }  # fmt: skip
    severity, message = notes[-1]
    assert severity == "warning" and "run.yaml" in message
    assert "'no/such/dataset' does not exist" in message and "selected layers" in message
    assert "cannot hold" not in message  # every shown value is the loaded one
    state = train.state
    assert state.layers == ("sem",) and state.folder == ""
    assert state.cfg.model.feature_maps == (6, 12, 24)  # not shown: kept in the state
    assert (state.cfg.train.optimizer, state.cfg.train.patience) == ("ADAM", 7)
    train.start_button.click()
    qtbot.waitUntil(lambda: not state.running, timeout=120_000)
    assert any(sev == "info" and "Training finished" in msg for sev, msg in notes)
    run = load_trained(state.checkpoint).cfg  # what the run trained, from its checkpoint
    assert run.model.feature_maps == (6, 12, 24) and run.model.architecture == "resunet"
    assert (run.train.optimizer, run.train.patience, run.system.seed) == ("ADAM", 7, 3)
    assert (run.pretext.noise, run.data.patch_size, run.train.lr) == (0.3, (32, 32), 3e-4)
    written = tmp_path / "results" / "ssl" / "config_files" / "ssl.napari-ssl.yaml"
    assert yaml.safe_load(written.read_text())["model"]["feature_maps"] == [6, 12, 24]
    assert same(sem_layer.data, original) and path.read_text() == NAPARI_SSL_YAML


def test_biapy_yaml_selects_its_train_folder(
    viewer, docks, sem_layer, sem_2d, notes, tmp_path, monkeypatch
):
    folder = (tmp_path / "dataset" / "train" / "x").resolve()
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "a.tif", sem_2d[:128, :128])
    path = tmp_path / "biapy.yaml"  # PATH is relative: read from the YAML's folder
    path.write_text(BIAPY_YAML)
    train, data = docks["Train"], docks["Data and pretext"]
    _load(train, monkeypatch, path)
    shown = _shown(docks)
    assert shown == {
        **shown,
        "task": "masking", "mask": "random", "ratio": 0.6, "token": 8, "patch": 64,
        "ndim": "2D", "folder": str(folder), "model": "mae",
        "preset": "from config (96, 4, 4)", "epochs": 12, "batch": 4,
        "lr": 0.0002, "val": 0.15, "augment": True,
    }  # fmt: skip
    severity, message = notes[-1]
    assert severity == "warning" and "SYSTEM.NUM_CPUS" in message  # BiaPy's reading notes
    assert f"Training data: the folder {folder}" in message
    assert train.status.text() == message  # all of it in the dock too
    state = train.state
    assert state.folder == str(folder) and state.layers == ()  # the folder, not the layer
    assert data.axes.detected.text() == (  # the config's 2D kept; the folder's first file read
        "detected: 2D, no channel axis (the folder's first file, 'a.tif': shape (128, 128)); "
        "edit if wrong"
    )
    model = train._config().model  # what Start would train
    assert model.vit_preset is None  # the config's own sizes, not a preset
    assert (model.vit_embed_dim, model.vit_num_layers, model.mae_dec_hidden_size) == (96, 4, 64)
    screenshot(viewer, "train_dock_loaded_biapy", "Train")
    screenshot(viewer, "data_dock_loaded_biapy", "Data and pretext")
    data.task.setCurrentText("crappify")  # the docks stay editable after a load
    assert train.architecture.currentText() == "unet"
    data.select(["sem"])  # layers or a folder: picking a layer clears the folder
    assert (state.layers, state.folder, data.folder.text()) == (("sem",), "", "")
    assert state.cfg.data.train_path == "" and train._images()[0].name == "sem"


def test_a_loaded_channel_count_does_not_bind_the_layers(
    qtbot, viewer, docks, sem_2d, notes, tmp_path, monkeypatch
):
    from napari_ssl.engine.checkpoints import load_trained

    train, data = docks["Train"], docks["Data and pretext"]
    train._set_devices([("CPU", "cpu")])
    train.result_dir.setText(str(tmp_path / "results"))
    path = tmp_path / "one_channel.yaml"
    path.write_text(NAPARI_SSL_YAML.replace("data: {ndim: 2,", "data: {ndim: 2, channels: 1,"))
    _load(train, monkeypatch, path)
    viewer.add_image(np.stack([sem_2d[:64, :64], sem_2d[64:128, :64]]), name="two")
    data.select(["two"])
    assert (data.state.ndim, data.state.channel_axis) == (2, 0)
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert any(sev == "info" and "Training finished" in msg for sev, msg in notes), notes
    assert load_trained(train.state.checkpoint).in_channels == 2


def test_values_the_docks_cannot_hold_are_named(docks, notes, tmp_path, monkeypatch):
    path = tmp_path / "wide.yaml"
    path.write_text("data: {patch_size: [64, 128]}\ntrain: {lr: 5.0e-7}\n")
    _load(docks["Train"], monkeypatch, path)
    severity, message = notes[-1]
    assert severity == "warning" and "cannot hold" in message
    assert "'Patch size': (64, 128) → (128, 128)" in message  # in the docks' words
    assert (
        "train.lr" not in message
        and "Learning rate" not in message
        and docks["Train"].lr.value() == 5e-7
    )  # held exactly


def test_the_learning_rate_box_takes_scientific_notation(qtbot, docks):
    from qtpy.QtCore import Qt

    lr = docks["Train"].lr
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "3e-7")
    qtbot.keyClick(lr.lineEdit(), Qt.Key.Key_Enter)
    assert lr.value() == 3e-7 and lr.text() == "3e-07"
    lr.setValue(1e-4 * 7 / 6)
    lr.interpretText()  # Qt reads its own text back: the value survives it
    assert lr.value() == pytest.approx(1e-4 * 7 / 6, rel=1e-11)
    lr.setValue(3e-7)
    lr.stepBy(1)  # the arrows double (and halve)
    assert lr.value() == 6e-7 and docks["Train"]._config().train.lr == 6e-7


def test_a_typo_in_a_key_is_the_first_line_of_the_message(docks, notes, tmp_path, monkeypatch):
    path = tmp_path / "typo.yaml"
    path.write_text(BIAPY_YAML.replace("PATCH_SIZE:", "PACH_SIZE:"))
    _load(docks["Train"], monkeypatch, path)
    severity, message = notes[-1]
    assert severity == "warning"
    assert message.splitlines()[0].startswith(
        "DATA.PACH_SIZE is not a key: did you mean DATA.PATCH_SIZE?"
    )
    assert "Loaded typo.yaml." in message.splitlines()[1]


def test_a_config_that_does_not_enable_training_still_loads(docks, notes, tmp_path, monkeypatch):
    path = tmp_path / "no_train.yaml"
    text = BIAPY_YAML.replace("PATCH_SIZE:", "PACH_SIZE:")  # BiaPy's TRAIN.ENABLE: False
    path.write_text(
        text.replace("TRAIN: {ENABLE: True,", "TRAIN: {").replace("EPOCHS: 12", "EPOCHS: 9")
    )
    _load(docks["Train"], monkeypatch, path)
    severity, message = notes[-1]
    assert severity == "warning" and message.splitlines()[0].startswith("DATA.PACH_SIZE is not")
    assert "TRAIN.ENABLE is off in the file: the docks train" in message
    assert docks["Train"].epochs.value() == 9  # loaded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train: {epochs: [1, 2\n", "not valid YAML"),
        ("train: {epochs: -3}\n", "train.epochs"),
        ("pretext: {task: masking}\n", "'MODEL.ARCHITECTURE' needs to be 'mae'"),
        ("train: 5\n", "wrong kind"),
        ("PROBLEM: {TYPE: SEMANTIC_SEG}\n", "PROBLEM.TYPE must be 'SELF_SUPERVISED'"),
        ("pretext: {task: crappify}\ntrain: {epochs: 3000000000}\n", "OverflowError"),  # no field
        (None, "not found"),
    ],
)
def test_bad_files_change_nothing(
    viewer, docks, sem_layer, notes, tmp_path, monkeypatch, text, expected
):
    train = docks["Train"]
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    before, cfg, data = _shown(docks), train.state.cfg, sem_layer.data.copy()
    _load(train, monkeypatch, path)
    severity, message = notes[-1]
    assert severity == "error" and "Cannot load the config" in message and expected in message
    assert _shown(docks) == before and train.state.cfg == cfg
    assert same(sem_layer.data, data) and [layer.name for layer in viewer.layers] == ["sem"]
    assert (path.read_text() if path.exists() else None) == text  # the file is untouched


def test_a_loaded_validation_folder_and_normalisation_show_and_stay_editable(
    qtbot, viewer, docks, sem_2d, tmp_path, monkeypatch
):
    train, norm = docks["Train"], docks["Data and pretext"].normalization
    box = train.validation
    val = (tmp_path / "dataset" / "val" / "x").resolve()
    val.mkdir(parents=True)
    tifffile.imwrite(val / "v.tif", sem_2d[:64, :64])
    path = tmp_path / "val.yaml"
    path.write_text(  # the folder is relative: to the YAML's folder
        "data: {val_path: dataset/val/x, val_fraction: 0.125, percentile_clip: [0.125, 99.5], "
        "normalization_mean: [120], normalization_std: [35, 30.25]}\n"
    )
    _load(train, monkeypatch, path)
    assert train.state.cfg.data.val_path == str(val)
    assert box.use_folder.isChecked() and box.folder.text() == str(val)
    assert not box.fraction.isEnabled() and box.hint.text() == "1 validation image(s)"
    clip = (norm.clip.isChecked(), norm.clip_hi.value())
    assert (norm.mean.text(), norm.std.text(), clip) == ("120", "35, 30.25", (True, 99.5))
    assert norm.summary == (
        "Normalisation: zero mean, unit variance, clip 0.125–99.5 %, mean 120, std 35, 30.25"
    )
    norm.mean.setText("110")  # an edit keeps the values the fields show rounded
    qtbot.keyClick(norm.mean, Qt.Key.Key_Return)
    cfg = train.state.cfg.data
    assert (cfg.normalization_mean, cfg.percentile_clip) == ((110.0,), (0.125, 99.5))
    screenshot(viewer, "train_dock_loaded_val_folder", "Train")
    box.use_fraction.click()  # the user goes back to holding out a fraction
    assert train.state.cfg.data.val_path == "" and box.fraction.isEnabled()
    assert train._config().data.val_path == "" and box.folder.text() == ""
    assert train._config().data.val_fraction == 0.125  # as loaded (the box shows it rounded)
    path.write_text("data: {val_fraction: 0.2}\n")
    _load(train, monkeypatch, path)
    assert box.use_fraction.isChecked() and box.fraction.value() == 0.2
    assert (norm.mean.text(), norm.std.text(), norm.clip.isChecked()) == ("", "", False)


def test_a_data_dock_opened_after_a_load_keeps_the_config(viewer, tmp_path, monkeypatch):
    from napari_ssl.widgets.data_dock import DataDock
    from napari_ssl.widgets.train_dock import TrainDock

    train = TrainDock(viewer)
    viewer.window.add_dock_widget(train, name="Train", area="right")
    path = tmp_path / "m.yaml"
    path.write_text(NAPARI_SSL_YAML)
    _load(train, monkeypatch, path)
    loaded = train.state.cfg
    data = DataDock(viewer)  # opened later, as napari's Plugins menu allows
    viewer.window.add_dock_widget(data, name="Data and pretext", area="right")
    assert train.state.cfg == loaded
    assert data.patch_xy.value() == loaded.data.patch_size[-1]
    assert data.task.currentText() == loaded.pretext.task


def test_a_config_s_test_part_and_dimensions_are_said(
    qtbot, viewer, docks, sem_layer, tmp_path, monkeypatch, notes
):
    """The docks train only (TEST.ENABLE is said, its folder kept for exports); a 3D config
    whose folder is missing, beside 2D layers, says to check the dimensions."""
    test = tmp_path / "ds" / "test" / "x"
    test.mkdir(parents=True)
    path = tmp_path / "cfg" / "biapy.yaml"
    path.parent.mkdir()
    path.write_text(
        "PROBLEM: {TYPE: SELF_SUPERVISED, NDIM: 3D}\n"
        "DATA: {PATCH_SIZE: [32, 64, 64, 1], TRAIN: {PATH: ../nowhere}, "
        "TEST: {PATH: ../ds/test/x}}\n"
        "TEST: {ENABLE: True}\n"
    )
    train, data = docks["Train"], docks["Data and pretext"]
    _load(train, monkeypatch, path)
    severity, message = notes[-1]
    assert severity == "warning"
    assert (
        "TEST.ENABLE: the docks train only. To test, run the config with the CLI (the Export dock "
        "shows the command), or score test images in the Reconstruct dock" in message
    )
    assert (
        "The config is 3D but the selected layers were read as 2D: check 'Dimensions' in the "
        "Data and pretext dock." in message
    )
    assert train.state.cfg.data.test_path == str(test.resolve())  # relative to the YAML
    assert data.axes.detected.text().endswith("; you chose 3D, no channel axis")
