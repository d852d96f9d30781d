"""Coalesced widget updates: one repaint per tick, whatever the rate of the worker's events.

In the napari window every repaint redraws the whole window (its GL canvas makes Qt compose it
all again: ~20 ms under Mesa llvmpipe), and ``QProgressBar.setValue`` repaints synchronously. So
the worker's events only store their latest value here, and a timer applies all of them together
at most every :data:`UPDATE_MS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QProgressBar

UPDATE_MS = 2000  # a repaint every 2 s: 0.5 % of a 10 ms timer's ticks, whatever it costs


class Coalescer(QObject):
    """The latest value of each key; every tick ``apply(pending)`` gets them, then ``ticked``."""

    ticked = Signal()  # after the pending values were applied (for the plot: same repaint)

    def __init__(
        self, parent: QObject, apply: Callable[[dict[str, Any]], None], interval_ms: int = UPDATE_MS
    ) -> None:
        super().__init__(parent)
        self.applied = 0  # how many times pending values were applied
        self._apply = apply
        self._pending: dict[str, Any] = {}
        self._timer = QTimer(self, interval=interval_ms)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` as the latest of ``key`` (applied on the next tick)."""
        self._pending[key] = value

    def latest(self, key: str, default: Any) -> Any:
        """The value of ``key`` waiting to be applied (``default`` if none)."""
        return self._pending.get(key, default)

    def flush(self) -> None:
        """Apply the pending values now (the final state of a run)."""
        pending, self._pending = self._pending, {}
        if pending:
            self.applied += 1
            self._apply(pending)

    def _tick(self) -> None:
        self.flush()
        self.ticked.emit()


def set_progress(
    bar: QProgressBar, value: int | None = None, fmt: str | None = None, maximum: int | None = None
) -> None:
    """Change a progress bar with a scheduled ``update()`` instead of its synchronous repaint."""
    bar.setUpdatesEnabled(False)
    try:
        if maximum is not None:
            bar.setRange(0, max(maximum, 1))
        if value is not None:
            bar.setValue(value)
        if fmt is not None:
            bar.setFormat(fmt)
    finally:
        bar.setUpdatesEnabled(True)  # schedules one update(), painted with the others
