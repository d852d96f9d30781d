"""The training engine as a user drives it: events, checkpoints, early stopping, non-finite
losses, reproducibility, stop / resume and fine-tuning, with tiny real U-Nets on real crops.

``tiny_config`` and ``run_events`` are shared with test_data.py and test_cli.py.
"""

from __future__ import annotations

import csv
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_ssl.config import Config
from napari_ssl.data.images import Image, as_image
from napari_ssl.engine import events as ev
from napari_ssl.engine import tasks
from napari_ssl.engine.checkpoints import read_checkpoint
from napari_ssl.engine.trainer import PreviewSpec, TrainingControl, train
from napari_ssl.job import describe
from napari_ssl.results import ResultsLayout


def tiny_config(ndim: int = 2, patch: int = 32, **train_values: object) -> Config:
    """A 3-level U-Net (4, 8, 16) on CPU: a few thousand parameters, well under a second/epoch."""
    cfg = Config()
    cfg.data.ndim = ndim
    cfg.data.patch_size = (16, patch, patch) if ndim == 3 else (patch, patch)
    cfg.model.feature_maps = (4, 8, 16)
    cfg.model.dropout = (0.0, 0.0, 0.0)
    cfg.model.z_down = (2, 2)
    cfg.system.device = "cpu"
    cfg.train.batch_size = 4
    cfg.train.epochs = 2
    cfg.train.patches_per_epoch = 8
    cfg.train.log_every = 1
    for key, value in train_values.items():
        setattr(cfg.train, key, value)
    return cfg


def sem_crops(sem: np.ndarray, n: int = 1, size: int = 96) -> list[Image]:
    return [as_image(sem[i * size : (i + 1) * size, :size].copy(), f"sem{i}", 2) for i in range(n)]


def run_events(cfg: Config, images: list[Image], layout: ResultsLayout, **kw) -> list[ev.Event]:
    return list(train(cfg, images, layout=layout, **kw))


def step_losses(events: list[ev.Event]) -> list[float]:
    return [e.loss for e in events if isinstance(e, ev.Step)]


def of_type(events: list[ev.Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def layout(tmp_path: Path) -> ResultsLayout:
    return ResultsLayout(tmp_path, "job", 1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run ~10x slower with 2 threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing PNGs takes most of a tiny epoch; test_cli.py checks the charts."""
    from napari_ssl import charts

    monkeypatch.setattr(charts, "write_charts", lambda *a, **k: None)
    monkeypatch.setattr(charts, "write_model_plot", lambda *a, **k: None)


def test_event_order_and_checkpoints(sem_2d: np.ndarray, layout: ResultsLayout) -> None:
    events = run_events(tiny_config(), sem_crops(sem_2d), layout)
    kinds = [type(e).__name__ for e in events]
    collapsed = [k for k, _ in itertools.groupby(kinds)]
    assert collapsed == [
        "Started", "Step", "CheckpointSaved", "Epoch", "Step", "CheckpointSaved", "Epoch",
        "Finished",
    ]  # fmt: skip
    started = events[0]
    assert (started.epochs, started.steps_per_epoch, started.start_epoch) == (2, 2, 0)
    assert started.device == "cpu" and started.precision == "fp32" and started.parameters > 0
    assert [s.step for s in of_type(events, ev.Step)] == [1, 2, 3, 4]
    saved = of_type(events, ev.CheckpointSaved)
    assert {s.kind for s in saved} == {"best", "last"}
    epochs = of_type(events, ev.Epoch)
    assert [e.epoch for e in epochs] == [1, 2]
    for e in epochs:
        assert np.isfinite([e.train_loss, e.val_loss, *e.metrics.values()]).all()
        assert {"val_psnr", "val_ssim"} <= set(e.metrics) and e.patches_per_s > 0
    done = events[-1]
    assert done.epochs_run == 2 and not done.early_stopped
    assert Path(done.best_checkpoint) == layout.best_checkpoint
    assert Path(done.last_checkpoint) == layout.last_checkpoint
    for path in (layout.best_checkpoint, layout.last_checkpoint):
        data = torch.load(path, map_location="cpu", weights_only=True)
        assert {"model", "model_build_kwargs", "epoch", "cfg", "normalization"} <= set(data)
    assert torch.load(layout.last_checkpoint, weights_only=True)["epoch"] == 2
    best_epoch = max(e.epoch for e in epochs if e.best)
    assert torch.load(layout.best_checkpoint, weights_only=True)["epoch"] == best_epoch


def test_early_stopping_on_val_loss(sem_2d: np.ndarray, layout: ResultsLayout) -> None:
    # lr 1e-12 leaves the weights unchanged: the val loss never improves after epoch 1
    cfg = tiny_config(epochs=10, patience=2, lr=1e-12, patches_per_epoch=4)
    events = run_events(cfg, sem_crops(sem_2d), layout)
    epochs = of_type(events, ev.Epoch)
    assert [e.best for e in epochs] == [True, False, False]
    done = events[-1]
    assert isinstance(done, ev.Finished) and done.early_stopped and done.epochs_run == 3
    assert torch.load(layout.best_checkpoint, weights_only=True)["epoch"] == 1
    assert torch.load(layout.last_checkpoint, weights_only=True)["epoch"] == 3


def test_non_finite_losses_are_skipped_and_counted(
    sem_2d: np.ndarray, layout: ResultsLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = itertools.count(1)
    real_loss = tasks.CrappifyTask.loss

    def loss_with_a_nan(self, *args):  # the second step's loss is NaN
        loss = real_loss(self, *args)
        return loss * float("nan") if next(calls) == 2 else loss

    monkeypatch.setattr(tasks.CrappifyTask, "loss", loss_with_a_nan)
    cfg = tiny_config(epochs=2, patches_per_epoch=12)
    events = run_events(cfg, sem_crops(sem_2d), layout)
    assert isinstance(events[-1], ev.Finished) and events[-1].epochs_run == 2
    steps = of_type(events, ev.Step)
    assert [s.skipped_nonfinite for s in steps] == [0, 1, 1, 1, 1, 1]
    first = of_type(events, ev.Epoch)[0]
    finite = [s.loss for s in steps[:3] if s.skipped_nonfinite == 0 or s.step != 2]
    assert first.train_loss == pytest.approx(np.mean(finite), rel=1e-5)  # mean of finite steps
    assert [e.skipped_nonfinite for e in of_type(events, ev.Epoch)] == [1, 1]
    assert "1 non-finite losses skipped" in describe(first)
    weights = read_checkpoint(layout.last_checkpoint)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize(
    ("patches_per_s", "shown"),
    [(2 / 5.1, "0.39"), (0.04, "0.04"), (4.2, "4.2"), (9.99, "10"), (250.4, "250")],
)
def test_terminal_rates_keep_their_digits(patches_per_s: float, shown: str) -> None:
    epoch = ev.Epoch(1, 0.5, 0.4, seconds=5.1, patches_per_s=patches_per_s)
    assert f", {shown} patches/s, 5.1s," in describe(epoch)


def test_terminal_counts_one_epoch_in_the_singular() -> None:
    def started(epochs: int) -> str:
        return describe(ev.Started(epochs, 3, 0, "cpu", "fp32", "unet", 1000, 12))

    def finished(epochs: int) -> str:
        return describe(ev.Finished(epochs, 0.4, "best.pth", "last.pth", 5.0))

    assert ": 1 epoch x 3 steps" in started(1) and ": 2 epochs x 3 steps" in started(2)
    assert finished(1).startswith("finished 1 epoch in 0m05s;")
    assert finished(2).startswith("finished 2 epochs in 0m05s;")


def test_seeded_cpu_runs_reproduce(sem_2d: np.ndarray, tmp_path: Path) -> None:
    images = sem_crops(sem_2d)
    runs = [
        run_events(tiny_config(), images, ResultsLayout(tmp_path, f"r{k}", 1)) for k in range(2)
    ]
    assert step_losses(runs[0]) == step_losses(runs[1])
    assert of_type(runs[0], ev.Epoch)[-1].val_loss == of_type(runs[1], ev.Epoch)[-1].val_loss
    other = tiny_config()
    other.system.seed = 1
    assert step_losses(run_events(other, images, ResultsLayout(tmp_path, "r2", 1))) != (
        step_losses(runs[0])
    )


def test_stop_then_resume(sem_2d: np.ndarray, layout: ResultsLayout) -> None:
    cfg = tiny_config(epochs=3, patches_per_epoch=12)
    images = sem_crops(sem_2d)
    control = TrainingControl()
    events = []
    for event in train(cfg, images, layout=layout, control=control):
        events.append(event)
        if isinstance(event, ev.Step) and event.step == 5:
            control.stop()  # from inside the event loop, mid-epoch 2
    stopped = events[-1]
    assert isinstance(stopped, ev.Stopped)
    assert (stopped.epoch, stopped.step) == (2, 5)  # at the next step boundary
    assert not of_type(events, ev.Finished)
    last = torch.load(stopped.last_checkpoint, weights_only=True)
    assert last["train_state"]["partial_epoch"] and last["train_state"]["epoch"] == 1

    resumed = run_events(cfg, images, layout, resume=stopped.last_checkpoint)
    started = resumed[0]
    assert isinstance(started, ev.Started) and started.start_epoch == 1
    assert (
        f"resumed from {layout.last_checkpoint.name}: epoch 2, stopped part-way, runs again "
        "whole from the weights it had reached" in started.notes
    )
    assert [e.epoch for e in of_type(resumed, ev.Epoch)] == [2, 3]
    assert of_type(resumed, ev.Step)[0].step == 4  # epoch 2 restarts from its first step
    assert isinstance(resumed[-1], ev.Finished) and resumed[-1].epochs_run == 3
    with open(layout.train_log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    history = torch.load(layout.last_checkpoint, weights_only=True)["train_state"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    first = of_type(events, ev.Epoch)[0]
    assert history[0]["train_loss"] == pytest.approx(first.train_loss)
    assert float(rows[0]["val_loss"]) == pytest.approx(first.val_loss)


def test_a_stop_between_two_epochs_resumes_after_the_finished_one(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    images = sem_crops(sem_2d)
    whole = run_events(tiny_config(epochs=2), images, ResultsLayout(tmp_path, "whole", 1))
    part, control = ResultsLayout(tmp_path, "part", 1), TrainingControl()
    first = []
    for event in train(tiny_config(epochs=2), images, layout=part, control=control):
        first.append(event)
        if isinstance(event, ev.Epoch):
            control.stop()  # before epoch 2's first step
    assert isinstance(first[-1], ev.Stopped) and first[-1].epoch == 2
    state = torch.load(part.last_checkpoint, weights_only=True)["train_state"]
    assert (state["epoch"], state["partial_epoch"]) == (1, False)
    rest = run_events(tiny_config(epochs=2), images, part, resume=part.last_checkpoint)
    assert f"resumed from {part.last_checkpoint.name} after epoch 1" in rest[0].notes
    assert step_losses(first) + step_losses(rest) == step_losses(whole)


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    images = sem_crops(sem_2d)
    whole = run_events(tiny_config(epochs=3), images, ResultsLayout(tmp_path, "whole", 1))
    part = ResultsLayout(tmp_path, "part", 1)
    first = run_events(tiny_config(epochs=2), images, part)
    rest = run_events(tiny_config(epochs=3), images, part, resume=part.last_checkpoint)
    assert step_losses(first) + step_losses(rest) == step_losses(whole)
    assert of_type(rest, ev.Epoch)[-1].val_loss == of_type(whole, ev.Epoch)[-1].val_loss


def test_pause_resume_and_stop_while_paused(sem_2d: np.ndarray, layout: ResultsLayout) -> None:
    control = TrainingControl()
    cfg = tiny_config(epochs=2, patches_per_epoch=16)
    events, waited = [], 0.0
    for event in train(cfg, sem_crops(sem_2d), layout=layout, control=control):
        events.append(event)
        if isinstance(event, ev.Step) and event.step == 1:
            control.pause()  # the GUI thread resumes a little later
            threading.Timer(0.3, control.resume).start()
            t0 = time.perf_counter()
        elif isinstance(event, ev.Step) and event.step == 2:
            waited = time.perf_counter() - t0
            control.pause()
            threading.Timer(0.1, control.stop).start()  # stop wakes a paused loop
    assert waited >= 0.25
    assert isinstance(events[-1], ev.Stopped) and events[-1].step == 2
    assert torch.load(layout.last_checkpoint, weights_only=True)["train_state"]["partial_epoch"]


def test_time_paused_counts_in_no_epoch_time_nor_eta(
    sem_2d: np.ndarray, layout: ResultsLayout
) -> None:
    control = TrainingControl()
    cfg = tiny_config(epochs=2, patches_per_epoch=8, batch_size=2, log_every=1)
    events = []
    for event in train(cfg, sem_crops(sem_2d), layout=layout, control=control):
        events.append(event)
        if isinstance(event, ev.Started):
            t_epoch = time.perf_counter()
        if isinstance(event, ev.Step) and event.step == 1:
            control.pause()
            threading.Timer(2.0, control.resume).start()
        if isinstance(event, ev.Epoch) and event.epoch == 1:
            wall = time.perf_counter() - t_epoch
    first, steps = of_type(events, ev.Epoch)[0], of_type(events, ev.Step)
    assert wall > 2.0 and first.seconds < wall - 1.8  # the 2 s pause is not training time
    assert steps[1].eta_s < steps[0].eta_s + 1.0  # the ETA after the pause did not jump by it


def test_fine_tune_from_another_runs_checkpoint(sem_2d: np.ndarray, tmp_path: Path) -> None:
    images = sem_crops(sem_2d)
    source = ResultsLayout(tmp_path, "pretrained", 1)
    run_events(tiny_config(epochs=2), images, source)
    cfg = tiny_config(epochs=1, lr=1e-12)  # weights stay as loaded
    cfg.model.load_checkpoint = True
    cfg.model.checkpoint_file = str(source.best_checkpoint)
    target = ResultsLayout(tmp_path, "finetune", 1)
    events = run_events(cfg, images, target)
    started = events[0]
    assert isinstance(started, ev.Started) and started.start_epoch == 0
    assert any("weights loaded" in n for n in started.notes)
    assert [e.epoch for e in of_type(events, ev.Epoch)] == [1]
    loaded = torch.load(source.best_checkpoint, weights_only=True)["model"]
    tuned = torch.load(target.last_checkpoint, weights_only=True)
    assert tuned["epoch"] == 1
    for key, value in loaded.items():
        torch.testing.assert_close(tuned["model"][key], value, rtol=0, atol=1e-6)


def test_checkpoint_of_another_architecture_fails_cleanly(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    images = sem_crops(sem_2d)
    source = ResultsLayout(tmp_path, "res", 1)
    other = tiny_config(epochs=1)
    other.model.architecture = "resunet"
    run_events(other, images, source)
    cfg = tiny_config(epochs=1)
    cfg.model.load_checkpoint = True
    cfg.model.checkpoint_file = str(source.last_checkpoint)
    target = ResultsLayout(tmp_path, "unet", 1)
    events = run_events(cfg, images, target)
    assert len(events) == 1 and isinstance(events[0], ev.Failed)
    message = events[0].message
    assert "res_1-checkpoint-last.pth" in message and "MODEL" in message and "\n" not in message
    assert not [p for p in target.root.rglob("*") if p.is_file()]  # nothing written


def test_eta_counts_the_steps_done_in_this_run(
    sem_2d: np.ndarray, layout: ResultsLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a clock that ticks once per call, later epochs must not inflate the ETA."""
    from napari_ssl.engine import trainer

    clock = itertools.count()
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: float(next(clock)))
    events = run_events(tiny_config(epochs=3, patches_per_epoch=16), sem_crops(sem_2d), layout)
    steps = of_type(events, ev.Step)  # 4 per epoch
    rate = [s.eta_s / (12 - s.step) for s in steps if s.step < 12]  # seconds per step left
    assert max(rate) < 3 * min(rate), rate


def test_3d_training_on_nuclei(nuclei_3d: np.ndarray, layout: ResultsLayout) -> None:
    image = as_image(nuclei_3d[:24, 64:128, 64:128].copy(), "nuclei", 3)
    events = run_events(tiny_config(ndim=3, epochs=1), [image], layout)
    assert isinstance(events[-1], ev.Finished)
    assert np.isfinite(of_type(events, ev.Epoch)[0].val_loss)
    assert torch.load(layout.best_checkpoint, weights_only=True)["cfg"]["PROBLEM"]["NDIM"] == "3D"


def test_live_preview_events(sem_2d: np.ndarray, layout: ResultsLayout) -> None:
    spec = PreviewSpec(0, (slice(0, 48), slice(0, 40)), every_s=0.0)
    events = run_events(tiny_config(epochs=1), sem_crops(sem_2d), layout, preview=spec)
    previews = of_type(events, ev.Preview)
    assert previews and all(p.image.shape == (1, 48, 40) for p in previews)
    assert all(np.isfinite(p.image).all() for p in previews)


def test_continuing_rewrites_the_config_and_needs_epochs_left(
    sem_2d: np.ndarray, layout: ResultsLayout
) -> None:
    """A resumed run's config files describe it as it trains now; a run with no epochs left
    is refused before anything is written."""
    images = sem_crops(sem_2d)
    run_events(tiny_config(epochs=2), images, layout)
    saved = layout.config_file.read_text()
    refused = run_events(tiny_config(epochs=2), images, layout, resume=layout.last_checkpoint)
    assert isinstance(refused[-1], ev.Failed) and len(refused) == 1
    assert refused[-1].message == (
        f"'{layout.last_checkpoint.name}' has trained 2 epochs already: to continue it, raise "
        "train.epochs (BiaPy TRAIN.EPOCHS, 2) above 2"
    )
    assert layout.config_file.read_text() == saved
    more = run_events(tiny_config(epochs=3), images, layout, resume=layout.last_checkpoint)
    assert isinstance(more[-1], ev.Finished)
    assert [row["epoch"] for row in more[0].history] == [1, 2]  # the epochs before, for plots
    assert "EPOCHS: 3" in layout.config_file.read_text() and "EPOCHS: 2" in saved
