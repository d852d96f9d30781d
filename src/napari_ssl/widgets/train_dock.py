"""Train dock: model and training settings, Start / Pause / Stop, progress, live loss plot.

The engine runs in a worker (:mod:`napari_ssl.widgets.worker`); this dock only relays its events
to the plot, the progress bar, the shared state and a ``<layer> [live reconstruction]`` layer.
Start sets ``state.running`` before anything else, so a second press is refused even within the
same event-loop turn. Removing the dock or closing the viewer stops the training cleanly.
"""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_ssl.config import VIT_PRESETS, Config, ConfigError
from napari_ssl.data.images import DataError, Image
from napari_ssl.engine import events as ev
from napari_ssl.widgets import _layers
from napari_ssl.widgets.loss_plot import LossPlot, theme_colors
from napari_ssl.widgets.state import SslState, state_for, unwrap
from napari_ssl.widgets.worker import TrainingSession, probe_devices

MODELS = {"crappify": ("unet", "resunet"), "masking": ("mae",)}
START_MODES = ("new training", "continue (resume) from checkpoint", "fine-tune from checkpoint")
PREVIEW_EVERY_S = 2.0
DEFAULT_RESULT_DIR = str(Path.home() / "napari-ssl-results")


def _shutdown(session: TrainingSession, state: SslState, *_: Any) -> None:
    """Stop the training and wait (extra arguments: Qt's ``destroyed(obj)``)."""
    session.shutdown()
    state.running = False


def next_run_id(result_dir: str, name: str) -> int:
    """1 + the highest run id with a checkpoint under ``<result_dir>/<name>/checkpoints``."""
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)-checkpoint-")
    folder = Path(result_dir) / name / "checkpoints"
    ids = [int(m.group(1)) for p in folder.glob("*") if (m := pattern.match(p.name))]
    return max(ids, default=0) + 1


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainDock(QWidget):
    """Configure and run a training; watch it live."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.state = state_for(self.viewer)
        self.session = TrainingSession(self._on_event, self._on_done)
        self._plan = (1, 1, 0)  # epochs, steps per epoch, start epoch
        self._sources: list[Any] = []  # layers trained on (for the live reconstruction)
        self._region: tuple[slice, ...] = ()
        self._layout: Any = None  # ResultsLayout of the latest run
        self._devices_probed = False
        self._docked = False
        self._build()
        self.state.events.cfg.connect(self._sync_task)
        self.state.events.running.connect(self._update_buttons)
        self.destroyed.connect(partial(_shutdown, self.session, self.state))
        self._sync_task()
        self._update_buttons()

    # ---- UI -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        model = QGroupBox("Model and training")
        form = QFormLayout(model)
        self.architecture = QComboBox()
        self.preset = QComboBox()
        self.preset.addItems(list(VIT_PRESETS))
        self.epochs = QSpinBox(minimum=1, maximum=100000, value=100)
        self.batch = QSpinBox(minimum=1, maximum=4096, value=6)
        self.lr = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=1.0, singleStep=1e-5, value=1e-4)
        self.val_fraction = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.5, singleStep=0.05)
        self.val_fraction.setValue(0.1)
        self.augment = QCheckBox("flips and 90° rotations")
        self.augment.setChecked(True)
        self.device = QComboBox()
        self.device.addItem("auto", "auto")
        self.precision = QComboBox()
        self.precision.addItems(["auto", "bf16", "fp16", "off"])
        for label, widget in (
            ("Model", self.architecture), ("ViT preset", self.preset), ("Epochs", self.epochs),
            ("Batch size", self.batch), ("Learning rate", self.lr),
            ("Validation fraction", self.val_fraction), ("Augmentation", self.augment),
            ("Device", self.device), ("Mixed precision", self.precision),
        ):  # fmt: skip
            form.addRow(label, widget)
        layout.addWidget(model)
        out = QGroupBox("Results and checkpoints")
        out_form = QFormLayout(out)
        self.result_dir = QLineEdit(DEFAULT_RESULT_DIR)
        out_form.addRow("Result folder", self._with_browse(self.result_dir, folder=True))
        self.run_name = QLineEdit("ssl")
        out_form.addRow("Run name", self.run_name)
        self.start_mode = QComboBox()
        self.start_mode.addItems(list(START_MODES))
        self.start_mode.currentIndexChanged.connect(self._update_buttons)
        out_form.addRow("Start as", self.start_mode)
        self.checkpoint = QLineEdit(placeholderText="checkpoint .pth to continue from")
        out_form.addRow("Checkpoint", self._with_browse(self.checkpoint, folder=False))
        layout.addWidget(out)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.plot = LossPlot(self, theme_colors(self.viewer))
        layout.addWidget(self.plot, stretch=1)

    def _with_browse(self, edit: QLineEdit, folder: bool) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        button = QPushButton("…")
        button.setMaximumWidth(30)

        def browse() -> None:
            path = (
                QFileDialog.getExistingDirectory(self, "Result folder")
                if folder
                else QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pth)")[0]
            )
            if path:
                edit.setText(path)

        button.clicked.connect(browse)
        row.addWidget(button)
        return box

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._devices_probed:  # torch loads in a thread: the dock opens at once
            self._devices_probed = True
            from napari.qt.threading import create_worker

            worker = create_worker(probe_devices, _start_thread=False)
            worker.returned.connect(self._set_devices)
            worker.start()

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ParentChange:  # napari takes a removed dock's widget out
            if self._docked and self.parent() is None:
                _shutdown(self.session, self.state)
            self._docked = self.parent() is not None
        return super().event(e)

    def _set_devices(self, choices: list[tuple[str, str]]) -> None:
        self.device.clear()
        for label, value in choices:
            self.device.addItem(label, value)

    def _sync_task(self) -> None:
        names = MODELS[self.state.cfg.pretext.task]
        if tuple(self.architecture.itemText(i) for i in range(self.architecture.count())) != names:
            self.architecture.clear()
            self.architecture.addItems(list(names))
        self.preset.setEnabled(names == ("mae",))

    def _update_buttons(self) -> None:
        running = self.state.running
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.checkpoint.setEnabled(self.start_mode.currentIndex() > 0 and not running)
        if not running:
            self.pause_button.setText("Pause")

    # ---- actions --------------------------------------------------------------------------
    def start(self) -> None:
        """Start a training (refused while one runs); errors become notifications."""
        if self.state.running or self.session.running:
            return
        self.state.running = True
        try:
            job = self._prepare()
        except (ConfigError, DataError, ValueError, OSError) as err:
            self.state.running = False
            show_error(f"Cannot start training: {err}")
            return
        self.plot.clear()
        self.progress.setFormat("starting…")
        self.status.setText(f"results: {self._layout.root}")
        self.session.start(**job)

    def toggle_pause(self) -> None:
        if self.session.paused:
            self.session.resume()
            self.pause_button.setText("Pause")
            self.progress.setFormat(self.progress.format().replace(" (paused)", ""))
        else:
            self.session.pause()
            self.pause_button.setText("Resume")
            self.progress.setFormat(self.progress.format() + " (paused)")

    def stop(self) -> None:
        self.session.stop()
        self.stop_button.setEnabled(False)
        self.progress.setFormat("stopping at the next step…")

    def _prepare(self) -> dict[str, Any]:
        from napari_ssl.results import ResultsLayout

        images = self._images()
        cfg = self._config()
        mode = self.start_mode.currentIndex()
        path = self.checkpoint.text().strip()
        if mode and not Path(path).is_file():
            raise DataError(
                f"checkpoint '{path}' not found: pick the .pth file to continue from (a stopped "
                "run's '-checkpoint-last.pth'), or start a new training."
            )
        if mode == 2:
            cfg.model = dataclasses.replace(cfg.model, load_checkpoint=True, checkpoint_file=path)
        cfg.validate()
        for img in images:
            if any(s < p for s, p in zip(img.spatial_shape, cfg.data.patch_size, strict=True)):
                show_warning(
                    f"'{img.name}' {img.spatial_shape} is smaller than the patch "
                    f"{tuple(cfg.data.patch_size)}: it is padded by reflection. Lower the patch "
                    "size in the 'Data and pretext' dock to train on real pixels only."
                )
        result_dir, name = self.result_dir.text().strip(), self.run_name.text().strip()
        if not result_dir:
            raise DataError("no result folder: choose where checkpoints and charts go.")
        same_run = self._layout is not None and Path(path).parent == self._layout.checkpoints_dir
        if not (mode == 1 and same_run):
            self._layout = ResultsLayout(result_dir, name, next_run_id(result_dir, name))
        self.state.result_dir, self.state.run_name = result_dir, name
        return {
            "cfg": cfg,
            "images": images,
            "layout": self._layout,
            "resume": path if mode == 1 else None,
            "preview": self._preview_spec(images, cfg),
        }

    def _images(self) -> list[Image]:
        state = self.state
        if state.folder:
            from napari_ssl.data.folders import load_folder, resolve_dataset

            self._sources = []
            return load_folder(resolve_dataset(state.folder, "train"), state.ndim)
        layers = [self.viewer.layers[n] for n in state.layers if n in self.viewer.layers]
        if not layers:
            raise DataError(
                "no image to train on: select image layers (or a dataset folder) in the "
                "'Data and pretext' dock."
            )
        self._sources = layers
        return [_layers.to_image(layer, state.ndim, state.channel_axis) for layer in layers]

    def _config(self) -> Config:
        cfg = self.state.cfg
        arch = self.architecture.currentText()
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, val_fraction=float(self.val_fraction.value())),
            model=dataclasses.replace(
                cfg.model,
                architecture=arch,
                vit_preset=self.preset.currentText() if arch == "mae" else cfg.model.vit_preset,
            ),
            train=dataclasses.replace(
                cfg.train,
                epochs=self.epochs.value(),
                batch_size=self.batch.value(),
                lr=float(self.lr.value()),
                augment=self.augment.isChecked(),
                mixed_precision=self.precision.currentText(),
            ),
            system=dataclasses.replace(cfg.system, device=self.device.currentData() or "auto"),
        )

    def _preview_spec(self, images: list[Image], cfg: Config) -> Any:
        if not self._sources:
            return None
        from napari_ssl.engine.trainer import PreviewSpec

        shape = images[0].spatial_shape
        size = [min(s, 2 * p) for s, p in zip(shape, cfg.data.patch_size, strict=True)]
        self._region = tuple(
            slice((s - n) // 2, (s - n) // 2 + n) for s, n in zip(shape, size, strict=True)
        )
        return PreviewSpec(0, self._region, PREVIEW_EVERY_S)

    # ---- events from the worker -----------------------------------------------------------
    def _on_event(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}", None)
        if handler is not None:
            handler(event)

    def _on_started(self, e: ev.Started) -> None:
        self._plan = (e.epochs, e.steps_per_epoch, e.start_epoch)
        self.progress.setRange(0, e.epochs * e.steps_per_epoch)
        self.progress.setValue(e.start_epoch * e.steps_per_epoch)
        self.progress.setFormat(f"epoch {e.start_epoch + 1}/{e.epochs}")
        self.status.setText(
            f"{e.model} ({e.parameters:,} parameters) on {e.device}, {e.precision}; "
            f"{e.train_patches} patches per epoch. Results: {self._layout.root}"
        )
        if e.notes:
            show_info("\n".join(e.notes))

    def _on_step(self, e: ev.Step) -> None:
        epochs, steps, _ = self._plan
        self.plot.add_step(e.step / steps, e.loss)
        self.progress.setValue(min(e.step, epochs * steps))
        in_epoch = e.step - (e.epoch - 1) * steps
        paused = " (paused)" if self.session.paused else ""
        self.progress.setFormat(
            f"epoch {e.epoch}/{epochs} · step {in_epoch}/{steps} · "
            f"ETA {format_eta(e.eta_s)}{paused}"
        )

    def _on_epoch(self, e: ev.Epoch) -> None:
        psnr = e.metrics.get("val_psnr", e.metrics.get("psnr"))
        self.plot.add_epoch(e.epoch, e.val_loss, psnr)
        extra = f", val PSNR {psnr:.2f} dB" if psnr is not None else ""
        self.status.setText(
            f"epoch {e.epoch}: train loss {e.train_loss:.4g}, val loss {e.val_loss:.4g}{extra}"
            f" ({e.seconds:.1f} s, {e.patches_per_s:.0f} patches/s)"
        )

    def _on_preview(self, e: ev.Preview) -> None:
        if e.source >= len(self._sources) or self._sources[e.source] not in self.viewer.layers:
            return
        source = self._sources[e.source]
        axis = self.state.channel_axis
        data = _layers.to_layer_layout(e.image, axis)
        offset = [s.start for s in self._region]
        if axis is not None and not source.rgb:
            offset.insert(axis % data.ndim, 0)
        name = f"{source.name} [live reconstruction]"
        new = name not in self.viewer.layers
        layer = _layers.upsert_image(self.viewer, name, data, source, offset=tuple(offset))
        if new and not source.rgb:
            layer.contrast_limits = source.contrast_limits

    def _on_checkpointsaved(self, e: ev.CheckpointSaved) -> None:
        if e.kind == "best" or not self.state.checkpoint.startswith(str(self._layout.root)):
            self.state.checkpoint = e.path

    def _on_finished(self, e: ev.Finished) -> None:
        self.state.checkpoint = e.best_checkpoint or e.last_checkpoint
        early = " (early stop: validation loss stopped improving)" if e.early_stopped else ""
        self.progress.setFormat(f"finished: {e.epochs_run} epochs{early}")
        show_info(
            f"Training finished{early} in {format_eta(e.seconds)}: best checkpoint "
            f"{self.state.checkpoint}"
        )

    def _on_stopped(self, e: ev.Stopped) -> None:
        self.checkpoint.setText(e.last_checkpoint)
        self.progress.setFormat(f"stopped at epoch {e.epoch}, step {e.step}")
        show_info(
            f"Training stopped at epoch {e.epoch}. To continue it, choose 'Start as: continue' "
            f"with {e.last_checkpoint}"
        )

    def _on_failed(self, e: ev.Failed) -> None:
        self.progress.setFormat("failed")
        show_error(f"Training failed: {e.message}")

    def _on_done(self) -> None:
        self.state.running = False
        self._update_buttons()
