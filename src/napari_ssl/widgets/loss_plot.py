"""Live training curves: per-step train loss (smoothed), per-epoch validation loss and PSNR.

matplotlib draws off the GUI thread: points are appended on the GUI thread (cheap), and on a
:meth:`LossPlot.tick` at most every :data:`RENDER_S` a copy of them goes to one worker thread
that owns a ``Figure`` with the Agg canvas (no pyplot, no Qt widget) and renders it to a QImage
at the label's size. The label shows it as soon as it is drawn (a :data:`POLL_MS` look while a
render is in flight, ~1 ms to show). The first step, each epoch (as the dock's status reports
it) and a new theme are rendered on the next tick without waiting for :data:`RENDER_S`; a new
size :data:`RESIZE_MS` after the last resize, without a tick. Until then an image larger than the
label is shown scaled down, never cut. While the plot is hidden (its dock's tab not the current
one) nothing is drawn; it catches up when shown. At the end of a run, :meth:`LossPlot.flush`
renders the whole run at once, also when hidden. Before the first point the label shows a line
of text instead of empty axes.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtCore import QRect, QSize, Qt, QTimer
from qtpy.QtGui import QImage, QPainter, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QWidget

from napari_ssl.drawing import MATPLOTLIB_LOCK, integer_epochs
from napari_ssl.widgets.gui_collection import holding

RENDER_S = 3.5  # shortest time between two renders: every other 2 s tick of the dock
POLL_MS = 20  # while a render is in flight: how often to look for its image
RESIZE_MS = 150  # a new size is rendered this long after the last resize (not each of a drag)
SMOOTHING = 0.9  # debiased exponential moving average of the step losses (as TensorBoard)
LOG_SPREAD = 20.0  # log-scale the loss axis once the losses span this factor
DPI = 100.0
MIN_SIZE_PX = (120, 120)  # smaller (being laid out): not worth drawing
PLACEHOLDER = "The loss curves appear here after the first training steps."
NO_PSNR_YET = "PSNR after each epoch"
NO_PSNR = "no validation PSNR"

Curves = tuple[tuple[list[float], list[float]], ...]  # (x, y) of raw, smoothed, val, PSNR


class LossPlot(QLabel):
    """Loss (log scale when wide) on top, validation PSNR below; x = epochs (fractional)."""

    def __init__(
        self, parent: QWidget | None = None, colors: tuple[str, str] | None = None
    ) -> None:
        """``colors``: (background, text) to match napari's theme; matplotlib's default if None."""
        super().__init__(parent)
        self.setMinimumHeight(160)  # readable; on a smaller screen the dock scrolls
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)  # the placeholder text
        self.redraws = 0  # images shown
        self._renderer = _Renderer(colors)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="napari-ssl-loss-plot")
        self._future: Future | None = None
        self._rendered_at = -math.inf
        self._curves: Curves = ()
        self._image: QPixmap | None = None  # shown (None: the placeholder)
        self._flushing = False  # from flush() to its last image: drawn also when hidden
        self._poll = QTimer(self, interval=POLL_MS)  # runs while a render is in flight
        self._poll.timeout.connect(self._follow_up)
        self._resized = QTimer(self, singleShot=True, interval=RESIZE_MS)
        self._resized.timeout.connect(self._follow_up)
        self.destroyed.connect(partial(_shutdown, self._executor))
        self.clear()

    def set_colors(self, colors: tuple[str, str] | None) -> None:
        """Follow napari's theme: (background, text), drawn from the next render on (None, an
        unknown theme: the colours stay)."""
        self._renderer.colors = colors
        self._dirty = self._due = True

    @property
    def step_points(self) -> int:
        return len(self._curves[0][0])

    @property
    def epoch_points(self) -> int:
        return len(self._curves[2][0])

    @property
    def points(self) -> dict[str, tuple[list[float], list[float]]]:
        """A copy of every curve's (x, y): train, smoothed, validation, psnr."""
        names = ("train", "smoothed", "validation", "psnr")
        return {name: (list(x), list(y)) for name, (x, y) in zip(names, self._curves, strict=True)}

    @property
    def smoothed(self) -> list[float]:
        """The smoothed train losses shown, one per step."""
        return list(self._curves[1][1])

    def clear(self) -> None:
        """No points: the placeholder text instead of a plot (a render in flight is dropped)."""
        self._curves = tuple(([], []) for _ in range(4))
        self._epochs = 0  # epochs reported, with or without validation
        self._ema = 0.0
        self._ema_steps = 0
        self._dirty = self._due = True
        self._drawn_size: tuple[int, int, float] | None = None  # of the latest render
        self._future = None
        self._flushing = False
        self._poll.stop()
        self._image = None
        self.setText(PLACEHOLDER)

    def add_step(self, x: float, loss: float) -> None:
        """A train loss at fractional epoch ``x``; non-finite losses are left out.

        The smoothed value is the moving average started at 0, divided by ``1 - SMOOTHING**t``
        (Adam's bias correction): from the first step on it is a weighted mean of the losses.
        """
        if not math.isfinite(loss):
            return
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
        self._ema_steps += 1
        self._due |= not self.step_points  # the plot replaces the placeholder
        _append(self._curves[0], x, loss)
        _append(self._curves[1], x, self._ema / (1 - SMOOTHING**self._ema_steps))
        self._dirty = True

    def add_epoch(self, epoch: int, val_loss: float | None, psnr: float | None) -> None:
        """An epoch's validation loss and PSNR (None: no validation data)."""
        if val_loss is not None and math.isfinite(val_loss):
            _append(self._curves[2], epoch, val_loss)
        if psnr is not None and math.isfinite(psnr):
            _append(self._curves[3], epoch, psnr)
        self._epochs += 1
        self._dirty = self._due = True  # shown with the status reporting it

    def tick(self) -> None:
        """Show a finished render; start a new one when due (changed, visible, and a first step,
        an epoch, a theme, a size not drawn yet or :data:`RENDER_S` since the last)."""
        self._show_rendered()
        due = self._due or self._size() != self._drawn_size
        due = due or time.perf_counter() - self._rendered_at >= RENDER_S
        if due and self._drawable() and self._on_screen():
            self._render()

    def flush(self) -> None:
        """The end of a run: render every point now, without waiting :data:`RENDER_S` (also
        when hidden), and show the image as soon as it is drawn. Drawing stays in the worker."""
        self._flushing = True
        self._follow_up()

    def _follow_up(self) -> None:
        """Show the render in flight once drawn, then render again without waiting for a tick
        after :meth:`flush`, or when the label's size is not the one drawn (a resize)."""
        self._show_rendered()
        resized = self._size() != self._drawn_size and self._on_screen()
        if self._future is None and self._drawable() and (self._flushing or resized):
            self._render()
        if self._future is None:
            self._poll.stop()
            self._flushing = False

    def _size(self) -> tuple[int, int, float]:
        return self.width(), self.height(), self.devicePixelRatioF()

    def _on_screen(self) -> bool:
        # napari keeps a background tab "visible": its visible region is empty
        return self.isVisible() and not self.visibleRegion().isEmpty()

    def _drawable(self) -> bool:
        """Something new to draw, none in flight, points to draw and room for them."""
        return (
            self._dirty
            and self._future is None
            and bool(self.step_points or self._epochs)
            and self.width() >= MIN_SIZE_PX[0]
            and self.height() >= MIN_SIZE_PX[1]
        )

    def _render(self) -> None:
        self._dirty = self._due = False
        self._rendered_at = time.perf_counter()
        curves = tuple((list(x), list(y)) for x, y in self._curves)
        self._drawn_size = self._size()
        with holding(self._renderer.render) as render:
            self._future = self._executor.submit(render, curves, *self._drawn_size, self._epochs)
        self._poll.start()

    def _show_rendered(self) -> None:
        if self._future is None or not self._future.done():
            return
        future, self._future = self._future, None  # a failed render raises here once
        rgba, ratio = future.result()
        h, w = rgba.shape[:2]  # Qt objects are made here, in the GUI thread, only
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        image.setDevicePixelRatio(ratio)
        self._image = QPixmap.fromImage(image)
        self.setPixmap(self._image)
        self.redraws += 1

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._dirty = True  # rendered again at the new size once it settles
        self._resized.start()

    def paintEvent(self, event: Any) -> None:
        """The image, scaled down while it is larger than the label (a render at the new size
        follows): the legend and axis labels are never cut off."""
        room, image = self.contentsRect(), self._image
        if image is not None:
            ratio = image.devicePixelRatio()
            size = QSize(round(image.width() / ratio), round(image.height() / ratio))
            if size.width() > room.width() or size.height() > room.height():
                size.scale(room.size(), Qt.AspectRatioMode.KeepAspectRatio)
                target = QRect(room.topLeft(), size)
                target.moveCenter(room.center())
                painter = QPainter(self)
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
                painter.drawPixmap(target, image)
                painter.end()
                return
        super().paintEvent(event)  # the image at its size, centred, or the placeholder text


def _shutdown(executor: ThreadPoolExecutor, *_: Any) -> None:
    """Let the render thread end (extra arguments: Qt's ``destroyed(obj)``)."""
    executor.shutdown(wait=False)


def _append(curve: tuple[list[float], list[float]], x: float, y: float) -> None:
    curve[0].append(x)
    curve[1].append(y)


class _Renderer:
    """The figure, built and drawn only in the plot's worker thread (one render at a time)."""

    def __init__(self, colors: tuple[str, str] | None) -> None:
        self.colors = colors  # set by the GUI thread, applied by the next render
        self._applied: tuple[str, str] | None = None
        self.figure: Any = None
        self.laid_out: tuple = ()  # what the margins were fitted to (size, tick labels' lengths)

    def _build(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        # constrained: the margins fit the labels whatever the tick labels' width; it doubles a
        # draw's time, so it runs only when the size or the tick labels' lengths change
        self.layout = ConstrainedLayoutEngine(w_pad=4 / DPI, h_pad=4 / DPI, hspace=0.03)
        self.figure = figure = Figure(dpi=DPI, layout=self.layout)
        FigureCanvasAgg(figure)
        self.ax_loss, self.ax_psnr = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 2)}
        )
        self.lines = (
            self.ax_loss.plot([], [], color="0.6", lw=0.7, alpha=0.8, label="train")[0],
            self.ax_loss.plot([], [], color="C0", lw=1.5, label="smoothed")[0],
            self.ax_loss.plot([], [], "o-", color="C1", ms=3.5, label="validation")[0],
            self.ax_psnr.plot([], [], "o-", color="C2", ms=3.5, label="val PSNR")[0],
        )
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_loss.legend(  # one row above the curves, never over them
            fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, frameon=False,
            borderaxespad=0.1, borderpad=0.1, handlelength=1.4, columnspacing=1.0,
        )  # fmt: skip
        self.ax_psnr.set_ylabel("PSNR (dB)", fontsize=8)
        self.ax_psnr.set_xlabel("epoch", fontsize=8)
        self.psnr_note = self.ax_psnr.text(
            0.5, 0.5, "", transform=self.ax_psnr.transAxes, ha="center", va="center", fontsize=8
        )
        self.ax_loss.tick_params(labelbottom=False)
        integer_epochs(self.ax_psnr)  # shared by both axes
        for ax in (self.ax_loss, self.ax_psnr):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        figure.align_ylabels()

    def render(
        self, curves: Curves, width: int, height: int, ratio: float, epochs: int
    ) -> tuple[np.ndarray, float]:
        """The figure at ``width`` x ``height`` logical pixels (``ratio``: device pixel ratio)
        after ``epochs`` epochs (with or without validation points)."""
        with MATPLOTLIB_LOCK:  # the engine may be writing its charts at the same time
            return self._render(curves, width, height, ratio, epochs)

    def _render(
        self, curves: Curves, width: int, height: int, ratio: float, epochs: int
    ) -> tuple[np.ndarray, float]:
        if self.figure is None:
            self._build()
        figure, colors = self.figure, self.colors
        if colors is not None and colors != self._applied:
            _apply_colors(figure, *colors)
            self.psnr_note.set_color(colors[1])
            self._applied = colors
        figure.set_dpi(DPI * ratio)
        figure.set_size_inches(width / DPI, height / DPI)
        for line, (x, y) in zip(self.lines, curves, strict=True):
            line.set_data(x, y)
        losses = [*curves[0][1], *curves[2][1]]
        wide = bool(losses) and min(losses) > 0 and max(losses) > LOG_SPREAD * min(losses)
        if self.ax_loss.get_yscale() != ("log" if wide else "linear"):
            self.ax_loss.set_yscale("log" if wide else "linear")
        for ax in (self.ax_loss, self.ax_psnr):
            ax.relim()
            ax.autoscale_view()
        self.ax_loss.set_xlim(*_epoch_span([x for xs, _ in curves for x in xs]))
        has_psnr = bool(curves[3][0])
        self.ax_psnr.yaxis.set_visible(has_psnr)
        self.psnr_note.set_text("" if has_psnr else NO_PSNR if epochs else NO_PSNR_YET)
        ticks = tuple(
            len(label)
            for axis in (self.ax_loss.yaxis, self.ax_psnr.yaxis, self.ax_psnr.xaxis)
            for label in axis.get_major_formatter().format_ticks(axis.get_majorticklocs())
        )
        key = (width, height, ratio, has_psnr, ticks)
        figure.set_layout_engine(self.layout if key != self.laid_out else "none")
        self.laid_out = key
        figure.canvas.draw()
        return np.array(figure.canvas.buffer_rgba()), ratio


def _epoch_span(xs: list[float]) -> tuple[float, float]:
    """x limits from the whole epoch before the first point to the one after the last (the
    current epoch fills as it runs), with a little room for the end markers."""
    low = math.floor(min(xs, default=0.0))
    high = max(math.ceil(max(xs, default=1.0)), low + 1)
    pad = 0.02 * (high - low)
    return low - pad, high + pad


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
