"""The CLI's chart PNGs: whole epochs on the x axis, also for one or two epochs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("epochs", [1, 2, 7, 200])
def test_chart_epoch_ticks_are_whole_epochs(epochs):
    from napari_ssl.charts import _curve_figure

    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e} for e in range(1, epochs + 1)]
    figure = _curve_figure(history, ("train_loss", "val_loss"), "loss", "loss")
    (ax,) = figure.axes
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(t == int(t) for t in ticks)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    assert ticks[0] <= 1 and 0 <= epochs - ticks[-1] < step
