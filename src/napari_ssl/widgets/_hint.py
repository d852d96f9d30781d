"""A line of text under a group of fields: a note, or an error in red (hidden when empty)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QSizePolicy

ERROR_COLOR = "#e5484d"  # readable on napari's dark and light themes


def hint_label() -> QLabel:
    """An empty, hidden, word-wrapped label for :func:`set_hint`."""
    label = QLabel("")
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
