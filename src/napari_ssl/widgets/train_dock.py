"""Train dock: model and training settings, Start / Pause / Stop, progress, live loss plot.

The engine runs in a worker (:mod:`napari_ssl.widgets.worker`); this dock only relays its events
to the plot, the progress bar, the shared state and a ``<layer> [live reconstruction]`` layer.
Start sets ``state.running`` before anything else, so a second press is refused even within the
same event-loop turn. Removing the dock or closing the viewer stops the training cleanly.
"Load config…" reads a napari-ssl or BiaPy YAML into the shared state: the docks show what they
can, and the rest (model sizes, optimizer, ...) is used at Start as loaded.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
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
from napari_ssl.job import dataset_test_images
from napari_ssl.results import DEFAULT_RESULT_DIR
from napari_ssl.widgets import _layers
from napari_ssl.widgets._links import link, when_removed
from napari_ssl.widgets._scroll import scrolling
from napari_ssl.widgets._tabs import tab_with_siblings
from napari_ssl.widgets.coalesce import Coalescer, set_progress
from napari_ssl.widgets.config_file import ConfigFile
from napari_ssl.widgets.loss_plot import LossPlot, theme_colors
from napari_ssl.widgets.normalization_box import commit_inputs
from napari_ssl.widgets.path_field import path_row
from napari_ssl.widgets.schedule_box import ScheduleBox
from napari_ssl.widgets.sci_spinbox import SciSpinBox
from napari_ssl.widgets.state import SslState, TrainingInputs, state_for, unwrap
from napari_ssl.widgets.train_events import TrainEvents
from napari_ssl.widgets.train_runs import RunChoice, check_start_checkpoint, closed_run, run_ended
from napari_ssl.widgets.validation_box import ValidationBox
from napari_ssl.widgets.wording import explain, in_dock_words
from napari_ssl.widgets.worker import TrainingSession, start_device_probe

MODELS = {"crappify": ("unet", "resunet"), "masking": ("mae",)}
START_MODES = ("new training", "continue (resume) from checkpoint", "fine-tune from checkpoint")
PREVIEW_EVERY_S = 2.0  # the shortest; the engine waits longer when previews are slow
PROBE_DELAY_MS = 200  # the device probe (torch import) starts after the dock is painted


def _shutdown(session: TrainingSession, state: SslState, wait: bool) -> None:
    """Stop the training (the dock removed, or ``wait``: the viewer closing). Without waiting,
    another Start is refused until the engine has saved its last checkpoint and ended (the
    session's ``on_ended``), and the dock opened again offers to continue the run."""
    if session.running and not wait:
        state.closed_run = state.run_id
        show_info(
            f"Training stops: the Train dock was closed. Its last checkpoint will be saved to "
            f"{closed_run(state).last_checkpoint}: open the Train dock again to continue the run."
        )
    session.shutdown(wait)
    if wait:
        state.running = False


class TrainDock(TrainEvents, RunChoice, ConfigFile, QWidget):
    """Configure and run a training; watch it live."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.state = state_for(self.viewer)
        ended = partial(run_ended, self.state)  # outlives the dock
        self.session = TrainingSession(self._on_event, self._on_done, ended)
        self._plan = (1, 1, 0)  # epochs, steps per epoch, start epoch
        self._started = False  # the engine has started the current run
        self._testing = False  # ... and scores the test images after it
        self._notes: list[str] = []  # the current run's notes, shown under its status
        self._sources: list[Any] = []  # layers trained on (for the live reconstruction)
        self._source_axes: list[int | None] = []  # their channel axes
        self._region: tuple[slice, ...] = ()
        self._layout: Any = None  # ResultsLayout of the latest run
        self._devices_probed = False
        self._build()
        explain(self)
        self._showing = True  # the new fields' defaults are not kept: the state's are shown
        self._sync_task()
        self._showing = False
        self._show_cfg(self.state.cfg)  # a dock opened again: the settings it had
        if self.state.result_dir:  # and where the viewer's runs went
            self.result_dir.setText(self.state.result_dir)
            self.run_name.setText(self.state.run_name)
        if self.state.closed_run:
            self._offer_to_continue()
        for field in (self.architecture, self.preset, self.device, self.precision):
            field.currentIndexChanged.connect(self._keep_fields)
        for spin in (self.epochs, self.batch, self.lr):
            spin.valueChanged.connect(self._keep_fields)
        self.augment.toggled.connect(self._keep_fields)
        self.start_mode.currentIndexChanged.connect(self._keep_fields)
        self.start_mode.currentIndexChanged.connect(self._continue_this_run)
        self.checkpoint.editingFinished.connect(self._keep_fields)
        self.updates = Coalescer(self, self._apply)  # progress, status, preview: once per tick
        self.updates.ticked.connect(self.plot.tick)  # the plot's image in the same repaint
        events = self.state.events  # connected until the dock is closed
        link(
            self,
            (events.cfg, self._sync_task),
            (events.running, self._update_buttons),
            (events.running, self._sync_task),  # a run ended: the task's models
            (self.viewer.events.theme, self._follow_theme),
        )
        when_removed(self, partial(_shutdown, self.session, self.state))
        self._update_buttons()

    # ---- UI -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(scrolling(self))
        tab_with_siblings(self)  # opened from the Plugins menu: a tab, not a stack
        self.load_button = QPushButton("Load config…")
        self.load_button.setToolTip(
            "Read a napari-ssl or BiaPy self-supervised YAML: every setting, also those the docks "
            "do not show (model sizes, optimizer, ...)"
        )
        self.load_button.clicked.connect(self._browse_config)
        layout.addWidget(self.load_button)
        model = QGroupBox("Model and training")
        form = QFormLayout(model)
        self.architecture = QComboBox()
        self.preset = QComboBox()
        for name in VIT_PRESETS:
            self.preset.addItem(name, name)
        self.epochs = QSpinBox(minimum=1, maximum=100000, value=100)
        self.batch = QSpinBox(minimum=1, maximum=4096, value=6)
        self.lr = SciSpinBox(
            1e-9, 1.0, 1e-4, toolTip="Typed as 1e-4 or 0.0001; the arrows halve or double it"
        )
        self.schedule = ScheduleBox(self.state, self.lr, self.epochs)
        self.validation = ValidationBox(self.state)
        self.augment = QCheckBox("flips and 90° rotations")
        self.augment.setChecked(True)
        self.device = QComboBox()
        self.device.addItem("auto", "auto")
        self.precision = QComboBox()
        self.precision.addItems(["auto", "bf16", "fp16", "off"])
        self.precision.setToolTip(
            "auto: bf16 on a CUDA GPU, and for reconstruction on a CPU with AMX; "
            "bf16: also when training on a CPU; fp16: GPUs only; off: fp32 everywhere"
        )
        for label, widget in (
            ("Model", self.architecture), ("ViT preset", self.preset), ("Epochs", self.epochs),
            ("Batch size", self.batch), ("Learning rate", self.lr),
            ("Validation", self.validation), ("Augmentation", self.augment),
            ("Device", self.device), ("Mixed precision", self.precision),
        ):  # fmt: skip
            form.addRow(label, widget)
        form.insertRow(form.getWidgetPosition(self.lr)[0] + 1, self.schedule)  # across the form
        layout.addWidget(model)
        out = QGroupBox("Results and checkpoints")
        out_form = QFormLayout(out)
        # in a narrow dock, a field too wide for its row ("Start as") goes under its label
        out_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.result_dir = QLineEdit(str(DEFAULT_RESULT_DIR))
        out_form.addRow("Result folder", path_row(self.result_dir, "Result folder", folder=True))
        self.run_name = QLineEdit("ssl")
        out_form.addRow("Run name", self.run_name)
        self.start_mode = QComboBox()
        self.start_mode.addItems(list(START_MODES))
        self.start_mode.currentIndexChanged.connect(self._update_buttons)
        out_form.addRow("Start as", self.start_mode)
        self.checkpoint = QLineEdit(placeholderText="checkpoint .pth to continue from")
        out_form.addRow("Checkpoint", path_row(self.checkpoint, "Checkpoint", folder=False))
        layout.addWidget(out)
        self._settings = (model, out)  # fixed while a run trains (it took them at Start)
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
        self.progress.setValue(0)  # Qt draws no text before a value is set
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.plot = LossPlot(self, theme_colors(self.viewer))
        layout.addWidget(self.plot, stretch=1)

    def _follow_theme(self, event: Any = None) -> None:
        self.plot.set_colors(theme_colors(self.viewer))
        self.plot.tick()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._devices_probed:  # torch loads in a thread, once the dock is painted
            self._devices_probed = True
            QTimer.singleShot(PROBE_DELAY_MS, self._probe_devices)  # dies with the dock

    def _probe_devices(self) -> None:
        start_device_probe(self, self._set_devices)

    def _set_devices(self, choices: list[tuple[str, str]]) -> None:
        with self._setting_fields():
            self.device.clear()
            for label, value in choices:
                self.device.addItem(label, value)
            self.device.setCurrentIndex(max(0, self.device.findData(self.state.cfg.system.device)))
            self._devices_listed = True

    def _sync_task(self) -> None:
        """The models of the Data dock's task (after the run, if one trains another's)."""
        if self.state.running and self.architecture.count():
            return
        names = MODELS[self.state.cfg.pretext.task]
        if tuple(self.architecture.itemText(i) for i in range(self.architecture.count())) != names:
            with self._setting_fields():
                self.architecture.clear()
                self.architecture.addItems(list(names))
                if self.state.cfg.model.architecture in names:
                    self.architecture.setCurrentText(self.state.cfg.model.architecture)
                self._show_preset(self.state.cfg)  # the ViT the viewer's config has
        self.preset.setEnabled(names == ("mae",))

    def _update_buttons(self) -> None:
        running = self.state.running
        self.start_button.setEnabled(not running)
        self.load_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.checkpoint.setEnabled(self.start_mode.currentIndex() > 0 and not running)
        for box in self._settings:
            box.setEnabled(not running)
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
            set_progress(self.progress, 0, "not started", maximum=1)  # not an earlier run's end
            message = in_dock_words(str(err))
            self.status.setText(f"not started: {message}")  # not an earlier run's status
            show_error(f"Cannot start training: {message}")
            return
        self.plot.clear()
        set_progress(self.progress, 0, "starting…")
        self.status.setText(f"results: {self._layout.root}")
        self._started = self._testing = False  # until Started: a failure is a refusal to start
        self.session.start(**job)

    def toggle_pause(self) -> None:
        if self.session.paused:
            self.session.resume()
            self.pause_button.setText("Pause")
            self.progress.setFormat(self.progress.format().replace(" (paused)", ""))
        else:
            self.session.pause()
            self.pause_button.setText("Resume")
            self.updates.flush()  # the step reached now, not the one shown up to 2 s ago
            if not self.progress.format().endswith(" (paused)"):
                self.progress.setFormat(self.progress.format() + " (paused)")

    def stop(self) -> None:
        self.session.stop()
        self.stop_button.setEnabled(False)
        self.updates.flush()
        self.progress.setFormat("stopping at the next step…")

    def _prepare(self) -> dict[str, Any]:
        self.validation.commit()  # a folder typed but not confirmed yet
        self.schedule.commit()  # a value typed without Enter
        errors = commit_inputs(self.state)  # the Data dock's normalisation fields
        if errors:
            raise ConfigError("\n".join(errors))
        images = self._images()
        cfg = self._config()
        test = dataset_test_images(self.state.folder, self.state.ndim, images[0].channels)
        if test:  # scored after training (read now: refused before it); exports test it too
            cfg.data.test_path, cfg.test.enable = str(test[0]), True
        self.schedule.check(cfg)  # named "Learning-rate schedule" and shown under it
        mode, path = self.start_mode.currentIndex(), self.checkpoint.text().strip()
        check_start_checkpoint(mode, path)
        cfg.validate()
        self.validation.check()  # as the engine lists the folder (it reads the images at Start)
        self._layout = self._run_for_start(mode, path)
        run = self._layout  # a continued run keeps its folder whatever the fields say now
        self.state.result_dir, self.state.run_name = str(run.result_dir), run.name
        self.state.run_id, self.state.closed_run = run.run_id, ""
        self.state.trained_on = TrainingInputs.of(
            str(self._layout.checkpoints_dir.resolve()),
            self._sources,
            self.state.ndim,
            self._source_axes,
        )
        return {
            "cfg": cfg,
            "images": images,
            "layout": self._layout,
            "resume": path if mode == 1 else None,
            "preview": self._preview_spec(images, cfg),
            "test": test and test[1],
        }

    def _images(self) -> list[Image]:
        state = self.state
        if state.folder:
            from napari_ssl.data.folders import first_image, load_folder, resolve_dataset, split_key

            self._sources, self._source_axes = [], []
            folder, key = resolve_dataset(state.folder, "train"), split_key("train")
            shape, axis = first_image(folder, key)[1], state.channel_axis
            channels = None if axis is None or axis >= len(shape) else shape[axis]
            return load_folder(folder, state.ndim, channels, key)
        layers = [self.viewer.layers[n] for n in state.layers if n in self.viewer.layers]
        if not layers:
            raise DataError(
                "no image to train on: select image layers (or a dataset folder) in the "
                "'Data and pretext' dock."
            )
        axes = _layers.channel_axes(layers, state.ndim, state.channel_axis)  # each its layout
        self._sources, self._source_axes = layers, axes
        return [_layers.to_image(lyr, state.ndim, a) for lyr, a in zip(layers, axes, strict=True)]

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

    def _on_done(self) -> None:
        self.updates.flush()
        self.plot.flush()  # the whole run's curves now, not after the render throttle
        self.state.running = False
        self._update_buttons()
        self._sync_task()  # the Data dock's task may have changed meanwhile
