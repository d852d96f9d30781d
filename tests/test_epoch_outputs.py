"""Per-epoch outputs: the train log every epoch, charts throttled but always at the end, and
TensorBoard scalars when tensorboard is installed."""

from __future__ import annotations

import pytest

from napari_ssl import results
from napari_ssl.engine import setup
from napari_ssl.results import ResultsLayout
from test_training import one_thread, run_events, sem_crops, tiny_config  # noqa: F401


class RecordingWriter:
    """Stands in for torch's SummaryWriter (tensorboard is an optional dependency)."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.scalars.append((key, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_tensorboard_gets_each_epoch_row(tmp_path, sem_2d, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = RecordingWriter()
    monkeypatch.setattr(results, "make_tensorboard_writer", lambda layout: writer)
    run_events(tiny_config(epochs=3), sem_crops(sem_2d), ResultsLayout(tmp_path, "job", 1))
    steps = sorted({step for key, _, step in writer.scalars if key == "val_loss"})
    assert steps == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_psnr", "lr"} <= {key for key, _, _ in writer.scalars}
    assert writer.closed


def test_charts_are_throttled_but_written_at_the_end(tmp_path, sem_2d, monkeypatch) -> None:
    monkeypatch.setattr(setup, "CHARTS_EVERY_S", 3600.0)
    drawn: list[int] = []
    real = setup.Run.write_charts

    def counting(run: setup.Run) -> None:
        drawn.append(len(run.state.history))
        real(run)

    monkeypatch.setattr(setup.Run, "write_charts", counting)
    layout = ResultsLayout(tmp_path, "job", 1)
    run_events(tiny_config(epochs=3), sem_crops(sem_2d), layout)
    assert drawn == [1, 3]  # the first epoch (nothing drawn yet) and the last
    assert layout.loss_chart.is_file()
    log = layout.train_log.read_text().splitlines()
    assert len(log) == 4  # header + every epoch, unthrottled
