"""Loss plot: the smoothed train curve is a debiased exponential moving average."""

from __future__ import annotations

import math

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
