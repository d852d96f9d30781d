"""Layout helpers of the docks: a line of text under a group of fields (a note, or an error in red,
hidden when empty), and a dock's scroll area."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

ERROR_COLOR = "#e5484d"  # readable on napari's dark and light themes
MIN_DOCK_HEIGHT = 120  # a dock scrolls below this


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


def scrolling(dock: QWidget) -> QWidget:
    """Give ``dock`` a vertical scroll area and return the widget to lay its fields out in: on a
    small screen the dock scrolls instead of making napari's window taller than the screen."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _VerticalScroll()
    inner = QWidget()
    area.setWidget(inner)
    outer.addWidget(area)
    return inner


class _VerticalScroll(QScrollArea):
    """Scrolls up and down only: as wide as its fields need, as short as the screen wants."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)  # the fields take the dock's size when there is room
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        width = (
            self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        )
        return QSize(width, MIN_DOCK_HEIGHT)
