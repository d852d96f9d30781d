"""A line of text under a group of fields: a note, or an error in red (hidden when empty)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSize
from qtpy.QtWidgets import QLabel, QSizePolicy

ERROR_COLOR = "#e5484d"  # readable on napari's dark and light themes


class _WrappedLabel(QLabel):
    """A word-wrapped label that asks for the height of its lines at its current width: nested
    layouts and scroll areas do not ask a label's height for its width, and cut its lines."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(hint.width(), max(hint.height(), self.heightForWidth(self.width())))

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()  # its lines, and so its height, follow its width


def hint_label() -> QLabel:
    """An empty, hidden, word-wrapped label for :func:`set_hint`."""
    label = _WrappedLabel("")
    label.setWordWrap(True)
    label.setVisible(False)
    # never squeezed under the height its wrapped lines need (nested layouts would)
    label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    return label


def set_hint(label: QLabel, text: str, error: bool = False) -> None:
    """Show ``text`` (red when ``error``), or hide the label when ``text`` is empty."""
    label.setText(text)
    label.setStyleSheet(f"color: {ERROR_COLOR}" if error else "")
    label.setVisible(bool(text))
