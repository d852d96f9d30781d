"""Reconstruct and Export docks, with checkpoints trained by the engine on real crops."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from gui_helpers import SCALE, same, screenshot

pytestmark = pytest.mark.gui


def _train(tmp: Path, image: np.ndarray, task: str, channels: int = 1) -> str:
    from napari_ssl.config import Config
    from napari_ssl.data.images import as_image
    from napari_ssl.engine import events as ev
    from napari_ssl.engine.trainer import train
    from napari_ssl.results import ResultsLayout

    cfg = Config()
    cfg.data.patch_size = (32, 32)
    cfg.pretext.task = task
    cfg.model.feature_maps, cfg.model.dropout, cfg.model.z_down = (4, 8, 16), (0.0,) * 3, (2, 2)
    if task == "masking":
        cfg.model.architecture, cfg.model.vit_token_size = "mae", 8
        cfg.model.vit_embed_dim, cfg.model.vit_num_layers, cfg.model.vit_num_heads = 32, 2, 2
        cfg.model.mae_dec_hidden_size, cfg.model.mae_dec_num_layers = 32, 1
        cfg.model.mae_dec_num_heads, cfg.model.mae_dec_mlp_dims = 2, 64
    cfg.train.epochs, cfg.train.batch_size, cfg.system.device = 1, 2, "cpu"
    cfg.data.channels = channels  # image: (C, Y, X) when channels > 1
    images = [as_image(image, "x", 2, 0 if channels > 1 else None)]
    events = list(train(cfg, images, layout=ResultsLayout(tmp, task, 1)))
    assert isinstance(events[-1], ev.Finished), events[-1]
    return events[-1].best_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, sem_2d) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("ckpt")
    crop = sem_2d[:96, :96].copy()
    return {task: _train(tmp, crop, task) for task in ("crappify", "masking")}


def _trained_on(dock, checkpoint: str, names: tuple[str, ...], channel_axis=None) -> None:
    """As the Train dock records it at Start: the run's checkpoint folder and its layers."""
    from napari_ssl.widgets.state import TrainingInputs

    dock.state.checkpoint = checkpoint
    layers = [dock.viewer.layers[name] for name in names]
    dock.state.trained_on = TrainingInputs.of(
        str(Path(checkpoint).resolve().parent), layers, 2, [channel_axis] * len(layers)
    )


def _export(qtbot, dock) -> None:
    dock.paths = {}
    dock.export_button.click()
    qtbot.waitUntil(lambda: dock.worker is None and bool(dock.paths), timeout=60_000)


def _run(qtbot, dock) -> None:
    dock.run_button.click()
    qtbot.waitUntil(lambda: dock.worker is None, timeout=120_000)


def test_reconstruct_crappify_with_score(
    qtbot, viewer, docks, sem_layer, checkpoints, collector_threads
):
    dock = docks["Reconstruct"]
    dock.state.checkpoint = checkpoints["crappify"]  # as a finished training does
    assert dock.checkpoint.text() == checkpoints["crappify"]
    dock.select(["sem"])
    dock.degrade.setChecked(True)
    sem_layer.rotate, sem_layer.shear = 20, [0.3]  # e.g. a deskewed light-sheet stack
    original = sem_layer.data.copy()
    _run(qtbot, dock)
    for name in ("sem [reconstruction]", "sem [degraded]"):
        layer = viewer.layers[name]
        assert layer.data.shape == (96, 96) and tuple(layer.scale) == SCALE
        assert tuple(layer.translate) == (10.0, 20.0)
        for pixel in ((0, 0), (95, 3), (40, 77)):  # on top of the source, pixel for pixel
            assert np.allclose(layer.data_to_world(pixel), sem_layer.data_to_world(pixel))
    assert "PSNR" in dock.metrics.text() and "SSIM" in dock.metrics.text()
    assert same(sem_layer.data, original)
    count = len(viewer.layers)
    _run(qtbot, dock)  # a second run updates the same layers
    assert len(viewer.layers) == count
    assert set(collector_threads) == {"MainThread"}  # none in the worker thread
    screenshot(viewer, "reconstruct_dock_crappify", "Reconstruct")


def test_reconstruct_offers_inputs_and_degraded_copies(viewer, docks, sem_layer):
    from qtpy.QtCore import Qt

    outputs = ("sem [reconstruction]", "sem [MAE masked]", "sem [live reconstruction]")
    for name in ("sem [degraded]", "sem [crappified]", *outputs):
        viewer.add_image(sem_layer.data, name=name)
    viewer.add_image(sem_layer.data, name="sem")  # napari calls it "sem [1]"
    items = docks["Reconstruct"].layer_list
    offered = {items.item(i).data(Qt.ItemDataRole.UserRole).name for i in range(items.count())}
    assert offered == {"sem", "sem [1]", "sem [degraded]", "sem [crappified]"}


def test_reconstruct_masking_views(qtbot, viewer, docks, sem_layer, checkpoints):
    dock = docks["Reconstruct"]
    dock.checkpoint.setText(checkpoints["masking"])
    dock.select(["sem"])
    _run(qtbot, dock)
    for suffix in ("original", "masked", "reconstruction", "reconstruction + visible"):
        layer = viewer.layers[f"sem [MAE {suffix}]"]
        assert layer.data.shape == (96, 96) and tuple(layer.scale) == SCALE
    assert same(viewer.layers["sem [MAE original]"].data, sem_layer.data)
    assert viewer.layers[-1].name == "sem [MAE reconstruction + visible]"
    # scored where tokens were hidden: the MSE over the pixels masked in [MAE masked]
    from napari_ssl.engine.checkpoints import load_trained

    token = load_trained(checkpoints["masking"]).cfg.model.vit_token_size
    original, masked = sem_layer.data.astype(np.float64), viewer.layers["sem [MAE masked]"].data
    tokens = (masked != original).reshape(96 // token, token, 96 // token, token).any(axis=(1, 3))
    hidden = np.kron(tokens, np.ones((token, token), dtype=bool))  # whole tokens
    err = np.mean((viewer.layers["sem [MAE reconstruction]"].data[hidden] - original[hidden]) ** 2)
    psnr = 10 * np.log10(np.ptp(original) ** 2 / err)
    assert dock.metrics.text().startswith(f"sem: hidden pixels PSNR {psnr:.2f} dB, MSE {err:.4g}; ")
    both = viewer.layers["sem [MAE reconstruction + visible]"].data  # as training validates
    whole = 10 * np.log10(np.ptp(original) ** 2 / np.mean((both - original) ** 2))
    assert f"with the visible pixels PSNR {whole:.2f} dB, SSIM 0." in dock.metrics.text()
    viewer.canvas.grid.enabled = True  # the views side by side, for the screenshot
    qtbot.wait(100)
    viewer.reset_view()
    qtbot.wait(300)
    screenshot(viewer, "reconstruct_dock_masking", "Reconstruct")


def test_reconstruct_puts_channels_back(qtbot, viewer, docks, sem_2d, checkpoints, notes):
    dock, data = docks["Reconstruct"], docks["Data and pretext"]
    yxc = viewer.add_image(sem_2d[:64, :80, None].copy(), name="yxc", scale=(2.0, 2.0, 1.0))
    data.select(["yxc"])
    assert data.state.channel_axis == 2
    dock.checkpoint.setText(checkpoints["crappify"])
    dock.select(["yxc"])
    _run(qtbot, dock)
    out = viewer.layers["yxc [reconstruction]"]
    assert out.data.shape == yxc.data.shape and tuple(out.scale) == (2.0, 2.0, 1.0)
    viewer.add_image(np.stack([sem_2d[:64, :80]] * 2), name="cyx")  # 2 channels, model has 1
    data.select(["cyx"])
    dock.select(["cyx"])
    count = len(viewer.layers)
    _run(qtbot, dock)
    assert notes[-1][0] == "error" and "channel" in notes[-1][1]
    assert len(viewer.layers) == count


def test_rgb_outputs_keep_the_source_type(qtbot, viewer, docks, sem_2d, tmp_path):
    """napari draws float RGB as 0-1 (white thumbnails): RGB outputs are uint8 like the source."""
    cyx = np.stack([sem_2d[:64, :64], sem_2d[64:128, :64], 255 - sem_2d[:64, :64]])
    checkpoint = _train(tmp_path, cyx, "crappify", channels=3)
    source = viewer.add_image(np.moveaxis(cyx, 0, -1).copy(), name="rgb", rgb=True)
    data, dock = docks["Data and pretext"], docks["Reconstruct"]
    data.select(["rgb"])
    data.run_preview()
    dock.checkpoint.setText(checkpoint)
    dock.select(["rgb"])
    _run(qtbot, dock)
    for name in ("rgb [crappified]", "rgb [reconstruction]"):
        layer = viewer.layers[name]
        assert layer.rgb and layer.data.dtype == np.uint8 and layer.data.shape == (64, 64, 3)
        assert abs(layer.thumbnail[..., :3].mean() - source.thumbnail[..., :3].mean()) < 40


def test_reconstruct_follows_the_checkpoint_and_renamed_layers(
    qtbot, viewer, docks, sem_2d, checkpoints, notes
):
    dock, data = docks["Reconstruct"], docks["Data and pretext"]
    viewer.add_image(np.stack([sem_2d[:64, :64]] * 12), name="stack")  # (Z, Y, X)
    data.select(["stack"])
    assert data.state.ndim == 3  # the Data dock reads it as a volume; the checkpoint is 2D
    dock.checkpoint.setText(checkpoints["crappify"])
    dock.select(["stack"])
    count = len(viewer.layers)
    _run(qtbot, dock)
    assert notes[-1][0] == "error"
    fit = "'stack' (12, 64, 64) does not fit the checkpoint's model (2D, 1 channel(s))"
    assert fit in notes[-1][1]
    assert len(viewer.layers) == count
    one = viewer.add_image(sem_2d[None, :64, :80].copy(), name="one", scale=(1.0, 2.0, 2.0))
    data.select(["one"])  # (1, Y, X): the Data dock guesses 3D; the model says 2D, 1 channel
    dock.select(["one"])
    one.name = "renamed"  # the selection follows the layer
    assert [item.text().split()[0] for item in dock.layer_list.selectedItems()] == ["renamed"]
    _run(qtbot, dock)
    out = viewer.layers["renamed [reconstruction]"]
    assert out.data.shape == (1, 64, 80) and tuple(out.scale) == (1.0, 2.0, 2.0)


def test_reconstruct_errors(qtbot, viewer, docks, sem_layer, notes, tmp_path):
    dock = docks["Reconstruct"]
    dock.checkpoint.setText(str(tmp_path / "none.pth"))
    dock.select(["sem"])
    dock.run_button.click()
    assert notes[-1][0] == "error" and "not found" in notes[-1][1]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    dock.checkpoint.setText(str(bad))
    _run(qtbot, dock)
    assert notes[-1][0] == "error" and "Reconstruction failed" in notes[-1][1]
    assert "sem [reconstruction]" not in viewer.layers
    assert dock.progress.text() == "failed: no layer added"  # before any tile


def _selected(dock) -> list[str]:
    from qtpy.QtCore import Qt

    return [item.data(Qt.ItemDataRole.UserRole).name for item in dock.layer_list.selectedItems()]


def test_reconstruct_inputs_follow_the_data_dock_until_picked(qtbot, viewer, docks, sem_2d):
    """As in the review: a layer chosen in the Data dock is the Reconstruct dock's input too,
    until the user picks inputs there (a click); with none picked it follows again."""
    from qtpy.QtCore import Qt

    data, dock = docks["Data and pretext"], docks["Reconstruct"]
    viewer.window._wrapped_dock_widgets["Reconstruct"].raise_()
    for name, rows in (("full", slice(0, 256)), ("crop", slice(100, 164))):
        viewer.add_image(sem_2d[rows, :256].copy(), name=name)
    assert data.state.layers == ("full",) and _selected(dock) == ["full"]
    data.select(["crop"])
    assert _selected(dock) == ["crop"]
    data.select(["full", "crop"])
    assert _selected(dock) == ["full", "crop"]
    qtbot.waitUntil(lambda: dock.layer_list.isVisible(), timeout=2000)
    item = dock.layer_list.findItems("full", Qt.MatchFlag.MatchStartsWith)[0]
    where = dock.layer_list.visualItemRect(item).center()
    qtbot.mouseClick(dock.layer_list.viewport(), Qt.MouseButton.LeftButton, pos=where)
    assert _selected(dock) == ["full"]  # the user's pick ...
    data.select(["crop"])
    viewer.add_image(sem_2d[:32, :32].copy(), name="other")
    assert _selected(dock) == ["full"]  # ... stays, whatever the Data dock selects
    dock.select([])  # nothing picked any more
    data.select(["other"])
    assert _selected(dock) == ["other"]


def test_export_and_reload(qtbot, viewer, docks, sem_layer, checkpoints, tmp_path):
    from napari_ssl.config import load_yaml
    from napari_ssl.engine.checkpoints import load_trained

    dock = docks["Export"]
    _trained_on(dock, checkpoints["crappify"], ("sem",))
    dock.state.result_dir, dock.state.run_name = str(tmp_path / "runs"), "ssl"
    trained_run = tmp_path / "runs" / "ssl" / "checkpoints" / "ssl_1-checkpoint-best.pth"
    trained_run.parent.mkdir(parents=True)
    trained_run.write_bytes(Path(checkpoints["crappify"]).read_bytes())  # the run exported
    dock.out_dir.setText(str(tmp_path / "export"))
    dock.name.setText("pretrained")
    _export(qtbot, dock)
    pth = Path(dock.fields["pth"].text())
    assert pth.is_file() and Path(dock.fields["safetensors"].text()).is_file()
    trained = load_trained(pth)
    assert trained.cfg.pretext.task == "crappify"
    cfg = load_yaml(dock.fields["yaml"].text())
    assert sorted(p.name for p in (Path(cfg.data.train_path) / "train" / "x").iterdir()) == [
        "sem.tif"
    ]
    command = shlex.split(dock.fields["command"].toPlainText())
    assert command[:3] == ["napari-ssl", "--config", str(dock.paths["yaml"])]
    assert command[command.index("--name") + 1] == "ssl"
    assert command[command.index("--run_id") + 1] == "2"  # a new run: ssl_1 stays as it was
    assert yaml.safe_load(Path(dock.paths["yaml"]).read_text())["data"]["patch_size"] == [32, 32]
    from napari_ssl.cli import main

    assert main(command[1:]) == 0  # the shown command really reproduces the run headless
    assert trained_run.read_bytes() == Path(checkpoints["crappify"]).read_bytes()
    screenshot(viewer, "export_dock", "Export")


def test_export_a_two_channel_layer(qtbot, viewer, docks, sem_2d, tmp_path):
    """The exported dataset folder of a (Y, X, 2) layer reads back identical and trains."""
    import tifffile

    from napari_ssl.cli import main
    from napari_ssl.config import load_yaml
    from napari_ssl.data.folders import load_image

    cyx = np.stack([sem_2d[:64, :80], 255 - sem_2d[64:128, :80]])
    viewer.add_image(np.moveaxis(cyx, 0, -1).copy(), name="two", scale=(2.0, 2.0, 1.0))
    docks["Data and pretext"].select(["two"])
    dock = docks["Export"]
    assert dock.state.channel_axis == 2
    checkpoint = _train(tmp_path / "ckpt", cyx, "crappify", channels=2)
    _trained_on(dock, checkpoint, ("two",), channel_axis=2)
    dock.state.result_dir, dock.state.run_name = str(tmp_path / "runs"), "two"
    dock.out_dir.setText(str(tmp_path / "export"))
    dock.name.setText("two")
    _export(qtbot, dock)
    cfg = load_yaml(dock.fields["yaml"].text())
    written = Path(cfg.data.train_path) / "train" / "x" / "two.tif"
    np.testing.assert_array_equal(load_image(written, 2, cfg.data.channels).read(), cyx)
    with tifffile.TiffFile(written) as tif:  # channels named; the layer's pixel size kept
        assert tif.series[0].axes == "CYX"
        assert tif.pages[0].tags["XResolution"].value == (1, 2)
    assert main(shlex.split(dock.fields["command"].toPlainText())[1:]) == 0


def test_export_with_a_bad_name_writes_nothing(
    qtbot, docks, sem_layer, checkpoints, tmp_path, notes
):
    dock = docks["Export"]
    dock.state.checkpoint = checkpoints["crappify"]
    dock.out_dir.setText(str(tmp_path / "export"))
    dock.name.setText("../elsewhere/x")
    dock.export_button.click()
    assert notes[-1][0] == "error" and "is not a plain name" in notes[-1][1]
    assert dock.worker is None and not any(tmp_path.rglob("*.tif"))


def test_export_saves_the_run_s_layers_and_keeps_earlier_exports(
    qtbot, viewer, docks, sem_layer, sem_2d, checkpoints, tmp_path, notes
):
    from napari_ssl.widgets.export_dock import NO_DATA

    viewer.add_image(sem_2d[:96, 96:192].copy(), name="other")
    docks["Data and pretext"].select(["other"])  # selected now, but the run trained on "sem"
    dock = docks["Export"]
    _trained_on(dock, checkpoints["crappify"], ("sem",))
    dock.out_dir.setText(str(tmp_path / "export"))
    _export(qtbot, dock)
    data = tmp_path / "export" / "pretrained_data" / "train" / "x"
    assert sorted(p.name for p in data.iterdir()) == ["sem.tif"]
    pth = (tmp_path / "export" / "pretrained.pth").read_bytes()
    _trained_on(dock, checkpoints["crappify"], ("other",))  # a second run, on "other"
    dock.export_button.click()  # the same name again: refused, nothing written
    assert notes[-1][0] == "error" and "already exist" in notes[-1][1]
    assert "pretrained.pth" in notes[-1][1] and "pretrained_data" in notes[-1][1]
    assert dock.worker is None and sorted(p.name for p in data.iterdir()) == ["sem.tif"]
    assert (tmp_path / "export" / "pretrained.pth").read_bytes() == pth
    dock.replace.setChecked(True)
    _export(qtbot, dock)
    assert sorted(p.name for p in data.iterdir()) == ["other.tif"]  # not the earlier run's too
    dock.save_data.setChecked(False)  # no data: the command would fail, so it is not shown
    _export(qtbot, dock)
    assert dock.fields["command"].toPlainText() == NO_DATA[0]
    dock.state.trained_on = None  # a checkpoint this viewer did not train: its layers unknown
    dock.save_data.setChecked(True)
    _export(qtbot, dock)
    assert dock.fields["command"].toPlainText() == NO_DATA[1]


def test_export_after_training_saves_what_the_run_trained_on(
    qtbot, viewer, docks, sem_layer, sem_2d, tmp_path
):
    from gui_helpers import tiny

    train, data, dock = docks["Train"], docks["Data and pretext"], docks["Export"]
    tiny(docks, epochs=1)
    train.result_dir.setText(str(tmp_path / "runs"))
    train.start_button.click()
    qtbot.waitUntil(lambda: not train.state.running, timeout=120_000)
    assert dock.checkpoint.text() == train.state.checkpoint  # the run just trained
    viewer.add_image(sem_2d[:64, :64].copy(), name="later")
    data.select(["later"])  # chosen after the run: not what it trained on
    dock.out_dir.setText(str(tmp_path / "export"))
    _export(qtbot, dock)
    saved = tmp_path / "export" / "pretrained_data" / "train" / "x"
    assert sorted(p.name for p in saved.iterdir()) == ["sem.tif"]


@pytest.mark.parametrize("where", ["relative", "file"])
def test_export_to_a_bad_folder_is_refused_at_once(
    qtbot, docks, sem_layer, checkpoints, tmp_path, notes, where, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    dock = docks["Export"]
    dock.state.checkpoint = checkpoints["crappify"]
    dock.out_dir.setText("export/here" if where == "relative" else str(tmp_path / "file" / "x"))
    dock.export_button.click()
    expected = "is a relative path: give a full path" if where == "relative" else "a file"
    assert notes[-1][0] == "error" and expected in notes[-1][1]
    assert dock.worker is None and sorted(tmp_path.iterdir()) == [tmp_path / "file"]


def test_reconstruct_cancel(qtbot, viewer, docks, sem_2d, checkpoints, notes, capfd):
    dock = docks["Reconstruct"]
    viewer.add_image(sem_2d, name="full")
    dock.checkpoint.setText(checkpoints["crappify"])
    dock.select(["full"])
    dock.run_button.click()
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: dock.progress.value() > 0, timeout=60_000)
    dock.cancel_button.click()
    qtbot.waitUntil(lambda: dock.worker is None, timeout=60_000)
    assert "full [reconstruction]" not in viewer.layers
    assert notes[-1] == ("info", "Reconstruction cancelled; no layer was added.")
    assert re.fullmatch(r"cancelled at \d+%: no layer added", dock.progress.text())
    assert 0 < dock.progress.value() < dock.progress.maximum()  # where it stopped
    assert not [message for severity, message in notes if severity == "error"]
    assert "InferenceCancelled" not in capfd.readouterr().err  # a cancel is no error


def _start_big(qtbot, viewer, dock, sem_2d, checkpoint: str) -> None:
    """Start reconstructing a 2048 x 1536 image (as in the review) and wait for its first tiles."""
    viewer.add_image(np.tile(sem_2d, (2, 1)), name="big")
    dock.checkpoint.setText(checkpoint)
    dock.select(["big"])
    dock.run_button.click()
    qtbot.waitUntil(lambda: dock.progress.value() > 0, timeout=60_000)
    assert dock.progress.value() < dock.progress.maximum()  # mid-reconstruction


@pytest.mark.parametrize("how", ["close button", "remove_dock_widget"])
def test_removing_the_dock_cancels_the_reconstruction(
    qtbot, viewer, docks, sem_2d, checkpoints, notes, how
):
    from qtpy.QtCore import QThreadPool

    dock = docks["Reconstruct"]
    _start_big(qtbot, viewer, dock, sem_2d, checkpoints["crappify"])
    if how == "close button":
        viewer.window._wrapped_dock_widgets["Reconstruct"].title.close_button.click()
    else:
        viewer.window.remove_dock_widget(dock)
    assert "Reconstruct" not in viewer.window._wrapped_dock_widgets
    assert QThreadPool.globalInstance().waitForDone(1000)  # the work ended with the dock
    qtbot.wait(300)  # whatever the thread emitted is delivered now
    assert [layer.name for layer in viewer.layers] == ["big"]  # no layer added
    assert not [message for severity, message in notes if severity == "error"]
    dock.deleteLater()  # napari hands a removed dock back without a parent: delete it in Qt
    qtbot.wait(50)
    viewer.close()
    assert not [message for severity, message in notes if severity == "error"]


def test_removing_the_export_dock_mid_export_lets_the_files_finish(
    qtbot, viewer, docks, sem_layer, checkpoints, tmp_path, notes
):
    from qtpy.QtCore import QThreadPool

    dock = docks["Export"]
    dock.state.checkpoint = checkpoints["crappify"]
    dock.out_dir.setText(str(tmp_path / "export"))
    dock.name.setText("pretrained")
    dock.export_button.click()
    assert dock.worker is not None
    viewer.window.remove_dock_widget(dock)  # at once: the export has just begun
    assert QThreadPool.globalInstance().waitForDone(30_000)  # the thread ended
    qtbot.wait(300)
    assert dock.paths == {}  # nothing reached the removed dock
    assert (tmp_path / "export" / "pretrained.pth").is_file()  # the files were written whole
    assert not [message for severity, message in notes if severity == "error"]
    dock.deleteLater()
    qtbot.wait(50)
    viewer.close()


def test_closing_the_viewer_cancels_the_reconstruction(
    qtbot, viewer, docks, sem_2d, checkpoints, notes
):
    from qtpy.QtCore import QThreadPool

    dock = docks["Reconstruct"]
    _start_big(qtbot, viewer, dock, sem_2d, checkpoints["crappify"])
    viewer.close()
    assert QThreadPool.globalInstance().waitForDone(1000)  # cancelled and waited for
    qtbot.wait(300)
    assert not [message for severity, message in notes if severity == "error"]


REMOVE_THEN_EXIT = """
    import sys, time
    import numpy as np, tifffile
    import napari
    from qtpy.QtCore import QCoreApplication
    from napari_ssl.widgets.launch import add_docks

    viewer = napari.Viewer(show=True)
    dock = add_docks(viewer)["Reconstruct"]
    sem = tifffile.imread(sys.argv[1])
    viewer.add_image(np.tile(sem, (2, 1)), name="big")
    dock.checkpoint.setText(sys.argv[2])
    dock.select(["big"])
    dock.run_button.click()
    deadline = time.perf_counter() + 60
    while dock.progress.value() <= 0 and time.perf_counter() < deadline:
        QCoreApplication.processEvents()
    print("running:", dock.worker is not None, flush=True)
    if sys.argv[3] == "close button":
        viewer.window._wrapped_dock_widgets["Reconstruct"].title.close_button.click()
    for _ in range(20):
        QCoreApplication.processEvents()
        time.sleep(0.02)
    print("layers:", [layer.name for layer in viewer.layers], flush=True)
    viewer.close()
"""


@pytest.mark.parametrize("how", ["close button", "viewer closed"])
def test_exit_during_a_reconstruction_is_clean(tmp_path, checkpoints, how):
    """The review's reproduction in a process of its own: napari used to abort on exit (134)."""
    import os
    import subprocess
    import sys
    import textwrap

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "remove_then_exit.py"
    script.write_text(textwrap.dedent(REMOVE_THEN_EXIT))
    sem = root / "src" / "napari_ssl" / "sample_data" / "sem_retic_2d.tif"
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    env["NAPARI_CONFIG"] = str(tmp_path / "napari-settings.yaml")
    out = subprocess.run(
        [sys.executable, str(script), str(sem), checkpoints["crappify"], how],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "running: True" in out.stdout and "layers: ['big']" in out.stdout
    assert "Traceback" not in out.stderr and "has been deleted" not in out.stderr, out.stderr


def test_plain_errors():
    from napari_ssl.widgets.worker import plain_error

    oom = plain_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "batch size" in oom and "Out of GPU memory" in oom
    assert plain_error(ValueError("bad value: fix it")) == "bad value: fix it"
