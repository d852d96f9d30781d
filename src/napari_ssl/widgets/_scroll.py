"""A dock's scroll area: on a small screen the dock scrolls instead of making napari's window
taller than the screen."""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

MIN_DOCK_HEIGHT = 120  # the shortest a dock gets; shorter than its fields, it scrolls


def scrolling(dock: QWidget) -> QWidget:
    """Give ``dock`` a vertical scroll area; returns the widget to lay its fields out in."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = VerticalScroll()
    inner = QWidget()
    area.setWidget(inner)
    outer.addWidget(area)
    return inner


class VerticalScroll(QScrollArea):
    """Scrolls up and down only: as wide as its fields need, as tall as they ask when there is
    room, down to :data:`MIN_DOCK_HEIGHT` when there is not."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)  # the fields take the dock's size when there is room
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _with_bar(self, size: QSize, height: int) -> QSize:
        return QSize(size.width() + self.verticalScrollBar().sizeHint().width(), height)

    def sizeHint(self) -> QSize:
        inner = self.widget()
        if inner is None:
            return super().sizeHint()
        return self._with_bar(inner.sizeHint(), inner.sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        inner = self.widget()
        if inner is None:
            return super().minimumSizeHint()
        return self._with_bar(inner.minimumSizeHint(), MIN_DOCK_HEIGHT)
