"""Reconstruct dock: run a checkpoint over whole image layers and add the results as layers.

The checkpoint is the one just trained (from the shared state) or any file. Work runs in a
worker with a progress bar and Cancel; outputs come back in each source's layout, scale and
translate. Crappify adds ``<layer> [reconstruction]`` (and, when "degrade first and score" is on,
``<layer> [degraded]`` plus PSNR/SSIM in the dock); masking adds the four MAE views. Removing the
dock or closing the viewer cancels the work and waits for its thread
(:class:`~napari_ssl.widgets.worker.WorkerSession`): no layer is added after. Until the user picks
input layers here, the list follows the layers selected in the Data dock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_ssl.data.images import DataError
from napari_ssl.widgets import _layers
from napari_ssl.widgets._links import layer_list_changes, link, when_removed
from napari_ssl.widgets._scroll import scrolling
from napari_ssl.widgets._tabs import tab_with_siblings
from napari_ssl.widgets.coalesce import Coalescer, set_progress
from napari_ssl.widgets.gui_collection import holding
from napari_ssl.widgets.path_field import checkpoint_field
from napari_ssl.widgets.state import state_for, unwrap
from napari_ssl.widgets.wording import explain
from napari_ssl.widgets.worker import ProgressRelay, StoppableWorker, WorkerSession, plain_error

OUTPUT_NAMES = {  # in stacking order: the last one added ends on top
    "original": "[MAE original]",
    "masked": "[MAE masked]",
    "degraded": "[degraded]",
    "reconstruction": "[reconstruction]",
    "reconstruction_and_visible": "[MAE reconstruction + visible]",
}
LOADING = "loading the checkpoint, reading the image…"  # the words until the first tile is done


def output_name(layer_name: str, key: str, task: str) -> str:
    """The layer name of one output (masking's reconstruction says MAE)."""
    suffix = "[MAE reconstruction]" if (task, key) == ("masking", "reconstruction") else None
    return f"{layer_name} {suffix or OUTPUT_NAMES[key]}"


@dataclass
class Reconstructions:
    """What the worker hands back: per source layer, its outputs and channel axis."""

    task: str
    outputs: list[dict[str, np.ndarray]]
    axes: list[int | None]  # the channel axis each layer was read with (the model decides)
    scores: list[dict[str, dict[str, float]]]


def _reconstruct_all(
    path: str,
    sources: list[_layers.LayerView],
    preferred_axis: int | None,
    options: dict[str, Any],
    relay: ProgressRelay,
    cancel: threading.Event,
) -> Reconstructions | None:
    """Worker body: load the checkpoint, read each layer as its model expects (axes, channels),
    reconstruct, score when degrading. None: cancelled."""
    from napari_ssl.engine.checkpoints import load_trained
    from napari_ssl.engine.tasks import HIDDEN
    from napari_ssl.inference.metrics import image_metrics, masked_metrics
    from napari_ssl.inference.reconstruct import reconstruct
    from napari_ssl.inference.tiling import InferenceCancelled

    trained = load_trained(path)
    ndim, channels = trained.cfg.data.ndim, trained.in_channels
    axes = [view.channel_axis_for(ndim, channels, preferred_axis) for view in sources]
    images = [view.image(ndim, axis) for view, axis in zip(sources, axes, strict=True)]
    results, scores = [], []
    for image in images:
        try:
            out = reconstruct(trained, image, progress=relay, cancelled=cancel.is_set, **options)
        except InferenceCancelled:
            return None
        results.append(out)
        if cancel.is_set():
            return None
        if "degraded" in out:
            original = image.read().astype(np.float32)
            scores.append(
                {
                    "degraded": image_metrics(out["degraded"], original),
                    "reconstruction": image_metrics(out["reconstruction"], original),
                }
            )
        elif HIDDEN in out:  # masking: scored where tokens were hidden
            original, hidden = out["original"], out[HIDDEN] > 0.5
            scores.append(
                {
                    "masked": masked_metrics(out["reconstruction"], original, hidden),
                    "whole": image_metrics(out["reconstruction_and_visible"], original),
                }
            )
    return Reconstructions(trained.cfg.pretext.task, results, axes, scores)


class ReconstructionWorker(StoppableWorker, FunctionWorker):
    """:func:`_reconstruct_all` in a thread; ``quit`` cancels it before its next tile and waits."""


class ReconstructDock(QWidget):
    """Reconstruct whole images with a checkpoint."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.state = state_for(self.viewer)
        self.session = WorkerSession()
        self._sources: list[Any] = []
        self._picked = False  # the user picked input layers here: they no longer follow Data's
        self._build()
        explain(self)
        self.updates = Coalescer(self, self._apply)  # the progress bar: one repaint per tick
        when_removed(self, self.session.shutdown)  # cancelled; no layer added after
        link(  # until the dock is closed
            self,
            _layers.theme_link(self.layer_list, self.viewer),
            (self.state.events.layers, self._follow_data),
            *layer_list_changes(self.viewer, self._refresh_layers),
        )
        self._refresh_layers()

    def _build(self) -> None:
        layout = QVBoxLayout(scrolling(self))
        tab_with_siblings(self)  # opened from the Plugins menu: a tab, not a stack
        form = QFormLayout()
        self.checkpoint, row = checkpoint_field(self, self.state)
        form.addRow("Checkpoint", row)
        self.layer_list = _layers.layer_list(self.viewer)
        self.layer_list.itemSelectionChanged.connect(self._on_pick)
        form.addRow("Input layers", self.layer_list)
        self.overlap = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.75, singleStep=0.05)
        self.overlap.setValue(0.25)
        form.addRow("Tile overlap", self.overlap)
        self.degrade = QCheckBox("degrade first and score (crappify)")
        self.degrade.setToolTip(
            "Crappify the input with the training settings, restore it and report PSNR / SSIM "
            "against the original"
        )
        form.addRow("", self.degrade)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Reconstruct")
        self.cancel_button = QPushButton("Cancel")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        layout.addWidget(self.progress)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.metrics)
        layout.addStretch(1)

    def _selected_layers(self) -> list[Any]:
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.layer_list.selectedItems()]

    def _refresh_layers(self, event: Any = None) -> None:
        """List the image layers; the user's pick follows the layers themselves (kept when a
        layer is renamed), else the selection is the Data dock's."""
        chosen = {id(layer) for layer in self._selected_layers()}
        with QSignalBlocker(self.layer_list):  # not a pick of the user
            self.layer_list.clear()
            for layer in self.viewer.layers:
                if isinstance(layer, _layers.ImageLayer) and _layers.reconstructable(layer):
                    item = QListWidgetItem(_layers.describe_layer(layer))
                    item.setData(Qt.ItemDataRole.UserRole, layer)
                    self.layer_list.addItem(item)
                    item.setSelected(id(layer) in chosen)
        self._picked = self._picked and bool(self.layer_list.selectedItems())  # not all removed
        self._follow_data()

    def _follow_data(self) -> None:
        """Select the Data dock's layers, as long as the user has picked none here."""
        if not self._picked:
            with QSignalBlocker(self.layer_list):
                self.select(self.state.layers)

    def _on_pick(self) -> None:
        """The user's pick (none left: the Data dock's choice is followed from its next change)."""
        self._picked = bool(self.layer_list.selectedItems())

    def select(self, names: Sequence[str]) -> None:
        """Select layers by name in the list (as a click would)."""
        _layers.select_by_name(self.layer_list, names)

    # ---- run ------------------------------------------------------------------------------
    @property
    def worker(self) -> ReconstructionWorker | None:
        """The running reconstruction's worker (None when none runs)."""
        return self.session.worker

    def run(self) -> None:
        if self.session.running:
            return
        try:
            path, sources = self._inputs()
        except DataError as err:
            show_error(f"Cannot reconstruct: {err}")
            return
        cancel = threading.Event()
        relay = ProgressRelay()  # no parent: the worker holds it, whatever becomes of the dock
        options = {"overlap": float(self.overlap.value()), "degrade": self.degrade.isChecked()}
        set_progress(self.progress, 0, LOADING, maximum=1)
        self.metrics.setText("")
        with holding(_reconstruct_all) as reconstruct_all:
            worker = create_worker(
                reconstruct_all,
                path,
                sources,
                self.state.channel_axis,
                options,
                relay,
                cancel,
                _worker_class=ReconstructionWorker,
                _start_thread=False,
                _ignore_errors=True,
            )
            worker.stop_work = cancel.set
            self.run_button.setEnabled(False)
            self.cancel_button.setEnabled(True)
            self.session.launch(
                worker,
                (relay.progressed, self._on_progress),
                (worker.returned, self._on_result),
                (worker.errored, self._on_error),
                (worker.finished, self._on_finished),
            )

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.stop_work()  # the reconstruction stops before its next tile
        self.cancel_button.setEnabled(False)

    def _inputs(self) -> tuple[str, list[_layers.LayerView]]:
        path = self.checkpoint.text().strip()
        if not path or not Path(path).is_file():
            raise DataError(
                f"checkpoint '{path}' not found: train a model first or pick a .pth file."
            )
        self._sources = self._selected_layers()
        if not self._sources:
            raise DataError("no input layer selected: pick one or more image layers in the list.")
        return path, [_layers.LayerView.of(layer) for layer in self._sources]

    def _on_progress(self, done: int, total: int) -> None:
        self.updates.put("progress", (done, total))

    def _apply(self, pending: dict[str, Any]) -> None:
        done, total = pending["progress"]
        set_progress(self.progress, done, "%p%", maximum=total)

    def _on_error(self, err: Exception) -> None:
        show_error(f"Reconstruction failed: {plain_error(err)}")
        self._ended("failed")

    def _ended(self, how: str) -> None:
        """The bar says how a run ended without layers, where it stopped (as the Train dock's
        "stopped …")."""
        self.updates.flush()  # the last tiles done, then the words
        done = "" if self.progress.format() == LOADING else " at %p%"
        set_progress(self.progress, fmt=f"{how}{done}: no layer added")

    def _on_finished(self) -> None:
        self.updates.flush()
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_result(self, result: Reconstructions | None) -> None:
        if not self.session.running:  # shut down (dock removed) as the result came: drop it
            return
        if result is None:
            show_info("Reconstruction cancelled; no layer was added.")
            self._ended("cancelled")
            return
        task, outputs, scores = result.task, result.outputs, result.scores
        for source, out, axis in zip(self._sources, outputs, result.axes, strict=True):
            for key in OUTPUT_NAMES:  # others (masking's token mask) are seen in [MAE masked]
                if key not in out:
                    continue
                data = _layers.to_layer_layout(out[key], axis)
                _layers.upsert_image(self.viewer, output_name(source.name, key, task), data, source)
        self.updates.flush()
        set_progress(self.progress, self.progress.maximum(), "%p%")
        lines = [_score_line(src.name, s) for src, s in zip(self._sources, scores, strict=False)]
        if self.degrade.isChecked() and task != "crappify":
            lines.append(f"Not scored: “degrade first and score” is for crappify, not {task}.")
        self.metrics.setText("\n".join(lines))


def _score_line(name: str, scores: dict[str, dict[str, float]]) -> str:
    """One layer's scores, as the dock shows them."""
    if "masked" in scores:  # the second PSNR is the one training validates with
        m, w = scores["masked"], scores["whole"]
        return (
            f"{name}: hidden pixels PSNR {m['masked_psnr']:.2f} dB, MSE {m['masked_mse']:.4g}; "
            f"with the visible pixels PSNR {w['psnr']:.2f} dB, SSIM {w['ssim']:.3f}"
        )
    d, r = scores["degraded"], scores["reconstruction"]
    return (
        f"{name}: degraded PSNR {d['psnr']:.2f} dB, SSIM {d['ssim']:.3f} → reconstruction PSNR "
        f"{r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}"
    )
