"""napari-ssl's docks share one tab group. Opened one by one from the Plugins menu, napari would
stack them in its right area, each too short for its fields (Start and the plot out of sight);
``napari-ssl gui`` tabs them as it adds them (:data:`TABBED`), and then nothing is changed here
(Qt's own record of the tabs is not up to date yet when this runs)."""

from __future__ import annotations

import weakref
from functools import partial

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

MARK = "napari_ssl_dock"  # a Qt property set on each napari-ssl dock
TABBED = "napari_ssl_tabbed"  # ... and on those tabbed by whoever added them (napari-ssl gui)


def tab_with_siblings(dock: QWidget) -> None:
    """Once napari has docked ``dock``: put it in a tab beside a napari-ssl dock already in
    the same area, unless it is tabbed already."""
    dock.setProperty(MARK, True)
    QTimer.singleShot(0, partial(_tab, weakref.ref(dock)))


def _tab(ref: weakref.ref) -> None:
    try:
        dock = ref()
        if dock is None or dock.property(TABBED):
            return
        frame = _frame_of(dock)
        window = None if frame is None else frame.parentWidget()
        if not isinstance(window, QMainWindow) or window.tabifiedDockWidgets(frame):
            return
        area = window.dockWidgetArea(frame)
        for other in window.findChildren(QDockWidget):
            mine = any(w.property(MARK) for w in other.findChildren(QWidget))
            beside = other is not frame and other.isVisible() and not other.isFloating()
            if beside and mine and window.dockWidgetArea(other) == area:
                window.tabifyDockWidget(other, frame)
                QTimer.singleShot(0, frame.raise_)  # in front once Qt has made its tab
                return
    except RuntimeError:  # closed before napari's event loop came back here
        return


def _frame_of(widget: QWidget | None) -> QDockWidget | None:
    """The dock widget (napari's frame) that holds ``widget``."""
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget
