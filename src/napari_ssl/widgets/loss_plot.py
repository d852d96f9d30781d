"""Live training curves: per-step train loss (smoothed), per-epoch validation loss and PSNR.

Points are appended to existing lines; the canvas redraws at most every :data:`REDRAW_MS`
(a timer checks a dirty flag), never once per step.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 500
SMOOTHING = 0.9  # exponential moving average of the step losses
LOG_SPREAD = 20.0  # log-scale the loss axis once the losses span this factor


class LossPlot(QWidget):
    """Loss (log scale) on top, validation PSNR below; x axis = epochs (fractional for steps)."""

    def __init__(
        self, parent: QWidget | None = None, colors: tuple[str, str] | None = None
    ) -> None:
        """``colors``: (background, text) to match napari's theme; matplotlib's default if None."""
        super().__init__(parent)
        self.figure = Figure(figsize=(4, 3.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.ax_loss = self.figure.add_subplot(211)
        self.ax_psnr = self.figure.add_subplot(212, sharex=self.ax_loss)
        (self.raw_line,) = self.ax_loss.plot([], [], color="0.75", lw=0.8, label="train (step)")
        (self.train_line,) = self.ax_loss.plot([], [], color="C0", lw=1.5, label="train (smoothed)")
        (self.val_line,) = self.ax_loss.plot([], [], "o-", color="C1", ms=4, label="validation")
        (self.psnr_line,) = self.ax_psnr.plot([], [], "o-", color="C2", ms=4, label="val PSNR")
        self.ax_loss.set_ylabel("loss")
        self.ax_loss.legend(fontsize=7, loc="upper right")
        self.ax_psnr.set_ylabel("PSNR (dB)")
        self.ax_psnr.set_xlabel("epoch")
        self.ax_loss.tick_params(labelbottom=False)
        for ax in (self.ax_loss, self.ax_psnr):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        if colors is not None:
            _apply_colors(self.figure, *colors)
        self.redraws = 0
        self._dirty = False
        self._ema: float | None = None
        self._timer = QTimer(self, interval=REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()
        self.clear()

    @property
    def step_points(self) -> int:
        return len(self.train_line.get_xdata())

    @property
    def epoch_points(self) -> int:
        return len(self.val_line.get_xdata())

    def clear(self) -> None:
        for line in (self.raw_line, self.train_line, self.val_line, self.psnr_line):
            line.set_data([], [])
        self._ema = None
        self._dirty = True

    def add_step(self, x: float, loss: float) -> None:
        """A train loss at fractional epoch ``x``."""
        if not math.isfinite(loss):
            return
        self._ema = loss if self._ema is None else SMOOTHING * self._ema + (1 - SMOOTHING) * loss
        _append(self.raw_line, x, loss)
        _append(self.train_line, x, self._ema)
        self._dirty = True

    def add_epoch(self, epoch: int, val_loss: float, psnr: float | None) -> None:
        if math.isfinite(val_loss):
            _append(self.val_line, epoch, val_loss)
        if psnr is not None and math.isfinite(psnr):
            _append(self.psnr_line, epoch, psnr)
        self._dirty = True

    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for ax in (self.ax_loss, self.ax_psnr):
            ax.relim()
            ax.autoscale_view()
        losses = [*self.raw_line.get_ydata(), *self.val_line.get_ydata()]
        wide = losses and min(losses) > 0 and max(losses) > LOG_SPREAD * min(losses)
        self.ax_loss.set_yscale("log" if wide else "linear")
        self.canvas.draw_idle()
        self.redraws += 1


def _append(line: Any, x: float, y: float) -> None:
    line.set_data([*line.get_xdata(), x], [*line.get_ydata(), y])


def _apply_colors(figure: Figure, background: str, text: str) -> None:
    figure.set_facecolor(background)
    for ax in figure.axes:
        ax.set_facecolor(background)
        ax.tick_params(colors=text, which="both")
        ax.yaxis.label.set_color(text)
        ax.xaxis.label.set_color(text)
        for spine in ax.spines.values():
            spine.set_color(text)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(background)
            for item in legend.get_texts():
                item.set_color(text)


def theme_colors(viewer: Any) -> tuple[str, str] | None:
    """(background, text) of the viewer's napari theme, as hex strings."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(viewer.theme)
    except (ValueError, KeyError, AttributeError):
        return None
    return theme.background.as_hex(), theme.text.as_hex()
