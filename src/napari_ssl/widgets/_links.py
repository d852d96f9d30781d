"""Connections from the shared state to a widget, ended when the widget is deleted."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from qtpy.QtCore import QObject

Link = tuple[Any, Callable[..., Any]]  # (a psygnal signal of the state, a slot of the widget)


def link(widget: QObject, *links: Link) -> None:
    """Connect each signal to its slot until ``widget`` is destroyed: the state outlives a
    removed dock, and must not call into its deleted Qt objects."""
    for signal, slot in links:
        signal.connect(slot)
    widget.destroyed.connect(partial(_unlink, links))


def _unlink(links: tuple[Link, ...], *_: Any) -> None:
    for signal, slot in links:
        signal.disconnect(slot)
