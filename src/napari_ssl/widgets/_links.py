"""A dock's ties to what outlives it: the shared state's signals, and the work it started."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

Link = tuple[Any, Callable[..., Any]]  # (a psygnal signal of the state, a slot of the widget)


def link(widget: QWidget, *links: Link) -> None:
    """Connect each signal to its slot until ``widget`` is removed from the viewer or destroyed:
    the state outlives a removed dock, which must neither act on it (a closed dock lives on
    until it is collected) nor be called into once its Qt objects are deleted."""
    for signal, slot in links:
        signal.connect(slot)
    unlink = partial(_unlink, links)
    _RemovalWatch(widget, unlink)
    widget.destroyed.connect(unlink)


def layer_list_changes(viewer: Any, slot: Callable[..., Any]) -> tuple[Link, ...]:
    """Links of ``slot`` to every change of the viewer's layer list (added, removed, moved,
    renamed), for :func:`link`."""
    events = viewer.layers.events
    return tuple(
        (getattr(events, name), slot) for name in ("inserted", "removed", "moved", "renamed")
    )


def _unlink(links: tuple[Link, ...], *_: Any) -> None:
    for signal, slot in links:
        signal.disconnect(slot)


def when_removed(widget: QWidget, shutdown: Callable[[bool], None]) -> None:
    """Call ``shutdown(wait)`` when the dock ``widget`` leaves the viewer: removed (its close
    button, ``remove_dock_widget``: ``wait`` False, the GUI goes on while the work ends) or
    destroyed (the viewer closing: ``wait`` True, the work ends before the process may exit).

    napari takes a removed dock's widget out of its frame without deleting it: Qt only tells the
    widget that it has no parent any more. ``shutdown`` may run more than once, and must not use
    the widget: on ``destroyed`` its Python side is gone (bind what it needs with ``partial``).
    """
    _RemovalWatch(widget, partial(shutdown, False))
    widget.destroyed.connect(partial(_call, partial(shutdown, True)))


def _call(callback: Callable[[], None], *_: Any) -> None:
    callback()  # extra arguments: Qt's ``destroyed(obj)``


class _RemovalWatch(QObject):
    """An event filter on the dock (its child): a docked widget that loses its parent."""

    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._callback = callback
        self._docked = widget.parent() is not None
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange:
            docked = watched.parent() is not None
            if self._docked and not docked:
                self._callback()
            self._docked = docked
        return False
