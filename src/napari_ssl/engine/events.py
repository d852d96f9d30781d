"""Typed events yielded by the training generator (and by the test step that may follow it).

The CLI prints them, the GUI's thread worker relays them to the docks. Events are small and
plain (numbers, strings, small numpy previews): nothing heavy crosses threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Started:
    epochs: int
    steps_per_epoch: int
    start_epoch: int  # 0 for a new run, > 0 when resuming
    device: str
    precision: str  # "fp32" | "bf16" | "fp16"
    model: str
    parameters: int
    train_patches: int  # patches per epoch
    notes: tuple[str, ...] = ()  # things the user should know (padding, clamping, ...)
    history: tuple[dict[str, float], ...] = ()  # a resumed run's epochs so far (Epoch's values)


@dataclass(frozen=True)
class Step:
    epoch: int
    step: int  # global step, from 1
    loss: float  # mean train loss since the previous Step event
    lr: float
    patches_per_s: float
    eta_s: float
    skipped_nonfinite: int = 0  # non-finite losses skipped since the run began


@dataclass(frozen=True)
class Epoch:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. val_psnr, val_ssim
    seconds: float = 0.0
    patches_per_s: float = 0.0
    eta_s: float = 0.0
    best: bool = False
    skipped_nonfinite: int = 0  # non-finite losses skipped since the run began


@dataclass(frozen=True)
class Preview:
    """A small reconstruction of a fixed region, in raw units, channels first (C, *spatial)."""

    epoch: int
    step: int
    image: np.ndarray
    source: int  # index of the training image the region comes from


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    kind: str  # "best" | "last"
    epoch: int


@dataclass(frozen=True)
class Finished:
    epochs_run: int
    best_val_loss: float
    best_checkpoint: str
    last_checkpoint: str
    seconds: float
    early_stopped: bool = False


@dataclass(frozen=True)
class Stopped:
    """The user asked to stop; the last checkpoint is resumable."""

    epoch: int
    step: int
    last_checkpoint: str


@dataclass(frozen=True)
class Failed:
    message: str  # plain words, with the fix when there is one


@dataclass(frozen=True)
class Testing:
    """After training, the test images are reconstructed and scored (a folder with test/x)."""

    images: int
    checkpoint: str


@dataclass(frozen=True)
class Tested:
    images: int
    metrics: dict[str, float]  # means over the test images (test_results_metrics.csv has each)
    folder: str  # the run's folder: per_image/, MAE_checks/, the metrics CSV


Event = (
    Started
    | Step
    | Epoch
    | Preview
    | CheckpointSaved
    | Finished
    | Stopped
    | Failed
    | Testing
    | Tested
)
