"""Loss plot: the smoothed train curve is a debiased exponential moving average."""

from __future__ import annotations

import math
import threading
import time

import pytest

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
        qtbot.waitUntil(lambda: plot._future.done(), timeout=2000)
    _steps(plot, 21, 30, per_epoch=10)  # the last epoch: its step curve, val loss and PSNR
    plot.tick()  # throttled: nothing new now
    redraws = plot.redraws
    start = time.perf_counter()
    plot.flush()
    gate.set()
    qtbot.waitUntil(lambda: not plot._final.isActive(), timeout=1500)
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
    renderer.render(curves, width, height, 1.0)
    return renderer


@pytest.mark.parametrize("size", [(400, 300), (220, 220)])
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
