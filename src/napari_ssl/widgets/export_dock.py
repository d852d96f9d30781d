"""Export dock: write ``.pth`` (BiaPy layout), ``.safetensors`` and the YAML config.

The written paths and the exact CLI command that reproduces the run headless are shown in
read-only fields (select and copy, or use the Copy buttons). A run trained on napari layers has no
data folder, so the layers that run trained on (recorded at its Start) can be saved next to the
export as ``<name>_data/train/x/*.tif`` and the YAML points there: the command then runs as shown.
An earlier export of the same name is only written over when the user says so.
"""

from __future__ import annotations

import shlex
import weakref
from pathlib import Path
from typing import Any

from napari.qt.threading import FunctionWorker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_ssl.data.images import DataError, Image
from napari_ssl.results import check_plain_name, next_run_id
from napari_ssl.widgets import _layers
from napari_ssl.widgets._links import link, when_removed
from napari_ssl.widgets._scroll import scrolling
from napari_ssl.widgets._tabs import tab_with_siblings
from napari_ssl.widgets.gui_collection import holding
from napari_ssl.widgets.output_folder import output_folder
from napari_ssl.widgets.path_field import checkpoint_field, field_row, path_row
from napari_ssl.widgets.state import state_for, unwrap
from napari_ssl.widgets.wording import explain
from napari_ssl.widgets.worker import StoppableWorker, WorkerSession, plain_error

NO_DATA = (  # why the exported config names no training data, by cause
    "The config names no training data (the run trained on layers that were not saved): tick "
    "'save the training layers' and export again, or set DATA.TRAIN.PATH in the YAML.",
    "The config names no training data: this checkpoint was not trained in this viewer, so the "
    "layers it trained on are unknown. Set DATA.TRAIN.PATH in the YAML to its training images.",
)


def cli_command(yaml_path: str | Path, result_dir: str | Path, name: str) -> str:
    """The headless command that trains the exported config again, as a new run (the next free
    run id, so the run that made the checkpoint is not overwritten)."""
    parts = ["napari-ssl", "--config", str(yaml_path), "--result_dir", str(result_dir)]
    return shlex.join([*parts, "--name", name, "--run_id", str(next_run_id(result_dir, name))])


def export_files(out_dir: Path, name: str, with_data: bool) -> list[Path]:
    """The files and folder an export writes (the dataset folder when ``with_data``)."""
    files = [out_dir / f"{name}{suffix}" for suffix in (".pth", ".safetensors", ".yaml")]
    return [*files, data_folder(out_dir, name)] if with_data else files


def data_folder(out_dir: Path, name: str) -> Path:
    """Where an export saves the training layers: ``<name>_data/train/x``."""
    return out_dir / f"{name}_data" / "train" / "x"


def _export(
    path: str, out_dir: Path, name: str, images: list[Image]
) -> tuple[dict[str, Path], bool]:
    """Worker body: load the checkpoint, save the training images (if any; an earlier export's
    images are removed first), export. Returns the paths and whether the config has data."""
    from napari_ssl.engine.checkpoints import export_checkpoint, load_trained
    from napari_ssl.tiffs import write_image

    trained = load_trained(path)
    if images:
        folder = data_folder(out_dir, name)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.tif"):  # replacing an export: its images only, as written
            old.unlink()
        for image in images:  # as napari-ssl and BiaPy read them back: axes name the channels
            write_image(image, folder)
        trained.cfg.data.train_path = str(folder.parent.parent)
    # a run on layers has no test folder: the exported command then trains only
    trained.cfg.test.enable = bool(trained.cfg.data.test_path)
    return export_checkpoint(trained, out_dir, name), bool(trained.cfg.data.train_path)


class ExportWorker(StoppableWorker, FunctionWorker):
    """:func:`_export` in a thread; the files it writes are not cut short: ``quit`` waits."""

    def stop_work(self) -> None:
        """Nothing to stop: an export is a few file writes."""


def _text(edit: QLineEdit | QPlainTextEdit) -> str:
    return edit.toPlainText() if isinstance(edit, QPlainTextEdit) else edit.text()


class ExportDock(QWidget):
    """Export a checkpoint for fine-tuning elsewhere, with its config and CLI command."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.state = state_for(self.viewer)
        self.session = WorkerSession()
        self.paths: dict[str, Path] = {}
        self._no_data = NO_DATA[0]
        self._command: tuple[str, str, str] | None = None  # (yaml, result folder, run name)
        self._build()
        explain(self)
        link(self, (self.state.events.running, self._after_run))
        when_removed(self, self.session.shutdown)  # closed mid-export: the writes end, quietly

    def _build(self) -> None:
        layout = QVBoxLayout(scrolling(self))
        tab_with_siblings(self)  # opened from the Plugins menu: a tab, not a stack
        form = QFormLayout()
        self.checkpoint, row = checkpoint_field(self, self.state)
        form.addRow("Checkpoint", row)
        self.out_dir = QLineEdit(str(Path.home() / "napari-ssl-export"))
        form.addRow("Folder", path_row(self.out_dir, "Export folder", folder=True))
        self.name = QLineEdit("pretrained")
        form.addRow("Name", self.name)
        self.save_data = QCheckBox("save the training layers as a dataset folder")
        self.save_data.setChecked(True)
        self.save_data.setToolTip(
            "The layers the checkpoint's run trained on, as <name>_data/train/x/*.tif, so that "
            "the CLI command below finds the data"
        )
        form.addRow(self.save_data)  # across the form: a narrow dock keeps its text
        self.replace = QCheckBox("replace an earlier export of this name")
        self.replace.setToolTip("Without it, Export refuses to write over existing files")
        form.addRow(self.replace)
        layout.addLayout(form)
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip(
            "Write <name>.pth (BiaPy's layout), <name>.safetensors and <name>.yaml to the folder"
        )
        self.export_button.clicked.connect(self.export)
        layout.addWidget(self.export_button)
        out = QFormLayout()
        self.fields: dict[str, QLineEdit | QPlainTextEdit] = {}
        for key, label in (("pth", ".pth"), ("safetensors", ".safetensors"), ("yaml", "config"),
                           ("command", "CLI")):  # fmt: skip
            edit = QLineEdit(readOnly=True) if key != "command" else QPlainTextEdit(readOnly=True)
            command = "the command that trains this config headless, after Export"
            edit.setPlaceholderText(command if key == "command" else "written by Export")
            self.fields[key] = edit
            copy = f"Copy the {'command' if key == 'command' else 'path'} to the clipboard"
            out.addRow(label, field_row(edit, "Copy", lambda e=edit: self._copy(e), 50, copy))
        self.fields["command"].setMaximumHeight(70)
        layout.addLayout(out)
        layout.addStretch(1)

    def _copy(self, edit: QLineEdit | QPlainTextEdit) -> None:
        if edit is self.fields["command"]:
            self._show_command()  # the run id free now, not at export
        QApplication.clipboard().setText(_text(edit))

    def _after_run(self, running: bool) -> None:
        """A run that ended took the run id shown (one starting may not have made its folder)."""
        if not running:
            self._show_command()

    def _show_command(self) -> None:
        """The CLI command of the latest export, with the next free run id (a run since the
        export took the one shown then)."""
        if self._command is not None:
            self.fields["command"].setPlainText(cli_command(*self._command))

    def _training_images(self, path: str) -> tuple[list[Image], str]:
        """The layers the checkpoint's run trained on, when this viewer trained it on layers, and
        what to say if the exported config then names no training data."""
        run = self.state.trained_on
        mine = run is not None and str(Path(path).resolve().parent) == run.checkpoints_dir
        no_data = NO_DATA[0] if mine else NO_DATA[1]
        if not self.save_data.isChecked() or not mine or not run.layers:
            return [], no_data
        layers = [self._layer(ref, name) for ref, name in zip(run.layers, run.names, strict=True)]
        missing = [name for name, layer in zip(run.names, layers, strict=True) if layer is None]
        if missing:
            raise DataError(
                f"the run trained on {', '.join(map(repr, missing))}, no longer in the viewer: "
                "add the layer(s) back, or untick 'save the training layers'."
            )
        return [_layers.to_image(layer, run.ndim, axis)
                for layer, axis in zip(layers, run.channel_axes, strict=True)], no_data  # fmt: skip

    def _layer(self, ref: weakref.ref, name: str) -> Any:
        """A layer a run trained on, renamed or not; once removed, one added back by its name."""
        layer = ref()
        if layer is not None and layer in self.viewer.layers:
            return layer
        return next((lyr for lyr in self.viewer.layers if lyr.name == name), None)

    @property
    def worker(self) -> ExportWorker | None:
        """The running export's worker (None when none runs)."""
        return self.session.worker

    def export(self) -> None:
        if self.worker is not None:
            return
        path, out_dir, name = (
            self.checkpoint.text().strip(), self.out_dir.text().strip(), self.name.text().strip()
        )  # fmt: skip
        try:
            if not path or not Path(path).is_file():
                raise DataError(f"checkpoint '{path}' not found: train first or pick a .pth file.")
            if not name:
                raise DataError("give a name.")
            check_plain_name(name, "Name")  # before anything is written
            images, self._no_data = self._training_images(path)
            folder = output_folder(out_dir, "export folder")
            self._check_earlier(folder, name, bool(images))
        except (DataError, ValueError) as err:
            show_error(f"Cannot export: {err}")
            return
        from napari.qt.threading import create_worker

        with holding(_export) as export:
            worker = create_worker(
                export, path, folder, name, images,
                _worker_class=ExportWorker, _start_thread=False, _ignore_errors=True,
            )  # fmt: skip
            self.export_button.setEnabled(False)
            self.session.launch(
                worker,
                (worker.returned, self._on_exported),
                (worker.errored, self._on_error),
                (worker.finished, self._on_finished),
            )

    def _check_earlier(self, folder: Path, name: str, with_data: bool) -> None:
        """Refuse to write over an earlier export unless "replace" is ticked."""
        found = [p for p in export_files(folder, name, with_data) if p.exists()]
        if found and not self.replace.isChecked():
            names = ", ".join(str(p.relative_to(folder)) for p in found)
            raise DataError(
                f"{names} already exist(s) in {folder}: choose another name or folder, or tick "
                "'replace an earlier export of this name'."
            )

    def _on_error(self, err: Exception) -> None:
        show_error(f"Export failed: {plain_error(err)}")

    def _on_finished(self) -> None:
        self.export_button.setEnabled(True)

    def _on_exported(self, result: tuple[dict[str, Path], bool]) -> None:
        paths, with_data = result
        self.paths = paths
        for key, value in paths.items():
            if key in self.fields:
                self.fields[key].setText(str(value))
        result_dir = self.state.result_dir or str(Path(paths["yaml"]).parent / "runs")
        run_name = self.state.run_name or self.name.text()
        self._command = (str(paths["yaml"]), result_dir, run_name) if with_data else None
        self.fields["command"].setPlainText(self._no_data)
        self._show_command()
        show_info(f"Exported to {Path(paths['pth']).parent}")
