"""Path fields: a line edit with a button that picks a file or a folder, and the checkpoint field
the Reconstruct and Export docks share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from napari_ssl.widgets._links import link
from napari_ssl.widgets.state import SslState

CHECKPOINT_FILES = "Checkpoints (*.pth *.safetensors)"  # the file dialogs' filter


def field_row(
    edit: QWidget, text: str, action: Callable[[], Any], width: int | None = None, tip: str = ""
) -> QWidget:
    """``edit`` with a button ``text`` (at most ``width`` wide, tooltip ``tip``) beside it that
    calls ``action``."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit)
    button = QPushButton(text, toolTip=tip)
    if width is not None:
        button.setMaximumWidth(width)
    button.clicked.connect(lambda: action())
    row.addWidget(button)
    return box


def path_row(edit: QLineEdit, title: str, folder: bool, button: str = "…") -> QWidget:
    """``edit`` with a button that opens a checkpoint (or, ``folder``, a folder) dialog named
    ``title``; the choice is put in ``edit`` as if typed (``editingFinished`` follows)."""

    def browse() -> None:
        path = (
            QFileDialog.getExistingDirectory(edit, title)
            if folder
            else QFileDialog.getOpenFileName(edit, title, "", CHECKPOINT_FILES)[0]
        )
        if path:
            edit.setText(path)
            edit.editingFinished.emit()

    tip = f"Choose the {'folder' if folder else 'file'} in a dialog"
    return field_row(edit, button, browse, 30 if button == "…" else None, tip)


def checkpoint_field(dock: QWidget, state: SslState) -> tuple[QLineEdit, QWidget]:
    """A checkpoint field (and its row): a file the user picks, or the checkpoint each training
    of the viewer writes (followed until ``dock`` is closed)."""
    edit = QLineEdit(placeholderText="the run just trained, or a .pth / .safetensors file")

    def follow(path: str) -> None:
        if path:
            edit.setText(path)

    follow(state.checkpoint)
    link(dock, (state.events.checkpoint, follow))
    return edit, path_row(edit, "Checkpoint", folder=False)
