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
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4  # torch OneCycleLR's defaults, which BiaPy keeps
ONECYCLE_MOMENTUM = (0.85, 0.95)  # its base and max momentum (AdamW's beta1), also defaults
PLATEAU_COUNTERS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")


def cosine_start(tc: TrainConfig) -> int:
    """The epoch where ``warmupcosine``'s decay starts: the last ``cosine_decay_fraction`` of
    the epochs when given, else right after the warm-up."""
    if tc.cosine_decay_fraction > 0:
        return decay_start(tc.epochs, tc.cosine_decay_fraction)
    return max(tc.warmup_epochs, 0)


def warmup_cosine(tc: TrainConfig, epoch: float) -> float:
    """``warmupcosine``'s learning rate at the fractional ``epoch`` (0-based)."""
    warmup, start = max(tc.warmup_epochs, 0), cosine_start(tc)
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
        ramp = f"from 0 to {lr} over {tc.warmup_epochs} epochs, " if tc.warmup_epochs > 0 else ""
        return f"{ramp}a cosine decay from {lr} at epoch {cosine_start(tc)} to {tc.min_lr:.3g}"
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
    if tc.lr_schedule == "warmupcosine":  # the rate reaches lr at the end of the ramp
        epochs, short = tc.warmup_epochs, tc.warmup_epochs >= tc.epochs
    elif tc.lr_schedule == "warmupreduceonplateau":  # ... at its table's 10th epoch
        epochs, short = WARMUP_TABLE_EPOCHS, tc.epochs < WARMUP_TABLE_EPOCHS
    else:
        return None
    if short:
        return (
            f"the warm-up ({epochs} epochs) does not end before the run ({tc.epochs} epochs) "
            f"does: the learning rate never reaches {tc.lr:.3g}"
        )
    return None


class LrSchedule:
    """Sets the optimizer's learning rate as ``tc.lr_schedule`` says, at the points the loop
    calls: :meth:`before_step`, :meth:`after_step`, :meth:`after_epoch`.

    A resumed run (``epoch`` > 0) follows the config it is given now (schedule, ``lr`` and the
    schedule's values): ``reduceonplateau`` resumed as ``reduceonplateau`` keeps its counters and
    the rate it had reached (:meth:`load_state_dict`); every other rate is computed afresh.
    """

    def __init__(
        self, tc: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epoch: int
    ) -> None:
        self.tc, self.optimizer = tc, optimizer
        self.kind = tc.lr_schedule
        self.table = warmup_table(tc.lr, tc.epochs) if self.kind == "warmupreduceonplateau" else []
        self.torch_scheduler: Any = None
        self._set(tc.lr)  # where constant and reduceonplateau start, resumed or not
        if self.kind != "onecycle":  # a checkpoint of a onecycle run left its momentum cycled
            for group in optimizer.param_groups:
                for key in ("betas", "momentum"):
                    if key in optimizer.defaults:
                        group[key] = optimizer.defaults[key]
        if self.kind == "onecycle" and epoch < tc.epochs:
            done = epoch * steps_per_epoch
            if done:  # resumed: this config's cycle, at the step reached (torch reads the groups)
                for group in optimizer.param_groups:
                    group["initial_lr"] = tc.lr / ONECYCLE_DIV
                    group["max_lr"] = tc.lr
                    group["min_lr"] = group["initial_lr"] / ONECYCLE_FINAL_DIV
                    group.setdefault("max_momentum", ONECYCLE_MOMENTUM[1])
                    group.setdefault("base_momentum", ONECYCLE_MOMENTUM[0])
            self.torch_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                tc.lr,
                epochs=tc.epochs,
                steps_per_epoch=steps_per_epoch,
                div_factor=ONECYCLE_DIV,
                final_div_factor=ONECYCLE_FINAL_DIV,
                base_momentum=ONECYCLE_MOMENTUM[0],
                max_momentum=ONECYCLE_MOMENTUM[1],
                last_epoch=done - 1,
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
        """onecycle moves on after every step (also one whose update a non-finite loss skipped,
        so that a resumed run's position is its step count)."""
        if self.kind == "onecycle" and self.torch_scheduler is not None:
            self.torch_scheduler.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.kind == "reduceonplateau":
            self.torch_scheduler.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        """The schedule and rate reached, and reduceonplateau's counters, for a resumed run."""
        state = {"kind": self.kind, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.kind == "reduceonplateau":
            state.update({key: getattr(self.torch_scheduler, key) for key in PLATEAU_COUNTERS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """reduceonplateau resumed as reduceonplateau: its counters and the rate reached."""
        if self.kind == "reduceonplateau" and state.get("kind") == "reduceonplateau":
            for key in PLATEAU_COUNTERS:
                setattr(self.torch_scheduler, key, state[key])
            self._set(max(float(state["lr"]), self.tc.min_lr))

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
