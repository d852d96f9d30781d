"""The Train dock's side of the training worker: its events become widget updates.

Many events a second may arrive (one ``Step`` per ``log_every`` steps); each only stores data
(plot points, the latest step, status text, checkpoint, preview) and the dock's
:class:`~napari_ssl.widgets.coalesce.Coalescer` applies the latest of each once per tick: one
repaint of the window per tick, never one per event. The end of a run (finished, stopped,
failed) applies what is pending at once.
"""

from __future__ import annotations

from typing import Any

from napari.utils.notifications import show_error, show_info

from napari_ssl.engine import events as ev
from napari_ssl.widgets import _layers
from napari_ssl.widgets.coalesce import set_progress
from napari_ssl.widgets.wording import in_dock_words


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainEvents:
    """Mixin of :class:`~napari_ssl.widgets.train_dock.TrainDock`: the ``_on_<event>`` handlers.

    Uses the dock's ``viewer``, ``state``, ``session``, ``progress``, ``status``, ``plot``,
    ``checkpoint``, ``updates`` (a Coalescer calling :meth:`_apply`) and the run's ``_plan``
    (epochs, steps per epoch, start epoch), ``_sources``, ``_region`` and ``_layout``.
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
    _region: tuple[slice, ...]
    _layout: Any

    def _on_event(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__.lower()}", None)
        if handler is not None:
            handler(event)

    def _on_started(self, e: ev.Started) -> None:
        self._plan = (e.epochs, e.steps_per_epoch, e.start_epoch)
        set_progress(
            self.progress,
            e.start_epoch * e.steps_per_epoch,
            f"epoch {e.start_epoch + 1}/{e.epochs}",
            maximum=e.epochs * e.steps_per_epoch,
        )
        self.updates.put(
            "status",
            f"{e.model} ({e.parameters:,} parameters) on {e.device}, {e.precision}; "
            f"{e.train_patches} patches per epoch. Results: {self._layout.root}",
        )
        if e.notes:
            show_info("\n".join(e.notes))

    def _on_step(self, e: ev.Step) -> None:
        self.plot.add_step(e.step / self._plan[1], e.loss)
        self.updates.put("step", e)

    def _on_epoch(self, e: ev.Epoch) -> None:
        psnr = e.metrics.get("val_psnr", e.metrics.get("psnr"))
        validated = bool(e.metrics)  # without validation data the engine reports the train loss
        self.plot.add_epoch(e.epoch, e.val_loss if validated else None, psnr)
        val = f"val loss {e.val_loss:.4g}" if validated else "no validation data"
        extra = f", val PSNR {psnr:.2f} dB" if psnr is not None else ""
        self.updates.put(
            "status",
            f"epoch {e.epoch}: train loss {e.train_loss:.4g}, {val}{extra}"
            f" ({e.seconds:.1f} s, {e.patches_per_s:.0f} patches/s)",
        )

    def _on_preview(self, e: ev.Preview) -> None:
        self.updates.put("preview", e)

    def _on_checkpointsaved(self, e: ev.CheckpointSaved) -> None:
        """The best checkpoint of this run (the last one until there is a best) goes to the
        shared state on the next tick: the other docks show it in the same repaint."""
        current = self.updates.latest("checkpoint", self.state.checkpoint)
        if e.kind == "best" or not current.startswith(str(self._layout.root)):
            self.updates.put("checkpoint", e.path)

    def _on_finished(self, e: ev.Finished) -> None:
        self.updates.flush()
        self.state.checkpoint = e.best_checkpoint or e.last_checkpoint
        early = " (early stop: validation loss stopped improving)" if e.early_stopped else ""
        set_progress(self.progress, fmt=f"finished: {e.epochs_run} epochs{early}")
        show_info(
            f"Training finished{early} in {format_eta(e.seconds)}: best checkpoint "
            f"{self.state.checkpoint}"
        )
        self._add_status(f"best checkpoint: {self.state.checkpoint}")

    def _on_stopped(self, e: ev.Stopped) -> None:
        self.updates.flush()
        self.checkpoint.setText(e.last_checkpoint)
        set_progress(self.progress, fmt=f"stopped at epoch {e.epoch}, step {e.step}")
        show_info(
            f"Training stopped at epoch {e.epoch}, step {e.step}; the weights are saved. To "
            f"continue (epoch {e.epoch} runs again whole), choose 'Start as: continue' with "
            f"{e.last_checkpoint}"
        )
        self._add_status(f"stopped; to continue: {e.last_checkpoint}")

    def _on_failed(self, e: ev.Failed) -> None:
        self.updates.flush()
        set_progress(self.progress, fmt="failed")
        message = in_dock_words(e.message)
        show_error(f"Training failed: {message}")
        self._add_status(f"failed: {message}")

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
        axis = self.state.channel_axis
        data = _layers.to_layer_layout(e.image, axis)
        offset = [s.start for s in self._region]
        if axis is not None and not source.rgb:
            offset.insert(axis % data.ndim, 0)
        name = f"{source.name} {_layers.LIVE_SUFFIX}"
        new = name not in self.viewer.layers
        layer = _layers.upsert_image(self.viewer, name, data, source, offset=tuple(offset))
        if new and not source.rgb:
            layer.contrast_limits = source.contrast_limits
