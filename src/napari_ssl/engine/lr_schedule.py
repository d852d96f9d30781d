"""The learning rate over a run: BiaPy 3.7.1's ``TRAIN.LR_SCHEDULER`` schedules.

- ``warmupcosine``: a linear ramp from 0 to ``lr`` over ``warmup_epochs``, ``lr`` held until
  the decay starts (the last ``cosine_decay_fraction`` of the epochs, else right after the ramp),
  then a half cosine down to ``min_lr``; set before every step from the fractional epoch.
- ``warmupreduceonplateau``: BiaPy's fixed table, one value per epoch: a 10-value linear ramp
  from 0 to ``lr``, then ``lr``; over more than 100 (300) epochs the last 50 (100) halve it every
  5 (10) epochs.
- ``onecycle``: :class:`torch.optim.lr_scheduler.OneCycleLR` up to ``lr`` and down, stepped
  after every optimizer step (its momentum too).
- ``reduceonplateau``: :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` on the validation
  loss after every epoch.

On resume the per-step schedules are recomputed from the epoch reached (a part-way epoch runs
again whole); ``reduceonplateau`` keeps its counters in the checkpoint's training state.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from napari_ssl.config import TrainConfig
from napari_ssl.validation import decay_start

WARMUP_TABLE_EPOCHS = 10  # warmupreduceonplateau: values in its linear ramp


def warmup_cosine(tc: TrainConfig, epoch: float) -> float:
    """``warmupcosine``'s learning rate at the fractional ``epoch`` (0-based)."""
    warmup = max(tc.warmup_epochs, 0)
    start = (
        decay_start(tc.epochs, tc.cosine_decay_fraction) if tc.cosine_decay_fraction > 0 else warmup
    )
    if epoch < warmup:
        return tc.lr * epoch / warmup
    if epoch < start:
        return tc.lr
    progress = (epoch - start) / (tc.epochs - start)
    return tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_table(lr: float, epochs: int) -> list[float]:
    """``warmupreduceonplateau``'s learning rate for each epoch (the last one repeats)."""
    ramp = [lr * k / (WARMUP_TABLE_EPOCHS - 1) for k in range(WARMUP_TABLE_EPOCHS)]
    table = ramp + [lr] * max(0, epochs - WARMUP_TABLE_EPOCHS)
    for longer_than, cut, per_step in ((300, 100, 10), (100, 50, 5)):
        if epochs > longer_than:
            table = table[:-cut]
            for _ in range(10):
                table += [table[-1] / 2] * per_step
            break
    return table


def describe(tc: TrainConfig) -> str:
    """The schedule in one line, for the run's notes."""
    lr, kind = f"{tc.lr:.3g}", tc.lr_schedule
    if kind == "warmupcosine":
        start = decay_start(tc.epochs, tc.cosine_decay_fraction)
        start = start if tc.cosine_decay_fraction > 0 else max(tc.warmup_epochs, 0)
        ramp = f"from 0 to {lr} over {tc.warmup_epochs} epochs, " if tc.warmup_epochs > 0 else ""
        return f"{ramp}a cosine decay from {lr} at epoch {start} to {tc.min_lr:.3g}"
    if kind == "reduceonplateau":
        return (
            f"{lr}, times {tc.plateau_factor:g} after {tc.plateau_patience + 1} epochs without a "
            f"better validation loss, down to {tc.min_lr:.3g}"
        )
    if kind == "onecycle":
        return f"one cycle up to {lr} and down over {tc.epochs} epochs"
    if kind == "warmupreduceonplateau":
        last = 100 if tc.epochs > 300 else 50 if tc.epochs > 100 else 0
        end = f", halved 10 times over the last {last} epochs" if last else ""
        return f"from 0 to {lr} over {WARMUP_TABLE_EPOCHS} epochs{end}"
    return f"{lr} throughout"


def warmup_note(tc: TrainConfig) -> str | None:
    """A note when the warm-up outlasts the run: the rate then never reaches ``lr``."""
    warmup = {"warmupcosine": tc.warmup_epochs, "warmupreduceonplateau": WARMUP_TABLE_EPOCHS}
    epochs = warmup.get(tc.lr_schedule, 0)
    if epochs >= tc.epochs:
        return (
            f"the warm-up ({epochs} epochs) is as long as the run or longer ({tc.epochs} "
            f"epochs): the learning rate never reaches {tc.lr:.3g}"
        )
    return None


class LrSchedule:
    """Sets the optimizer's learning rate as ``tc.lr_schedule`` says, at the points the loop
    calls: :meth:`before_step`, :meth:`after_step`, :meth:`after_epoch`."""

    def __init__(
        self, tc: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epoch: int
    ) -> None:
        self.tc, self.optimizer = tc, optimizer
        self.kind = tc.lr_schedule
        self.table = warmup_table(tc.lr, tc.epochs) if self.kind == "warmupreduceonplateau" else []
        self.torch_scheduler: Any = None
        if self.kind == "onecycle":
            done = epoch * steps_per_epoch  # a resumed run: the groups hold OneCycleLR's keys
            self.torch_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                tc.lr,
                epochs=tc.epochs,
                steps_per_epoch=steps_per_epoch,
                last_epoch=done - 1 if done and "initial_lr" in optimizer.param_groups[0] else -1,
            )
        elif self.kind == "reduceonplateau":
            self.torch_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=tc.plateau_factor, patience=tc.plateau_patience, min_lr=tc.min_lr
            )

    def before_step(self, epoch: float) -> None:
        """Per-iteration schedules: the rate at the fractional (0-based) ``epoch``."""
        if self.kind == "warmupcosine":
            self._set(warmup_cosine(self.tc, epoch))
        elif self.kind == "warmupreduceonplateau":
            self._set(self.table[min(int(epoch), len(self.table) - 1)])

    def after_step(self) -> None:
        if self.kind == "onecycle":
            self.torch_scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.kind == "reduceonplateau":
            self.torch_scheduler.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs beyond the epoch (reduceonplateau's counters)."""
        return self.torch_scheduler.state_dict() if self.kind == "reduceonplateau" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.kind == "reduceonplateau" and state:
            self.torch_scheduler.load_state_dict(state)

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
