"""Loss plot: the smoothed train curve is a debiased exponential moving average; renders at the
label's size, never cut off, and the first epoch without waiting for the render throttle."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from gui_helpers import SCREENSHOTS

from napari_ssl.results import ResultsLayout

pytestmark = pytest.mark.gui


def test_smoothed_loss_is_the_debiased_moving_average(qtbot):
    from napari_ssl.widgets.loss_plot import SMOOTHING, LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    losses = [4.0, 2.0, math.nan, 1.0, 3.0]  # the NaN is left out and does not count as a step
    for i, loss in enumerate(losses):
        plot.add_step(i / 10, loss)
    beta = SMOOTHING
    expected = [
        4.0,  # the first value is the first loss, not (1 - beta) * loss
        (beta * (1 - beta) * 4 + (1 - beta) * 2) / (1 - beta**2),
        (beta**2 * (1 - beta) * 4 + beta * (1 - beta) * 2 + (1 - beta) * 1) / (1 - beta**3),
        (
            beta**3 * (1 - beta) * 4
            + beta**2 * (1 - beta) * 2
            + beta * (1 - beta) * 1
            + (1 - beta) * 3
        )
        / (1 - beta**4),
    ]
    assert plot.step_points == 4
    assert plot.smoothed == pytest.approx(expected, rel=1e-12)
    assert plot.smoothed[1] == pytest.approx((4 * beta + 2) / (1 + beta))  # 2.95, not 3.8
    plot.clear()
    for loss in (5.0, 5.0, 5.0):
        plot.add_step(0.0, loss)
    assert plot.smoothed == pytest.approx([5.0] * 3, rel=1e-12)  # no pull towards 0 after clear


def _shown_plot(qtbot, size=(400, 300)):
    from napari_ssl.widgets.loss_plot import LossPlot

    plot = LossPlot(colors=("#262930", "#f0f1f2"))
    qtbot.addWidget(plot)
    plot.resize(*size)
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def _spy(plot, gate: threading.Event | None = None) -> list:
    """The curves of every render, recorded in the render thread; the first render waits for
    ``gate`` (a render in flight)."""
    received: list = []
    render = plot._renderer.render

    def spy(curves, *size):
        if gate is not None and not received:
            gate.wait(5)
        received.append(curves)
        return render(curves, *size)

    plot._renderer.render = spy
    return received


def _steps(plot, first: int, last: int, per_epoch: int) -> None:
    for step in range(first, last + 1):
        plot.add_step(step / per_epoch, 2.0 / step)
        if step % per_epoch == 0:
            plot.add_epoch(step // per_epoch, 1.0 / step, 20.0 + step / per_epoch)


@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "render-in-flight"])
def test_flush_shows_the_whole_run_at_once(qtbot, in_flight):
    """At the end of a run the last epoch's points are drawn within a second, not RENDER_S;
    a render still in flight then (without them) is followed by one with them."""
    from napari_ssl.widgets.loss_plot import RENDER_S

    plot = _shown_plot(qtbot)
    gate = threading.Event()
    received = _spy(plot, gate)
    _steps(plot, 1, 20, per_epoch=10)
    plot.tick()  # a render of the first two epochs: the next one waits RENDER_S
    if not in_flight:
        gate.set()
        qtbot.waitUntil(lambda: plot.redraws == 1, timeout=2000)  # shown as soon as drawn
    _steps(plot, 21, 29, per_epoch=10)  # the last epoch's steps
    plot.tick()  # throttled: nothing new now
    _steps(plot, 30, 30, per_epoch=10)  # its end (val loss and PSNR) and the run's
    redraws = plot.redraws
    start = time.perf_counter()
    plot.flush()
    gate.set()
    qtbot.waitUntil(lambda: not plot._poll.isActive(), timeout=1500)
    assert time.perf_counter() - start < min(1.5, RENDER_S)
    assert len(received) == 2 and plot.redraws == redraws + (2 if in_flight else 1)
    raw, smoothed, val, psnr = received[-1]
    assert len(raw[0]) == len(smoothed[0]) == 30 and raw[0][-1] == 3.0
    assert val[0] == psnr[0] == [1, 2, 3]
    assert not plot.pixmap().isNull()


def test_placeholder_before_the_first_step(qtbot):
    """No axes without data: a line of text; the plot replaces it, clear() brings it back."""
    from napari_ssl.widgets.loss_plot import PLACEHOLDER

    plot = _shown_plot(qtbot)
    received = _spy(plot)
    plot.add_step(0.1, math.nan)  # left out: still nothing to draw
    plot.tick()
    plot.flush()
    qtbot.wait(200)
    assert not received and plot.redraws == 0 and plot.text() == PLACEHOLDER
    plot.add_step(0.1, 1.0)
    plot.flush()
    qtbot.waitUntil(lambda: plot.redraws == 1, timeout=1000)
    assert plot.text() == "" and not plot.pixmap().isNull()
    plot.clear()
    assert plot.text() == PLACEHOLDER


def _render(curves, width: int, height: int):
    from napari_ssl.widgets.loss_plot import _Renderer

    renderer = _Renderer(("#262930", "#f0f1f2"))
    renderer.render(curves, width, height, 1.0, len(curves[2][0]))
    return renderer


@pytest.mark.parametrize("size", [(400, 300), (300, 160), (220, 220)])
def test_labels_fit_at_any_tick_width(size):
    """Wide tick labels (tiny losses, large PSNR) push the axes in, never the labels out."""
    steps = [i / 10 for i in range(1, 21)]
    losses = [1e-4 * (2 - x / 2) for x in steps]  # linear scale: ticks such as 0.000175
    curves = (
        (steps, losses),
        (steps, losses),
        ([1, 2], [1.2e-4, 1.0e-4]),
        ([1, 2], [123456.5, 123457.25]),
    )
    renderer = _render(curves, *size)
    figure = renderer.figure
    box = figure.bbox
    r = figure.canvas.get_renderer()
    texts = [renderer.ax_loss.yaxis.label, renderer.ax_psnr.yaxis.label]
    texts += [renderer.ax_psnr.xaxis.label, *renderer.ax_loss.get_legend().get_texts()]
    for ax in (renderer.ax_loss, renderer.ax_psnr):
        texts += [t for t in ax.get_yticklabels() if t.get_text()]
    assert {"loss", "PSNR (dB)", "epoch"} <= {t.get_text() for t in texts}
    for text in texts:
        extent = text.get_window_extent(r)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()


@pytest.mark.parametrize("epochs", [1, 2, 30])
def test_epoch_ticks_are_whole_epochs(epochs):
    steps = [i / 8 for i in range(1, 8 * epochs + 1)]
    val = list(range(1, epochs + 1))
    curves = ((steps, [1.0] * len(steps)),) * 2 + ((val, [0.5] * epochs), (val, [20.0] * epochs))
    ax = _render(curves, 400, 300).ax_psnr
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert len(ticks) >= 2 and all(t == int(t) for t in ticks)
    assert ticks[0] == 0 and 0 <= epochs - ticks[-1] < ticks[1] - ticks[0]


def test_the_psnr_panel_says_when_there_is_no_validation():
    from napari_ssl.widgets.loss_plot import NO_PSNR, NO_PSNR_YET, _Renderer

    steps = ([0.5, 1.0], [1.0, 0.9])
    renderer = _Renderer(None)
    for epochs, note in ((0, NO_PSNR_YET), (1, NO_PSNR)):  # an epoch without validation data
        renderer.render((steps, steps, ([], []), ([], [])), 300, 200, 1.0, epochs)
        assert renderer.psnr_note.get_text() == note


def test_each_epoch_is_shown_on_the_tick_that_reports_it(qtbot):
    """The PSNR panel shows an epoch on the tick that puts it in the dock's status, each image
    as soon as it is drawn (no later tick needed); steps alone wait :data:`RENDER_S`."""
    plot = _shown_plot(qtbot)
    received = _spy(plot)
    for step in range(1, 10):
        plot.add_step(step / 10, 1.0 / step)
    plot.tick()
    qtbot.waitUntil(lambda: plot.redraws == 1, timeout=2000)
    plot.add_step(1.0, 0.1)
    plot.add_epoch(1, 0.5, 21.0)
    plot.tick()  # well within RENDER_S of the first render
    qtbot.waitUntil(lambda: plot.redraws == 2, timeout=2000)
    assert received[-1][2:] == (([1], [0.5]), ([1], [21.0]))
    plot.add_step(1.1, 0.2)
    plot.tick()
    qtbot.wait(300)
    assert len(received) == 2  # throttled
    plot.add_epoch(2, 0.4, 22.0)
    plot.tick()
    qtbot.waitUntil(lambda: plot.redraws == 3, timeout=2000)
    assert received[-1][3] == ([1, 2], [21.0, 22.0])


def _framed(width: int, height: int, ratio: float) -> np.ndarray:
    """A dark RGBA image with a 4 px red frame: where the legend and the x label would be."""
    rgba = np.full((round(height * ratio), round(width * ratio), 4), (20, 20, 20, 255), np.uint8)
    for edge in (np.s_[:4], np.s_[-4:], np.s_[:, :4], np.s_[:, -4:]):
        rgba[edge] = (255, 0, 0, 255)
    return rgba


def _red(image, xs, ys) -> int:
    return sum(image.pixelColor(x, y).red() > 150 > image.pixelColor(x, y).green()
               for x in xs for y in ys)  # fmt: skip


def test_a_resize_renders_at_the_new_size_and_cuts_nothing_meanwhile(qtbot):
    """No tick needed: the new size is rendered once it settles; until then the image drawn for
    the old size is scaled down into the label, its edges (legend, x label) all visible."""
    plot = _shown_plot(qtbot, (400, 300))
    sizes: list[tuple[int, int]] = []
    gate = threading.Event()
    gate.set()

    def framed(curves, width, height, ratio, epochs):
        sizes.append((width, height))
        gate.wait(5)
        return _framed(width, height, ratio), ratio

    plot._renderer.render = framed
    _steps(plot, 1, 10, per_epoch=10)
    plot.tick()
    qtbot.waitUntil(lambda: plot.redraws == 1, timeout=2000)
    gate.clear()  # the render at the new size waits: the old image stays meanwhile
    plot.resize(400, 200)
    qtbot.waitUntil(lambda: len(sizes) == 2, timeout=2000)
    assert sizes == [(400, 300), (400, 200)]
    shown = plot.grab().toImage()
    assert _red(shown, range(100, 300), [0, 199]) > 300  # top and bottom: scaled, not cut
    assert _red(shown, range(64, 70), range(20, 180)) > 100  # its sides: 267 px apart
    assert _red(shown, range(330, 336), range(20, 180)) > 100
    gate.set()
    qtbot.waitUntil(lambda: plot.redraws == 2, timeout=2000)
    pixmap = plot.pixmap()
    ratio = pixmap.devicePixelRatio()
    assert (pixmap.width() / ratio, pixmap.height() / ratio) == (400, 200)
    assert _red(plot.grab().toImage(), [0, 399], range(10, 190)) > 300  # at its size again


def test_the_train_dock_shows_the_first_epoch_at_its_size(qtbot, viewer, docks, monkeypatch):
    """As in the review: the status grows to more lines with epoch 1's PSNR and the plot shrinks;
    the plot then shows that epoch's PSNR at its new size without waiting for the throttle (here
    made endless, so that only an epoch or a resize can make it render)."""

    from napari_ssl.engine import events as ev
    from napari_ssl.widgets import loss_plot

    train = docks["Train"]
    viewer.window._wrapped_dock_widgets["Train"].raise_()
    plot = train.plot
    received = _spy(plot)
    train._layout = ResultsLayout("results", "ssl", 1)
    train._on_event(ev.Started(3, 10, 0, "cpu", "fp32", "unet", 1000, 40))
    for step in range(1, 10):
        train._on_event(ev.Step(1, step, 1.0 / step, 1e-4, 30.0, 60.0))
    qtbot.waitUntil(lambda: plot.redraws > 0 and not plot._poll.isActive(), timeout=10_000)
    monkeypatch.setattr(loss_plot, "RENDER_S", float("inf"))
    height = plot.height()
    train._notes = ["note: one", "note: two", "note: three"]  # the status grows
    train._on_event(ev.Step(1, 10, 0.1, 1e-4, 30.0, 60.0))
    train._on_event(ev.Epoch(1, 0.2, 0.3, {"val_psnr": 20.5}, 1.0, 40.0, 100.0))
    qtbot.waitUntil(lambda: "val PSNR 20.50 dB" in train.status.text(), timeout=5000)

    def current() -> bool:
        pixmap = plot.pixmap()
        size = (pixmap.width() / pixmap.devicePixelRatio(),
                pixmap.height() / pixmap.devicePixelRatio())  # fmt: skip
        drawn = received[-1][3] == ([1], [20.5]) and size == (plot.width(), plot.height())
        return drawn and plot.height() < height  # shrunk, and drawn at that size

    qtbot.waitUntil(current, timeout=10_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert train.grab().save(str(SCREENSHOTS / "train_dock_first_epoch.png"))
