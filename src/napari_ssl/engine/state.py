"""What a run remembers between epochs (history, best loss, patience), saved for resuming."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    skipped: int = 0  # non-finite losses skipped so far
    skipped_before: int = 0  # ... as of the end of the last completed epoch
    history: list[dict[str, float]] = field(default_factory=list)

    def record(
        self, epoch: int, train_loss: float, val_loss: float, metrics: dict[str, float]
    ) -> bool:
        """Add an epoch row; True when it is the best so far on validation loss."""
        self.epoch = epoch
        self.history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, **metrics}
        )
        if math.isfinite(val_loss) and val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_loss, epoch
            return True
        return False

    def should_stop_early(self, patience: int) -> bool:
        return patience > 0 and self.epoch - self.best_epoch >= patience

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "skipped": self.skipped,
            "history": [dict(row) for row in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(data["epoch"]),
            best_val_loss=float(data["best_val_loss"]),
            best_epoch=int(data["best_epoch"]),
            skipped=int(data.get("skipped", 0)),
            skipped_before=int(data.get("skipped", 0)),
            history=[dict(row) for row in data.get("history", [])],
        )
