"""Live training curves: per-step train loss (smoothed), per-epoch validation loss and PSNR.

matplotlib draws off the GUI thread: points are appended on the GUI thread (cheap), and on a
:meth:`LossPlot.tick` at most every :data:`RENDER_S` a copy of them goes to one worker thread
that owns a ``Figure`` with the Agg canvas (no pyplot, no Qt widget) and renders it to a QImage.
A later tick shows that image in the label (~1 ms). Nothing is drawn while the plot is hidden
(its dock's tab not the current one); it catches up when shown.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QWidget

from napari_ssl.widgets.gui_collection import holding

RENDER_S = 3.5  # shortest time between two renders: every other 2 s tick of the dock
SMOOTHING = 0.9  # debiased exponential moving average of the step losses (as TensorBoard)
LOG_SPREAD = 20.0  # log-scale the loss axis once the losses span this factor
DPI = 100.0
MARGINS_PX = (54, 10, 10, 44, 16)  # left, right, top, bottom, gap between the two axes
MIN_SIZE_PX = (120, 120)  # smaller (being laid out): not worth drawing

Curves = tuple[tuple[list[float], list[float]], ...]  # (x, y) of raw, smoothed, val, PSNR


class LossPlot(QLabel):
    """Loss (log scale when wide) on top, validation PSNR below; x = epochs (fractional)."""

    def __init__(
        self, parent: QWidget | None = None, colors: tuple[str, str] | None = None
    ) -> None:
        """``colors``: (background, text) to match napari's theme; matplotlib's default if None."""
        super().__init__(parent)
        self.setMinimumHeight(220)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.redraws = 0  # images shown
        self._renderer = _Renderer(colors)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="napari-ssl-loss-plot")
        self._future: Future | None = None
        self._rendered_at = -math.inf
        self._curves: Curves = ()
        self.destroyed.connect(partial(_shutdown, self._executor))
        self.clear()

    @property
    def step_points(self) -> int:
        return len(self._curves[0][0])

    @property
    def epoch_points(self) -> int:
        return len(self._curves[2][0])

    @property
    def smoothed(self) -> list[float]:
        """The smoothed train losses shown, one per step."""
        return list(self._curves[1][1])

    def clear(self) -> None:
        self._curves = tuple(([], []) for _ in range(4))
        self._ema = 0.0
        self._ema_steps = 0
        self._dirty = True

    def add_step(self, x: float, loss: float) -> None:
        """A train loss at fractional epoch ``x``; non-finite losses are left out.

        The smoothed value is the moving average started at 0, divided by ``1 - SMOOTHING**t``
        (Adam's bias correction): from the first step on it is a weighted mean of the losses.
        """
        if not math.isfinite(loss):
            return
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
        self._ema_steps += 1
        _append(self._curves[0], x, loss)
        _append(self._curves[1], x, self._ema / (1 - SMOOTHING**self._ema_steps))
        self._dirty = True

    def add_epoch(self, epoch: int, val_loss: float, psnr: float | None) -> None:
        if math.isfinite(val_loss):
            _append(self._curves[2], epoch, val_loss)
        if psnr is not None and math.isfinite(psnr):
            _append(self._curves[3], epoch, psnr)
        self._dirty = True

    def tick(self) -> None:
        """Show a finished render; start a new one when due (changed, visible, not too soon)."""
        if self._future is not None and self._future.done():
            rgba, ratio = self._future.result()
            self._future = None
            h, w = rgba.shape[:2]  # Qt objects are made here, in the GUI thread, only
            image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
            image.setDevicePixelRatio(ratio)
            self.setPixmap(QPixmap.fromImage(image))
            self.redraws += 1
        if (
            self._dirty
            and self._future is None
            and self.isVisible()
            and not self.visibleRegion().isEmpty()  # napari keeps a background tab "visible"
            and self.width() >= MIN_SIZE_PX[0]
            and self.height() >= MIN_SIZE_PX[1]
            and time.perf_counter() - self._rendered_at >= RENDER_S
        ):
            self._dirty = False
            self._rendered_at = time.perf_counter()
            curves = tuple((list(x), list(y)) for x, y in self._curves)
            size = (self.width(), self.height(), self.devicePixelRatioF())
            with holding(self._renderer.render) as render:
                self._future = self._executor.submit(render, curves, *size)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._dirty = True  # rendered again at the new size on a later tick


def _shutdown(executor: ThreadPoolExecutor, *_: Any) -> None:
    """Let the render thread end (extra arguments: Qt's ``destroyed(obj)``)."""
    executor.shutdown(wait=False)


def _append(curve: tuple[list[float], list[float]], x: float, y: float) -> None:
    curve[0].append(x)
    curve[1].append(y)


class _Renderer:
    """The figure, built and drawn only in the plot's worker thread (one render at a time)."""

    def __init__(self, colors: tuple[str, str] | None) -> None:
        self.colors = colors
        self.figure: Any = None

    def _build(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = figure = Figure(dpi=DPI)
        FigureCanvasAgg(figure)
        self.ax_loss = figure.add_subplot(211)
        self.ax_psnr = figure.add_subplot(212, sharex=self.ax_loss)
        self.lines = (
            self.ax_loss.plot([], [], color="0.75", lw=0.8, label="train (step)")[0],
            self.ax_loss.plot([], [], color="C0", lw=1.5, label="train (smoothed)")[0],
            self.ax_loss.plot([], [], "o-", color="C1", ms=4, label="validation")[0],
            self.ax_psnr.plot([], [], "o-", color="C2", ms=4, label="val PSNR")[0],
        )
        self.ax_loss.set_ylabel("loss")
        self.ax_loss.legend(fontsize=7, loc="upper right")
        self.ax_psnr.set_ylabel("PSNR (dB)")
        self.ax_psnr.set_xlabel("epoch")
        self.ax_loss.tick_params(labelbottom=False)
        for ax in (self.ax_loss, self.ax_psnr):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        if self.colors is not None:
            _apply_colors(figure, *self.colors)

    def render(
        self, curves: Curves, width: int, height: int, ratio: float
    ) -> tuple[np.ndarray, float]:
        """The figure at ``width`` x ``height`` logical pixels (``ratio``: device pixel ratio)."""
        from napari_ssl.drawing import MATPLOTLIB_LOCK

        with MATPLOTLIB_LOCK:  # the engine may be writing its charts at the same time
            return self._render(curves, width, height, ratio)

    def _render(
        self, curves: Curves, width: int, height: int, ratio: float
    ) -> tuple[np.ndarray, float]:
        if self.figure is None:
            self._build()
        figure = self.figure
        figure.set_dpi(DPI * ratio)
        figure.set_size_inches(width / DPI, height / DPI)
        left, right, top, bottom, gap = MARGINS_PX  # fixed: tight_layout doubles the draw time
        axes_h = (height - top - bottom - gap) / 2
        figure.subplots_adjust(left / width, bottom / height, 1 - right / width, 1 - top / height)
        figure.subplots_adjust(hspace=gap / max(axes_h, 1.0))
        for line, (x, y) in zip(self.lines, curves, strict=True):
            line.set_data(x, y)
        for ax in (self.ax_loss, self.ax_psnr):
            ax.relim()
            ax.autoscale_view()
        losses = [*curves[0][1], *curves[2][1]]
        wide = bool(losses) and min(losses) > 0 and max(losses) > LOG_SPREAD * min(losses)
        if self.ax_loss.get_yscale() != ("log" if wide else "linear"):
            self.ax_loss.set_yscale("log" if wide else "linear")
        figure.canvas.draw()
        return np.array(figure.canvas.buffer_rgba()), ratio


def _apply_colors(figure: Any, background: str, text: str) -> None:
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
