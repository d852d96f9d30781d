"""The Train dock's validation images: a fraction held out of the training images, or a folder.

The shared config is the one truth: an empty ``data.val_path`` holds out ``data.val_fraction`` of
the training images (BiaPy DATA.VAL.FROM_TRAIN True, SPLIT_TRAIN); a folder validates on images of
its own, and the training images are trained on whole (FROM_TRAIN False, DATA.VAL.PATH). Choosing
"hold out" clears the folder. A chosen folder is listed as the engine lists it, under the fields
and again at Start (:meth:`ValidationBox.check`); the engine checks each image when the run starts.
In a narrow dock a choice's field goes under its button, and the words after the fraction wrap.
"""

from __future__ import annotations

import contextlib
import dataclasses

from qtpy.QtCore import QSize
from qtpy.QtWidgets import (
    QWIDGETSIZE_MAX,
    QButtonGroup,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
)

from napari_ssl.config import Config
from napari_ssl.data.folders import VAL_KEY, list_images, resolve_dataset
from napari_ssl.data.images import DataError
from napari_ssl.widgets._hint import hint_label, set_hint
from napari_ssl.widgets._links import link
from napari_ssl.widgets.state import SslState
from napari_ssl.widgets.wording import in_dock_words


class ValidationBox(QWidget):
    """Validation images: ``fraction`` of the training images, or the images of ``folder``."""

    def __init__(self, state: SslState) -> None:
        super().__init__()
        self.state = state
        self._path: str | None = None  # the val_path shown last (None: nothing shown yet)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # narrow: under the button
        self.use_fraction = QRadioButton("hold out")
        self.use_fraction.setToolTip("Validate on a part of the training images, held out")
        self.fraction = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=0.5, singleStep=0.05)
        self.fraction.setToolTip(
            "Fraction held out for validation: whole images when it rounds to at least one (at "
            "0.1: with 6 images or more), else the last slab of every image, at least one patch "
            "deep (BiaPy DATA.VAL.SPLIT_TRAIN)"
        )
        self.use_folder = QRadioButton("folder")
        self.use_folder.setToolTip(
            "Validate on images of their own, like the training images (BiaPy DATA.VAL.PATH); "
            "the training images are then all trained on"
        )
        self.folder = QLineEdit(placeholderText="validation images (dataset/val/x)")
        self.browse = QPushButton("Browse…")
        self.hint = hint_label()
        buttons = QButtonGroup(self)
        for button in (self.use_fraction, self.use_folder):
            buttons.addButton(button)
        words = _TwoLines("of the training images")
        form.addRow(self.use_fraction, _row(self.fraction, words, stretch=words))
        form.addRow(self.use_folder, _row(self.folder, self.browse, stretch=self.folder))
        form.addRow(self.hint)
        self.use_fraction.clicked.connect(self.clear)
        self.use_folder.clicked.connect(self._folder_chosen)
        self.browse.clicked.connect(self._browse)
        self.folder.editingFinished.connect(self.commit)
        self.fraction.valueChanged.connect(self._fraction_changed)
        self._show(state.cfg)
        link(self, (state.events.cfg, self._show))

    def commit(self) -> None:
        """Put the folder field into the shared config (an event only when it changed)."""
        data = self.state.cfg.data
        path = self.folder.text().strip()
        if path != data.val_path:
            self.state.update_cfg(data=dataclasses.replace(data, val_path=path))
        self._show(self.state.cfg)

    def clear(self) -> None:
        """Validate on the held-out fraction again: the folder is cleared."""
        self.folder.clear()
        self.commit()

    def check(self) -> None:
        """Raise :class:`DataError` when the folder is missing or holds no images (shown here)."""
        path = self.state.cfg.data.val_path
        if not path:
            return
        try:
            found = list_images(resolve_dataset(path, "val"), VAL_KEY)
        except DataError as err:
            set_hint(self.hint, in_dock_words(str(err)), error=True)
            raise
        folder = found[0].parent
        where = "" if str(folder) == path else f" in {folder}"
        set_hint(self.hint, f"{len(found)} validation image(s){where}")

    def _fraction_changed(self, value: float) -> None:
        self.state.update_cfg(data=dataclasses.replace(self.state.cfg.data, val_fraction=value))

    def _folder_chosen(self) -> None:
        if self.folder.text().strip():
            self.commit()
        else:  # nothing to validate on yet: pick the folder (cancelled: back to "hold out")
            self._browse()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of validation images")
        if path:
            self.folder.setText(path)
            self.commit()
        else:
            self._show(self.state.cfg)

    def _show(self, cfg: Config) -> None:
        """Show the config's choice; a folder path being typed stays until the config's own
        folder changes."""
        path = cfg.data.val_path
        self.fraction.blockSignals(True)
        self.fraction.setValue(cfg.data.val_fraction)
        self.fraction.blockSignals(False)
        (self.use_folder if path else self.use_fraction).setChecked(True)
        self.fraction.setEnabled(not path)
        if path == self._path:
            return
        self._path = path
        self.folder.setText(path)
        if not path:
            set_hint(self.hint, "")
            return
        with contextlib.suppress(DataError):  # shown under the fields; Start refuses it
            self.check()


def _row(*widgets: QWidget, stretch: QWidget) -> QHBoxLayout:
    """``widgets`` side by side, ``stretch`` taking the room left."""
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget, stretch=int(widget is stretch))
    return row


class _TwoLines(QLabel):
    """Words wrapped on two lines at most: a narrower dock puts the row under its button."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setWordWrap(True)

    def minimumSizeHint(self) -> QSize:
        """As narrow as two lines allow (measured in the theme's font, as laid out)."""
        hint = super().minimumSizeHint()  # its longest word
        two_lines = 2 * self.heightForWidth(QWIDGETSIZE_MAX)
        narrow, wide = hint.width(), max(hint.width(), self.sizeHint().width())
        while self.heightForWidth(wide) > two_lines:  # a width that fits, to search below
            narrow, wide = wide, 2 * wide
        while narrow < wide:  # the narrowest that fits: heights only fall as widths grow
            middle = (narrow + wide) // 2
            if self.heightForWidth(middle) <= two_lines:
                wide = middle
            else:
                narrow = middle + 1
        return QSize(wide, hint.height())
