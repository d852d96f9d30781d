"""The Data dock's axes rows: the dimensions, the channel axis and what was detected.

The guess comes from the first selected layer, else from the first file of the dataset folder
(a TIFF's header alone is read); the user corrects what is wrong. For a folder given by a loaded
config, the config's dimensions stay and only the channel axis is guessed.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget

from napari_ssl.data.images import SPLIT_STACK, DataError
from napari_ssl.widgets import _layers
from napari_ssl.widgets._hint import hint_label, set_hint
from napari_ssl.widgets.wording import in_dock_words


class AxesBox(QWidget):
    """ "Dimensions" and "Channel axis" fields, with the guess they were filled from."""

    def __init__(self) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.ndim = QComboBox()
        self.ndim.addItems(["2D", "3D"])
        self.channel_axis = QComboBox()
        self.detected = hint_label()  # wrapped, never squeezed below its lines
        self.detected.setText("no layer selected")
        self.detected.setVisible(True)
        form.addRow("Dimensions", self.ndim)
        form.addRow("Channel axis", self.channel_axis)
        form.addRow("", self.detected)
        self._guess: tuple[int, int | None, str] | None = None  # (ndim, axis, source in words)
        self.ndim.currentIndexChanged.connect(self.describe)
        self.channel_axis.currentIndexChanged.connect(self.describe)

    def detect(self, layers: list[Any], folder: str, keep_ndim: int | None = None) -> bool:
        """Fill the fields from the first of ``layers``, else from ``folder``'s first image
        (``keep_ndim``: these dimensions stay, only the channel axis is guessed); False when
        there is nothing to read (said in red for a folder)."""
        try:
            shape, named, what = first_shape(layers, folder)
        except DataError as err:
            self._guess = None
            self.channel_axis.clear()
            set_hint(self.detected, in_dock_words(str(err)), error=bool(folder))
            return False
        ndim, axis = _layers.guess_axes(shape, named)
        if layers and axis in _layers.time_axes(layers[0]):
            axis = None  # time points are not channels (the dock says to split them)
        if keep_ndim is not None and ndim != keep_ndim:
            ndim, axis = keep_ndim, None
            if len(shape) == ndim + 1:  # the shorter end axis: channels first or last
                axis = named if named is not None else (0 if shape[0] <= shape[-1] else ndim)
        self._guess = (ndim, axis, what)
        self.channel_axis.blockSignals(True)
        self.channel_axis.clear()
        self.channel_axis.addItem("none", None)
        for i, size in enumerate(shape):
            self.channel_axis.addItem(f"axis {i} (size {size})", i)
        self.channel_axis.setCurrentIndex(0 if axis is None else axis + 1)
        self.channel_axis.blockSignals(False)
        self.ndim.setCurrentIndex(ndim - 2)
        self.describe()
        return True

    def describe(self) -> None:
        """Say what was detected, and what the user chose instead if they did."""
        if self._guess is None:
            return
        ndim, axis, what = self._guess
        chosen = (self.ndim.currentIndex() + 2, self.channel_axis.currentData())
        edited = f"you chose {_axes_words(*chosen)}" if chosen != (ndim, axis) else "edit if wrong"
        set_hint(self.detected, f"detected: {_axes_words(ndim, axis)} ({what}); {edited}")


def _axes_words(ndim: int, axis: int | None) -> str:
    return f"{ndim}D, " + ("no channel axis" if axis is None else f"channel axis {axis}")


def first_shape(layers: list[Any], folder: str) -> tuple[tuple[int, ...], int | None, str]:
    """(shape, the channel axis it names, in words) of the first layer, else of the first file
    of the dataset ``folder``."""
    if layers:
        shape = tuple(_layers.layer_data(layers[0]).shape)
        rgb, time = layers[0].rgb, _layers.time_axes(layers[0])
        what = "RGB" if rgb else f"shape {shape}"
        if time:  # refused at Preview and Start: say so now
            what += f"; axis {time[0]} is time; {SPLIT_STACK}"
        return shape, len(shape) - 1 if rgb else None, what
    if not folder:
        raise DataError("no layer selected")
    from napari_ssl.data.folders import first_image, resolve_dataset, split_key

    path, shape, named = first_image(resolve_dataset(folder, "train"), split_key("train"))
    return shape, named, f"the folder's first file, '{path.name}': shape {shape}"
