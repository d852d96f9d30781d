"""The Train dock's "Load config…": a napari-ssl or BiaPy self-supervised YAML into the docks.

The whole file is read and validated before anything changes, so a bad file changes nothing.
The config then goes to the shared state whole: the docks show what their fields can hold (the
loader names any value they cannot), and the rest (model sizes, optimizer, ...) is used at Start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_ssl.biapy_config import BIAPY_KEYS, KeyTypoWarning
from napari_ssl.config import VIT_PRESETS, Config, ConfigError, ModelConfig, load_yaml
from napari_ssl.widgets.wording import in_dock_words


def read_config(path: str) -> tuple[Config, list[str], list[str]]:
    """The validated config of ``path``, its typo'd keys ("did you mean …?") and the other notes
    of reading it (BiaPy keys not used, ...).

    Raises :class:`ConfigError` with a plain message for any file that is not a valid
    napari-ssl or BiaPy self-supervised config.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cfg = load_yaml(path, train=True).validate()  # the docks always train
        except ConfigError:
            raise
        except (ValueError, OSError) as err:  # unreadable (not text, no permission)
            raise ConfigError(
                f"{path} is not a napari-ssl or BiaPy self-supervised config "
                f"({type(err).__name__}: {err})"
            ) from err
    typos = [str(w.message) for w in caught if issubclass(w.category, KeyTypoWarning)]
    return cfg, typos, [str(w.message) for w in caught if str(w.message) not in typos]


def train_folder(cfg: Config, yaml_path: str) -> Path | None:
    """The config's training folder if it exists (a relative one is read from the YAML's folder)."""
    if not cfg.data.train_path.strip():
        return None
    folder = _beside(yaml_path, cfg.data.train_path)
    return folder if folder.is_dir() else None


def _beside(yaml_path: str, value: str) -> Path:
    """A config's path, a relative one read from the YAML's folder."""
    return (Path(yaml_path).parent / Path(value).expanduser()).resolve()


def differences(wanted: Any, used: Any, key: str = "") -> list[str]:
    """``'key: wanted → used'`` for every value of two configs that differs (recursively)."""
    if dataclasses.is_dataclass(wanted):
        return [
            line
            for f in dataclasses.fields(wanted)
            for line in differences(
                getattr(wanted, f.name), getattr(used, f.name), f"{key}.{f.name}".lstrip(".")
            )
        ]
    if isinstance(wanted, float) and isinstance(used, float) and math.isclose(wanted, used):
        return []
    named = f"{key} (BiaPy {BIAPY_KEYS[key]})" if key in BIAPY_KEYS else key  # as the engine
    return [] if wanted == used else [in_dock_words(f"{named}: {wanted!r} → {used!r}")]


class ConfigFile:
    """Mixin of :class:`~napari_ssl.widgets.train_dock.TrainDock`: its fields and the shared
    config, both ways (:meth:`_config`, kept in the state as they change), and loading a config
    file.

    Uses the dock's ``state`` and its fields (``architecture``, ``preset``, ``epochs``,
    ``batch``, ``lr``, ``augment``, ``precision``, ``device``, ``start_mode``, ``checkpoint``).
    The validation images and the normalisation follow the shared config by themselves.
    """

    state: Any
    architecture: Any
    preset: Any
    epochs: Any
    batch: Any
    lr: Any
    augment: Any
    precision: Any
    device: Any
    start_mode: Any
    checkpoint: Any
    status: Any
    _showing = False  # the fields are being set from the state, not by the user
    _devices_listed = False  # the device field lists this machine's devices

    def _browse_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Config", "", "YAML config (*.yaml *.yml)")
        if path:
            self.load_config(path)

    def load_config(self, path: str) -> None:
        """Read a YAML config into the shared state and the docks; a bad file changes nothing."""
        try:
            cfg, typos, notes = read_config(path)
        except ConfigError as err:
            show_error(f"Cannot load the config: {err}")
            return
        cfg.data.channels = None  # PATCH_SIZE's last entry: in the docks, the layers decide
        source = self._data_source(cfg, path, notes)
        before, shown = (self.state.cfg, self.state.folder, self.state.ndim), self._config()
        try:
            self._set_state(cfg, cfg.data.train_path, cfg.data.ndim)
            self._show_cfg(cfg)
        except Exception as err:  # a value no field can take (also raised in the Data dock)
            self._set_state(*before)
            self._show_cfg(shown)
            show_error(f"Cannot load the config: {path}: {type(err).__name__}: {err}")
            return
        unshown = differences(cfg, self._config())
        if unshown:
            notes.append("The docks' fields cannot hold these values: " + "; ".join(unshown))
        message = "\n".join([*typos, f"Loaded {Path(path).name}. {source}", *notes])
        (show_warning if typos or notes else show_info)(message)  # typos: the line shown first
        self.status.setText(message)  # a notification folds all but its first line

    def _set_state(self, cfg: Config, folder: str, ndim: int) -> None:
        self.state.folder, self.state.ndim = folder, ndim
        self.state.cfg = cfg  # the Data dock shows its part and takes it back as it can

    def _data_source(self, cfg: Config, path: str, notes: list[str]) -> str:
        """Train on the config's folder if it exists, else keep the current data (noted)."""
        if cfg.data.val_path.strip():  # relative to the YAML, as the train folder
            val = _beside(path, cfg.data.val_path)
            cfg.data.val_path = str(val)
            if not val.is_dir():
                notes.append(f"The config's validation folder {val} does not exist.")
        if cfg.test.enable:  # kept for the exported config (relative to the YAML as well)
            if cfg.data.test_path.strip():
                cfg.data.test_path = str(_beside(path, cfg.data.test_path))
            score = ", or score test images in the Reconstruct dock (“degrade first and score”)"
            notes.append(
                "TEST.ENABLE: the docks train only. To test, run the config with the CLI (the "
                f"Export dock shows the command){score * (cfg.pretext.task == 'crappify')}."
            )
        folder = train_folder(cfg, path)
        if folder is not None:
            cfg.data.train_path = str(folder)
            return f"Training data: the folder {folder}."
        named, cfg.data.train_path = cfg.data.train_path.strip(), self.state.folder
        current = f"folder {self.state.folder}" if self.state.folder else "selected layers"
        if cfg.data.ndim != self.state.ndim and (self.state.folder or self.state.layers):
            notes.append(
                f"The config is {cfg.data.ndim}D but the {current} "
                f"{'was' if self.state.folder else 'were'} read as {self.state.ndim}D: check "
                "'Dimensions' in the Data and pretext dock."
            )
        if named:
            notes.append(
                f"The config's train folder '{named}' does not exist: training keeps the {current}."
            )
            return ""
        return f"The config names no train folder: training keeps the {current}."

    def _show_cfg(self, cfg: Config) -> None:
        """Show the training part of ``cfg`` in this dock's fields."""
        with self._setting_fields():
            self.architecture.setCurrentText(cfg.model.architecture)
            self._show_preset(cfg)
            self.epochs.setValue(cfg.train.epochs)
            self.batch.setValue(cfg.train.batch_size)
            self.lr.setValue(cfg.train.lr)
            self.augment.setChecked(cfg.train.augment)
            self.precision.setCurrentText(cfg.train.mixed_precision)
            device = self.device.findData(cfg.system.device)
            if device >= 0:
                self.device.setCurrentIndex(device)
            fine_tune = cfg.model.load_checkpoint
            self.start_mode.setCurrentIndex(2 if fine_tune else 0)
            self.checkpoint.setText(cfg.model.checkpoint_file if fine_tune else "")

    @contextlib.contextmanager
    def _setting_fields(self) -> Iterator[None]:
        """Set fields from the state (or refill a list): kept in the state once, at the end."""
        outer, self._showing = self._showing, True
        try:
            yield
        finally:
            self._showing = outer
        self._keep_fields()

    def _keep_fields(self) -> None:
        """The training fields into the shared config (Start uses them; a dock opened again
        shows them)."""
        if self._showing:
            return
        cfg = self._config()
        self.state.update_cfg(model=cfg.model, train=cfg.train, system=cfg.system)

    def _config(self) -> Config:
        cfg = self.state.cfg
        arch = self.architecture.currentText() or cfg.model.architecture  # empty: being refilled
        return dataclasses.replace(
            cfg,
            model=self._fine_tune(
                dataclasses.replace(
                    cfg.model,
                    architecture=arch,
                    vit_preset=self.preset.currentData() if arch == "mae" else cfg.model.vit_preset,
                )
            ),
            train=dataclasses.replace(
                cfg.train,
                epochs=self.epochs.value(),
                batch_size=self.batch.value(),
                lr=float(self.lr.value()),
                augment=self.augment.isChecked(),
                mixed_precision=self.precision.currentText(),
            ),
            system=dataclasses.replace(cfg.system, device=self._device(cfg.system.device)),
        )

    def _fine_tune(self, model: ModelConfig) -> ModelConfig:
        """The start mode and checkpoint fields: fine-tuning loads the checkpoint's weights
        (continuing is not a setting of the config: the checkpoint is given at Start)."""
        fine_tune, path = self.start_mode.currentIndex() == 2, self.checkpoint.text().strip()
        return dataclasses.replace(
            model, load_checkpoint=fine_tune, checkpoint_file=path if fine_tune else ""
        )

    def _device(self, kept: str) -> str:
        """The device field's choice; ``kept`` until the devices are listed (torch loading)."""
        return (self.device.currentData() or "auto") if self._devices_listed else kept

    def _show_preset(self, cfg: Config) -> None:
        """Select the config's ViT preset, or an entry with its own sizes (no preset); a CNN
        config that says nothing of the ViT (its default sizes) leaves the box as it is."""
        m, default = cfg.model, ModelConfig()
        sizes = (m.vit_embed_dim, m.vit_num_layers, m.vit_num_heads)
        unsaid = sizes == (default.vit_embed_dim, default.vit_num_layers, default.vit_num_heads)
        if m.architecture != "mae" and m.vit_preset is None and unsaid:
            return
        while self.preset.count() > len(VIT_PRESETS):
            self.preset.removeItem(self.preset.count() - 1)
        if m.vit_preset in VIT_PRESETS:
            self.preset.setCurrentIndex(self.preset.findData(m.vit_preset))
            return
        index = self.preset.count()
        self.preset.addItem(f"from config {(m.vit_embed_dim, m.vit_num_layers, m.vit_num_heads)}")
        tip = "The loaded config's own ViT: (embedding size, layers, heads)"
        self.preset.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        self.preset.setCurrentIndex(index)
