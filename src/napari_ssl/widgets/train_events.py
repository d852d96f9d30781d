"""The Train dock's side of the training worker: its events become widget updates.

Many events a second may arrive (one ``Step`` per ``log_every`` steps); each only stores data
(plot points, the latest step, status text, checkpoint, preview) and the dock's
:class:`~napari_ssl.widgets.coalesce.Coalescer` applies the latest of each once per tick: one
repaint of the window per tick, never one per event. The end of a run (finished, stopped,
failed) applies what is pending at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info

from napari_ssl.engine import events as ev
from napari_ssl.job import count_of, format_rate
from napari_ssl.widgets import _layers
from napari_ssl.widgets.coalesce import set_progress
from napari_ssl.widgets.wording import in_dock_words

EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss")  # a history row's other keys: metrics


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainEvents:
    """Mixin of :class:`~napari_ssl.widgets.train_dock.TrainDock`: the ``_on_<event>`` handlers.

    Uses the dock's ``viewer``, ``state``, ``session``, ``progress``, ``status``, ``plot``,
    ``checkpoint``, ``updates`` (a Coalescer calling :meth:`_apply`) and the run's ``_plan``
    (epochs, steps per epoch, start epoch), ``_sources``, ``_source_axes``, ``_region`` and
    ``_layout``.
    """

    viewer: Any
    state: Any
    session: Any
    progress: Any
    status: Any
    plot: Any
    checkpoint: Any
    updates: Any
    _plan: tuple[int, int, int]
    _sources: list[Any]
    _source_axes: list[int | None]
    _region: tuple[slice, ...]
    _layout: Any

    def _on_event(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}", None)
        if handler is not None:
            handler(event)

    def _on_started(self, e: ev.Started) -> None:
        self._plan = (e.epochs, e.steps_per_epoch, e.start_epoch)
        self._started = True
        set_progress(
            self.progress,
            e.start_epoch * e.steps_per_epoch,
            f"epoch {e.start_epoch + 1}/{e.epochs}",
            maximum=e.epochs * e.steps_per_epoch,
        )
        notes = [in_dock_words(note) for note in e.notes]
        self._notes = [f"note: {note}" for note in notes]
        self._put_status(
            f"{e.model} ({e.parameters:,} parameters) on {e.device}, {e.precision}; "
            f"{e.train_patches} patches per epoch. Results: {self._layout.root}"
        )
        if notes:
            show_info("\n".join(notes))
        for row in e.history:  # a resumed run's epochs so far: its curves go on where they were
            metrics = {key: value for key, value in row.items() if key not in EPOCH_COLUMNS}
            self.plot.add_step(row["epoch"], row["train_loss"])  # the epoch's mean, at its end
            self._plot_epoch(int(row["epoch"]), row["val_loss"], metrics)

    def _on_step(self, e: ev.Step) -> None:
        self.plot.add_step(e.step / self._plan[1], e.loss)
        self.updates.put("step", e)

    def _plot_epoch(self, epoch: int, val_loss: float, metrics: dict[str, float]) -> float | None:
        """An epoch's validation loss and PSNR on the plot; returns the PSNR (None: none)."""
        psnr = metrics.get("val_psnr", metrics.get("psnr"))
        validated = bool(metrics)  # without validation data the engine reports the train loss
        self.plot.add_epoch(epoch, val_loss if validated else None, psnr)
        return psnr

    def _on_epoch(self, e: ev.Epoch) -> None:
        psnr = self._plot_epoch(e.epoch, e.val_loss, e.metrics)
        val = f"val loss {e.val_loss:.4g}" if e.metrics else "no validation data"
        extra = f", val PSNR {psnr:.2f} dB" if psnr is not None else ""
        self._put_status(
            f"epoch {e.epoch}: train loss {e.train_loss:.4g}, {val}{extra}"
            f" ({e.seconds:.1f} s, {format_rate(e.patches_per_s)} patches/s)"
        )

    def _put_status(self, line: str) -> None:
        """The run's status line, with its notes under it (a notification shows one line)."""
        self.updates.put("status", "\n".join([line, *self._notes]))

    def _on_preview(self, e: ev.Preview) -> None:
        self.updates.put("preview", e)

    def _on_checkpointsaved(self, e: ev.CheckpointSaved) -> None:
        """The best checkpoint of this run (the last one until there is a best) goes to the
        shared state on the next tick: the other docks show it in the same repaint."""
        current = self.updates.latest("checkpoint", self.state.checkpoint)
        if e.kind == "best" or not self._of_this_run(current):
            self.updates.put("checkpoint", e.path)

    def _of_this_run(self, checkpoint: str) -> bool:
        """Whether ``checkpoint`` is one of the current run's (not an earlier run's of the name)."""
        path = Path(checkpoint)
        mine = path.parent == self._layout.checkpoints_dir
        return mine and path.name.startswith(f"{self._layout.tag}-checkpoint-")

    def _on_finished(self, e: ev.Finished) -> None:
        self.updates.flush()
        self.state.checkpoint = e.best_checkpoint or e.last_checkpoint
        if self.start_mode.currentIndex() != 2:  # not the file the user fine-tunes from
            self.checkpoint.setText(e.last_checkpoint)  # to continue it with more epochs
        early = " (early stop: validation loss stopped improving)" if e.early_stopped else ""
        set_progress(self.progress, fmt=f"finished: {count_of(e.epochs_run, 'epoch')}{early}")
        show_info(
            f"Training finished{early} in {format_eta(e.seconds)}: best checkpoint "
            f"{self.state.checkpoint}"
        )
        self._add_status(f"best checkpoint: {self.state.checkpoint}")

    def _on_stopped(self, e: ev.Stopped) -> None:
        self.updates.flush()
        self.checkpoint.setText(e.last_checkpoint)
        if not self._of_this_run(self.state.checkpoint):  # stopped before its first best:
            self.state.checkpoint = e.last_checkpoint  # Reconstruct and Export get this run
        where, again = self._stopped_where(e)
        set_progress(self.progress, fmt=f"stopped {where}")
        show_info(
            f"Training stopped {where}; the weights are saved. To continue ({again}), choose "
            f"'Start as: continue' with {e.last_checkpoint}"
        )
        self._add_status(f"stopped {where}; to continue: {e.last_checkpoint}")

    def _stopped_where(self, e: ev.Stopped) -> tuple[str, str]:
        """Where the run stopped, counted in steps within the epoch as the progress bar counts
        (the event's step is the run's global step), and what continuing runs first."""
        steps = self._plan[1]
        done = min(max(e.step - (e.epoch - 1) * steps, 0), steps)
        if done == 0 and e.epoch > 1:  # between two epochs: the bar still shows the last one's
            return (
                f"at the end of epoch {e.epoch - 1} (step {steps} of {steps})",
                f"from epoch {e.epoch}",
            )
        return f"at epoch {e.epoch}, step {done} of {steps}", f"epoch {e.epoch} runs again whole"

    def _on_failed(self, e: ev.Failed) -> None:
        """Refused while setting up (a check of the data or checkpoint), or failed mid-run."""
        self.updates.flush()
        message = in_dock_words(e.message)
        if self._testing:  # the training itself finished: its checkpoints stay
            finished = self.progress.format().split(" · testing")[0]
            set_progress(self.progress, fmt=f"{finished} · test failed")
            show_error(
                f"Testing failed (the training finished, its checkpoints are saved): {message}"
            )
            self._add_status(f"test failed: {message}")
            return
        what = "failed" if self._started else "not started"
        set_progress(self.progress, fmt=what)
        show_error(f"{'Training failed' if self._started else 'Cannot start training'}: {message}")
        if self._started:
            self._add_status(f"{what}: {message}")
        else:  # no "results: <folder>" line above it: nothing was written there
            self.status.setText(f"{what}: {message}")

    def _on_testing(self, e: ev.Testing) -> None:
        self._testing = True
        testing = f" · testing {count_of(e.images, 'image')}…"
        set_progress(self.progress, fmt=self.progress.format() + testing)

    def _on_tested(self, e: ev.Tested) -> None:
        """The test images' mean scores, and where their reconstructions went."""
        means = ", ".join(f"{k} {v:.4g}" for k, v in e.metrics.items())
        finished = self.progress.format().split(" · testing")[0]
        set_progress(self.progress, fmt=f"{finished} · tested {count_of(e.images, 'image')}")
        where = f"per-image reconstructions and test_results_metrics.csv in {e.folder}"
        show_info(f"Test images scored ({count_of(e.images, 'image')}): {means}; {where}")
        self._add_status(f"test mean: {means} ({where})")

    def _add_status(self, line: str) -> None:
        """The end of a run also in the dock (a notification shows its first line only)."""
        self.status.setText("\n".join(filter(None, (self.status.text(), line))))

    # ---- applied once per tick --------------------------------------------------------------
    def _apply(self, pending: dict[str, Any]) -> None:
        """Show the latest step, status, checkpoint and preview (one repaint for all of them)."""
        if "step" in pending:
            self._show_step(pending["step"])
        if "status" in pending:
            self.status.setText(pending["status"])
        if "checkpoint" in pending:
            self.state.checkpoint = pending["checkpoint"]
        if "preview" in pending:
            self._show_preview(pending["preview"])

    def _show_step(self, e: ev.Step) -> None:
        epochs, steps, _ = self._plan
        in_epoch = e.step - (e.epoch - 1) * steps
        paused = " (paused)" if self.session.paused else ""
        set_progress(
            self.progress,
            min(e.step, epochs * steps),
            f"epoch {e.epoch}/{epochs} · step {in_epoch}/{steps} · "
            f"ETA {format_eta(e.eta_s)}{paused}",
        )

    def _show_preview(self, e: ev.Preview) -> None:
        """Add ``<layer> [live reconstruction]`` once, then only replace its data."""
        if e.source >= len(self._sources) or self._sources[e.source] not in self.viewer.layers:
            return
        source = self._sources[e.source]
        axis = self._source_axes[e.source]  # also if the Data dock's choice changed since
        name = f"{source.name} {_layers.LIVE_SUFFIX}"
        _layers.upsert_crop(self.viewer, name, e.image, source, axis, self._region)
