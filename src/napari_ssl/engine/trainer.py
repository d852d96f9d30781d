"""The training loop: a generator of typed events, read top to bottom.

``train(cfg, images)`` validates, builds the data, model and optimizer, then loops over epochs and
steps, yielding :mod:`napari_ssl.engine.events`. The CLI prints the events; the GUI's thread worker
relays them. A :class:`TrainingControl` pauses, resumes or stops the loop at step boundaries.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from napari_ssl.config import Config, ConfigError
from napari_ssl.data.images import DataError, Image, check_consistent
from napari_ssl.engine import distributed as dist
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import CheckpointError
from napari_ssl.engine.setup import Run, prepare_run
from napari_ssl.results import ResultsLayout

OUT_OF_MEMORY = (
    "out of GPU memory: lower the batch size or the patch size (or choose a smaller model), "
    "then start again."
)


class TrainingControl:
    """Thread-safe pause / resume / stop requests, honoured at step boundaries."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused loop must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> float:
        """Block until resumed or stopped; the seconds spent paused."""
        start = time.perf_counter()
        while not self._running.wait(timeout=0.1):
            pass
        return time.perf_counter() - start


@dataclass(frozen=True)
class PreviewSpec:
    """Region of one training image to reconstruct every ``every_s`` seconds as a live preview."""

    image_index: int
    region: tuple[slice, ...]
    every_s: float = 5.0


def train(
    cfg: Config,
    images: list[Image],
    *,
    layout: ResultsLayout | None = None,
    control: TrainingControl | None = None,
    resume: str | Path | None = None,
    preview: PreviewSpec | None = None,
) -> Iterator[ev.Event]:
    """Pretrain on ``images``; yields events and ends with Finished, Stopped or Failed."""
    control = control or TrainingControl()
    try:
        cfg.validate()
        check_consistent(images)
        run = prepare_run(cfg, images, layout, resume)
    except (ConfigError, DataError, CheckpointError, ValueError) as err:
        yield ev.Failed(str(err))
        return
    except torch.OutOfMemoryError:
        yield ev.Failed(OUT_OF_MEMORY)
        return
    try:
        with run.sampler.prefetching(cfg.system.num_workers):
            last = yield from _loop(run, control, preview)
        yield last  # Finished or Stopped, once the reader threads have ended
    except torch.OutOfMemoryError:
        yield ev.Failed(OUT_OF_MEMORY + " The last checkpoint is kept.")
    finally:
        run.release()


def _loop(
    run: Run, control: TrainingControl, preview: PreviewSpec | None
) -> Generator[ev.Event, None, ev.Finished | ev.Stopped]:
    """Epochs and steps; yields progress and returns the final event."""
    cfg, model, opt, schedule = run.cfg, run.model, run.optimizer, run.schedule
    tc = cfg.train
    steps = run.steps_per_epoch
    yield run.started_event()
    t_start = time.perf_counter()
    last_preview = -math.inf
    step = run.state.epoch * steps
    for epoch in range(run.state.epoch, tc.epochs):
        model.train()
        t_epoch = time.perf_counter()
        loss_sum = torch.zeros((), device=run.device)
        nonfinite = torch.zeros((), device=run.device, dtype=torch.long)
        window_sum, window_n, window_t = torch.zeros((), device=run.device), 0, time.perf_counter()
        window_good = torch.zeros((), device=run.device, dtype=torch.long)
        for i in range(steps):
            if control.paused:  # time paused counts in no rate, ETA or epoch time
                paused = control.wait_while_paused()
                t_start, t_epoch = t_start + paused, t_epoch + paused
                window_t = time.perf_counter()
            if control.stopped:
                run.write_charts()
                path = run.save_last(epoch, partial=i > 0)  # at i == 0: after epoch `epoch`
                return ev.Stopped(epoch + 1, step, str(path))
            step += 1
            schedule.before_step(epoch + i / steps)
            lr = opt.param_groups[0]["lr"]  # this step's (onecycle moves on after it)
            raw, idx = run.sampler.sample(tc.batch_size)
            if tc.augment:
                raw = run.augment(raw)
            with run.autocast():
                loss = run.task.loss(model, run.to_memory_format(raw), idx, run.task_generator)
            finite = torch.isfinite(loss)
            run.backward_and_step(loss, finite)
            schedule.after_step()
            loss = torch.where(finite, loss.detach(), torch.zeros_like(loss))
            loss_sum += loss
            window_sum += loss
            window_good += finite.long()
            nonfinite += (~finite).long()
            window_n += 1
            if window_n == tc.log_every or i == steps - 1:
                now = time.perf_counter()
                rate = window_n * tc.batch_size * dist.world_size() / max(now - window_t, 1e-9)
                done = step - run.start_epoch * steps
                todo = tc.epochs * steps - step
                eta = (now - t_start) / max(done, 1) * todo
                run.state.skipped = run.state.skipped_before + int(nonfinite.item())
                yield ev.Step(
                    epoch + 1,
                    step,
                    _mean(window_sum, window_good),
                    lr,
                    rate,
                    eta,
                    run.state.skipped,
                )
                window_sum.zero_()
                window_good.zero_()
                window_n, window_t = 0, now
            if preview is not None and time.perf_counter() - last_preview >= preview.every_s:
                t_preview = time.perf_counter()
                image = run.preview(preview)
                # next one after max(every_s, 50 x this one's duration): previews cost <= 2 %
                last_preview = time.perf_counter() + max(
                    0.0, 50 * (time.perf_counter() - t_preview) - preview.every_s
                )
                yield ev.Preview(epoch + 1, step, image, preview.image_index)
                model.train()
        good = steps - int(nonfinite.item())  # mean over the steps with a finite loss
        train_loss = dist.mean_across_ranks(
            float(loss_sum.item()) / good if good else math.nan, run.device
        )
        run.state.skipped_before = run.state.skipped
        val_loss, metrics = run.validate(train_loss)
        # one value on every process: the schedule, best checkpoint and early stop agree
        val_loss = dist.mean_across_ranks(val_loss, run.device)
        schedule.after_epoch(val_loss)
        seconds = time.perf_counter() - t_epoch
        best = run.state.record(epoch + 1, train_loss, val_loss, metrics)
        if best:
            path = run.save_best(epoch + 1)
            yield ev.CheckpointSaved(str(path), "best", epoch + 1)
        last = run.save_last(epoch + 1)
        yield ev.CheckpointSaved(str(last), "last", epoch + 1)
        stop_early = run.state.should_stop_early(tc.patience)
        run.write_epoch_outputs(seconds, final=stop_early or epoch + 1 == tc.epochs)
        elapsed = time.perf_counter() - t_start
        done_epochs = epoch + 1 - run.start_epoch
        yield ev.Epoch(
            epoch + 1,
            train_loss,
            val_loss,
            metrics,
            seconds,
            steps * tc.batch_size * dist.world_size() / max(seconds, 1e-9),
            elapsed / done_epochs * (tc.epochs - epoch - 1),
            best,
            run.state.skipped,
        )
        if stop_early:
            return run.finished_event(time.perf_counter() - t_start, early=True)
    return run.finished_event(time.perf_counter() - t_start, early=False)


def _mean(total: torch.Tensor, count: torch.Tensor) -> float:
    """Mean over the finite steps of a window (NaN when every step was skipped)."""
    n = int(count.item())
    return float(total.item()) / n if n else math.nan
