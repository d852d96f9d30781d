"""Which run a Start of the Train dock writes to: a new run id, or, to continue, the run whose
last checkpoint is given (as the CLI's ``--resume``); a run stopped by closing the dock is
offered to continue when the dock opens again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_ssl.data.images import DataError
from napari_ssl.results import ResultsLayout, next_run_id, run_of_last_checkpoint
from napari_ssl.widgets.output_folder import output_folder
from napari_ssl.widgets.state import SslState


def closed_run(state: SslState) -> ResultsLayout:
    """The run stopped by closing the Train dock."""
    return ResultsLayout(state.result_dir, state.run_name, state.closed_run)


def run_ended(state: SslState) -> None:
    """A training's worker has finished: Start is free; a run stopped by closing its dock is
    offered to continue only if it saved its last checkpoint (it may have failed instead)."""
    state.running = False
    if state.closed_run and not closed_run(state).last_checkpoint.is_file():
        state.closed_run = ""


def check_start_checkpoint(mode: int, path: str) -> None:
    """Continue (1) and fine-tune (2) need a checkpoint file."""
    if not mode:
        return
    what = "continue from (a stopped run's '-checkpoint-last.pth')" if mode == 1 else "fine-tune"
    if not path:
        raise DataError(f"no checkpoint chosen: pick the .pth file to {what}.")
    if not Path(path).is_file():
        raise DataError(
            f"checkpoint '{path}' not found: pick the .pth file to {what}, or start a new training."
        )


class RunChoice:
    """Mixin of :class:`~napari_ssl.widgets.train_dock.TrainDock` (its ``state``, ``status``,
    ``start_mode``, ``checkpoint``, ``result_dir``, ``run_name`` and ``_layout``)."""

    state: SslState
    _layout: Any  # ResultsLayout of the latest run

    def _run_for_start(self, mode: int, path: str) -> ResultsLayout:
        """The run a Start writes to: continued in place, or a new run id of the fields' run."""
        continued = run_of_last_checkpoint(path) if mode == 1 else None
        if continued is not None:
            return continued
        name = self.run_name.text().strip()
        result_dir = str(output_folder(self.result_dir.text(), "result folder"))
        return ResultsLayout(result_dir, name, next_run_id(result_dir, name))

    def _offer_to_continue(self) -> None:
        """A run stopped by closing the dock: Start continues it."""
        self._layout = closed_run(self.state)
        self.start_mode.setCurrentIndex(1)
        self.checkpoint.setText(str(self._layout.last_checkpoint))
        self.status.setText(
            f"Run {self._layout.tag} stopped when the dock was closed: Start continues it from "
            "its last checkpoint (or choose 'new training')."
        )

    def _continue_this_run(self, mode: int) -> None:
        """'continue' chosen after a fine-tune (or a new run): this dock's run, not the file it
        started from, unless the field names another run's last checkpoint."""
        last = self._layout.last_checkpoint if self._layout is not None else None
        field = self.checkpoint.text().strip()
        if mode == 1 and last and last.is_file() and not run_of_last_checkpoint(field):
            self.checkpoint.setText(str(last))
