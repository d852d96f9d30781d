"""Data & pretext dock: which images, their axes, the pretext task and a live preview.

Preview (:mod:`~napari_ssl.widgets.data_previews`) shows a bounded crop around where the
viewer looks, placed where it lies in the source; the hint under the button says where. The crop is
read once and kept (:mod:`~napari_ssl.widgets.preview_runner`: a lazy or large one in a worker
thread), so after a first Preview a parameter change (debounced) only redoes the pretext on it, and
the preview layers are updated in place. What Start would refuse in the pretext is said instead.
The normalisation (a collapsible section) does not change the previews: they are in raw units.
The widgets follow the shared config too: a config loaded elsewhere (the Train dock's
"Load config…") shows here. napari-ssl's own output layers are not offered as inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from napari.layers import Image as ImageLayer
from napari.utils.notifications import show_error
from qtpy.QtCore import QSignalBlocker, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_ssl.config import Config
from napari_ssl.data.images import DataError
from napari_ssl.widgets import _layers
from napari_ssl.widgets._hint import hint_label
from napari_ssl.widgets._links import layer_list_changes, link, when_removed
from napari_ssl.widgets._scroll import scrolling
from napari_ssl.widgets._tabs import tab_with_siblings
from napari_ssl.widgets.axes_box import AxesBox
from napari_ssl.widgets.data_previews import DataPreviews
from napari_ssl.widgets.normalization_box import NormalizationBox
from napari_ssl.widgets.path_field import path_row
from napari_ssl.widgets.pretext_box import DEFAULT_XY, GRID_RATIO, RANDOM_RATIO, PretextBox
from napari_ssl.widgets.state import state_for, unwrap
from napari_ssl.widgets.wording import explain

DEBOUNCE_MS = 300


class DataDock(DataPreviews, QWidget):
    """Pick images (layers or a folder), set axes and the pretext task, preview it."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = unwrap(napari_viewer)
        self.state = state_for(self.viewer)
        self._init_previews()
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._live_preview)
        self._writing = False  # True while this dock pushes its own values into the state
        self._shown: tuple[Any, ...] = ()  # what of the config the fields show (_shown_part)
        self._detected_folder: str | None = None  # the folder whose axes are shown
        self._random_ratio = RANDOM_RATIO  # the Mask ratio for random masks, kept while on grid
        self._was_grid: bool | None = None  # the mask type the ratio field was last shown for
        self._build()
        explain(self)
        self._refresh_layers()
        self._show_cfg(self.state.cfg)  # a config loaded before this dock opened stays
        link(  # until the dock is closed
            self,
            (self.state.events.cfg, self._show_cfg),
            _layers.theme_link(self.layer_list, self.viewer),
            *layer_list_changes(self.viewer, self._refresh_layers),
        )
        when_removed(self, lambda _wait: self._runner.submit([]))  # closed: nothing drawn later

    # ---- UI -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(scrolling(self))
        tab_with_siblings(self)  # opened from the Plugins menu: a tab, not a stack
        images = QGroupBox("Images")
        form = QVBoxLayout(images)
        self.layer_list = _layers.layer_list(self.viewer)
        self.layer_list.itemSelectionChanged.connect(self._on_selection)
        form.addWidget(QLabel("Image layers (Ctrl/Shift-click for several):"))
        form.addWidget(self.layer_list)
        self.use_selection = QPushButton("Use layers selected in the viewer")
        self.use_selection.clicked.connect(self._use_viewer_selection)
        form.addWidget(self.use_selection)
        self.folder = QLineEdit(placeholderText="or a dataset folder (dataset/train/x)")
        self.folder.editingFinished.connect(self._read_params)
        form.addWidget(path_row(self.folder, "Dataset folder", folder=True, button="Browse…"))
        self.axes = AxesBox()
        self.ndim, self.channel_axis = self.axes.ndim, self.axes.channel_axis
        form.addWidget(self.axes)
        self.normalization = NormalizationBox(self.viewer, self.state, self)
        form.addWidget(self.normalization)
        layout.addWidget(images)
        pretext = self.pretext = PretextBox()
        self.task, self.mask_type = pretext.task, pretext.mask_type
        self.noise, self.factor, self.ratio = pretext.noise, pretext.factor, pretext.ratio
        self.token, self.patch_xy, self.patch_z = pretext.token, pretext.patch_xy, pretext.patch_z
        layout.addWidget(self.pretext)
        self.preview = QPushButton("Preview")
        self.preview.setToolTip("Add / update '<layer> [crappified]' or '[masked]' layers")
        self.preview.clicked.connect(self.run_preview)
        layout.addWidget(self.preview)
        self.preview_hint = hint_label()  # where a cropped preview lies, or why none is drawn
        layout.addWidget(self.preview_hint)
        layout.addStretch(1)
        for box in self._combos():
            box.currentIndexChanged.connect(self._on_param)
        for box in self._spins():
            box.valueChanged.connect(self._on_param)

    def _combos(self) -> tuple[QComboBox, ...]:
        return self.ndim, self.channel_axis, self.task, self.mask_type

    def _spins(self) -> tuple[Any, ...]:
        return self.noise, self.factor, self.ratio, self.token, self.patch_xy, self.patch_z

    # ---- layers ---------------------------------------------------------------------------
    def image_layers(self) -> list[ImageLayer]:
        """The Image layers offered as inputs: all but napari-ssl's own outputs."""
        return [
            lyr
            for lyr in self.viewer.layers
            if isinstance(lyr, ImageLayer) and not _layers.is_output_layer(lyr)
        ]

    def selected_layers(self) -> list[ImageLayer]:
        names = set(self.state.layers)
        return [lyr for lyr in self.image_layers() if lyr.name in names]

    def select(self, names: list[str]) -> None:
        """Select layers by name in the list (as a click would)."""
        _layers.select_by_name(self.layer_list, names)

    def _refresh_layers(self, event: Any = None) -> None:
        """List the input layers; a selected layer stays selected when renamed (the state
        renames its preview and other outputs with it)."""
        chosen = {
            id(item.data(Qt.ItemDataRole.UserRole)) for item in self.layer_list.selectedItems()
        }
        selected = set(self.state.layers)
        inputs = self.image_layers()
        self.layer_list.blockSignals(True)
        self.layer_list.clear()
        for layer in inputs:
            item = QListWidgetItem(_layers.describe_layer(layer))
            item.setData(Qt.ItemDataRole.UserRole, layer)
            self.layer_list.addItem(item)
            item.setSelected(id(layer) in chosen or layer.name in selected)
        self.layer_list.blockSignals(False)
        for layer in [lyr for lyr in self._previewed if not self._preview_of(lyr)]:
            self._previewed.discard(layer)  # removed, or its preview deleted by the user
        if not self._previewed and not self._runner.busy:
            self._say("")  # nothing it could say where
        elif self._showing_where:
            self._show_where()  # a source may have been renamed
        new = event.value if event is not None and event.type == "inserted" else None
        if event is None and len(inputs) == 1:  # the dock opened on one image (a sample)
            new = inputs[0]
        if not selected and not self.state.folder and any(layer is new for layer in inputs):
            self.select([new.name])
            return
        self._on_selection()

    def _on_selection(self) -> None:
        names = tuple(
            item.data(Qt.ItemDataRole.UserRole).name for item in self.layer_list.selectedItems()
        )
        if names and self.folder.text().strip():  # layers or a folder: the last choice wins
            self.folder.clear()
            self._read_params()
        if names != self.state.layers:
            self.state.layers = names
            self._detect_axes()

    def _use_viewer_selection(self) -> None:
        chosen = list(self.viewer.layers.selection)
        try:
            _layers.check_training_layers(chosen)
        except DataError as err:
            show_error(str(err))
            return
        self.select([layer.name for layer in chosen])

    def _detect_axes(self, keep_ndim: bool = False) -> None:
        """Guess the axes from the first selected layer, else from the folder's first file
        (``keep_ndim``: the dimensions a loaded config gave stay)."""
        self._detected_folder = folder = self.state.folder
        keep = self.state.ndim if keep_ndim else None
        found = self.axes.detect(self.selected_layers(), folder, keep)
        self._read_params()
        if not found and folder:
            self._detected_folder = None  # not found (yet): looked for again at the next change

    # ---- parameters -----------------------------------------------------------------------
    def _on_param(self) -> None:
        self._read_params()
        if self._previewed:
            self._debounce.start()

    def _read_params(self) -> None:
        """Push the widgets' values into the shared state (data and pretext config sections)."""
        task = self.task.currentText()
        self._show_ratio(self.mask_type.currentText() == "grid")
        ndim = self.ndim.currentIndex() + 2
        cubic = ndim == 3 and task == "masking"  # a 3D ViT takes cubic patches
        self.patch_z.setEnabled(ndim == 3 and not cubic)
        if ndim != self.state.ndim and self.patch_xy.value() == DEFAULT_XY[self.state.ndim]:
            with QSignalBlocker(self.patch_xy):  # an untouched default follows the dimensions
                self.patch_xy.setValue(DEFAULT_XY[ndim])
        xy = self.patch_xy.value()
        if cubic and self.patch_z.value() != xy:
            with QSignalBlocker(self.patch_z):
                self.patch_z.setValue(xy)
        patch = (xy, xy) if ndim == 2 else (self.patch_z.value(), xy, xy)
        cfg = self.state.cfg
        data = dataclasses.replace(
            cfg.data, ndim=ndim, patch_size=patch, train_path=self.folder.text().strip(),
            test_padding=_fitting(cfg.data.test_padding, patch),
        )  # fmt: skip
        pretext = dataclasses.replace(
            cfg.pretext,
            task=task,
            noise=float(self.noise.value()),
            resizing_factor=float(self.factor.value()),
            mask_type=self.mask_type.currentText(),
            mask_ratio=float(self.ratio.value()),  # a grid's half (shown) or the random ratio
        )
        model = dataclasses.replace(cfg.model, vit_token_size=int(self.token.value()))
        folder = self.folder.text().strip()
        from_config = folder == self.state.folder  # a loaded config set it (and its dimensions)
        self.state.ndim = ndim
        self.state.channel_axis = self.channel_axis.currentData()
        self.state.folder = folder
        if folder and self.layer_list.selectedItems():  # layers or a folder: the last choice
            self.layer_list.clearSelection()  # the folder's axes are detected, read again
            return
        if not self.state.layers and folder != self._detected_folder:
            self._detect_axes(keep_ndim=from_config)  # then the fields are read again
            return
        self._writing = True
        try:
            self.state.update_cfg(data=data, pretext=pretext, model=model)
        finally:
            self._writing = False
        self._shown = _shown_part(self.state.cfg)

    def _show_ratio(self, grid: bool) -> None:
        """A grid hides half the tokens: the Mask ratio shows 0.5, greyed; the ratio chosen for
        random masks comes back with them."""
        shown = None
        if grid and (self._was_grid is False or self.ratio.value() != GRID_RATIO):
            self._random_ratio, shown = self.ratio.value(), GRID_RATIO
        elif not grid and self._was_grid:
            shown = self._random_ratio
        if shown is not None:
            with QSignalBlocker(self.ratio):
                self.ratio.setValue(shown)
        self.ratio.setEnabled(not grid)
        self._was_grid = grid

    def _show_cfg(self, cfg: Config) -> None:
        """Show a config set from elsewhere (e.g. loaded from a YAML), then take it as ours.

        A value the widgets cannot hold (a non-square patch, a ratio out of range) becomes the
        nearest one they can; the Train dock's loader reports such differences.
        """
        if self._writing or _shown_part(cfg) == self._shown:  # e.g. a Train dock field
            return
        self._shown = _shown_part(cfg)
        widgets = (*self._combos(), *self._spins(), self.folder)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.task.setCurrentText(cfg.pretext.task)
            self.mask_type.setCurrentText(cfg.pretext.mask_type)
            self.ndim.setCurrentIndex(cfg.data.ndim - 2)
            self.noise.setValue(cfg.pretext.noise)
            self.factor.setValue(cfg.pretext.resizing_factor)
            self.ratio.setValue(cfg.pretext.mask_ratio)
            if cfg.pretext.mask_type == "random":
                self._random_ratio = cfg.pretext.mask_ratio  # the one shown with random masks
            self.token.setValue(cfg.model.vit_token_size)
            self.patch_xy.setValue(cfg.data.patch_size[-1])
            if cfg.data.ndim == 3:
                self.patch_z.setValue(cfg.data.patch_size[0])
            self.folder.setText(cfg.data.train_path)
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self.pretext.show_page(self.task.currentIndex())
        self.axes.describe()  # the dimensions it sets, beside what was detected
        self._on_param()  # previews shown follow too


def _shown_part(cfg: Config) -> tuple[Any, ...]:
    """The part of a config that the Data dock shows and previews (validation: the Train
    dock's)."""
    data = dataclasses.replace(cfg.data, val_path="", val_fraction=0.0)
    return data, cfg.pretext, cfg.model.vit_token_size


def _fitting(padding: tuple[int, ...] | None, patch: tuple[int, ...]) -> tuple[int, ...] | None:
    """A loaded config's test padding while it fits the patch (under half of it per axis), else
    the default (an eighth of the tile): a BiaPy template's padding does not refuse a smaller
    patch chosen here."""
    if padding is None or len(padding) != len(patch):
        return None
    return padding if all(2 * p < s for p, s in zip(padding, patch, strict=True)) else None
