"""Everything a training run holds: data, model, optimizer, checkpoints and per-epoch outputs.

:func:`prepare_run` builds a :class:`Run` from a config and images (or resumes one from a
checkpoint); the loop in :mod:`napari_ssl.engine.trainer` drives it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_ssl.config import Config
from napari_ssl.data.images import Image
from napari_ssl.data.normalization import NormStats, norm_record, stats_for
from napari_ssl.data.sampling import PatchSampler, coverage_count, validation_patches
from napari_ssl.data.splits import split_train_val
from napari_ssl.engine import checkpoints as ckpt
from napari_ssl.engine import distributed as dist
from napari_ssl.engine import events as ev
from napari_ssl.engine.checks import check_images, check_memory, constant_notes, size_notes
from napari_ssl.engine.device import autocast_dtype, precision_name
from napari_ssl.engine.lr_schedule import LrSchedule, describe, warmup_note
from napari_ssl.engine.resume import checkpoint_to_load, restore, write_start_outputs
from napari_ssl.engine.state import RunState
from napari_ssl.engine.tasks import StatsTable, Task, augment, make_task
from napari_ssl.models.mae_config import biapy_decoder_note
from napari_ssl.results import ResultsLayout

VAL_BATCH = 8
CHARTS_EVERY_S = 30.0
NO_VALIDATION = (
    "no validation data (data.val_fraction (BiaPy DATA.VAL.SPLIT_TRAIN) 0, or images too small "
    "to hold a part out): "
    "'val loss' is the training loss, and the best checkpoint, early stopping and the "
    "learning-rate schedule follow it"
)


@dataclass
class Run:
    cfg: Config
    images: list[Image]  # the training images, then those of a validation folder
    layout: ResultsLayout
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stats: list[NormStats]
    sampler: PatchSampler
    task: Task
    val: tuple[torch.Tensor, torch.Tensor] | None
    in_channels: int
    steps_per_epoch: int
    generator: torch.Generator  # host: augmentation flips
    task_generator: torch.Generator  # crappify noise or masks, on the device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    state: RunState = field(default_factory=RunState)
    schedule: LrSchedule = field(init=False)  # set once the optimizer state is restored
    start_epoch: int = 0
    notes: list[str] = field(default_factory=list)
    charts_written_at: float = -math.inf
    tensorboard: Any = None  # a SummaryWriter when tensorboard is installed (main process)

    # ----- per step
    def augment(self, raw: torch.Tensor) -> torch.Tensor:
        return augment(raw, self.generator)

    def to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        fmt = memory_format(self.cfg, self.device)
        return x if fmt is None else x.contiguous(memory_format=fmt)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward_and_step(self, loss: torch.Tensor, finite: torch.Tensor) -> None:
        """Backward and optimizer step; a non-finite loss skips the update (no host sync when
        the optimizer is fused: it reads ``found_inf`` on the device)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        loss.backward()
        if self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()  # read by torch's fused kernels
            self.optimizer.step()
        elif bool(finite):
            self.optimizer.step()

    # ----- per epoch
    @torch.no_grad()
    def validate(self, train_loss: float) -> tuple[float, dict[str, float]]:
        """Validation loss and PSNR/SSIM (raw units) on fixed patches and degradations;
        without validation data, the epoch's training loss (the best checkpoint follows it)."""
        if self.val is None:
            return train_loss, {}
        from napari_ssl.inference.metrics import psnr, ssim

        self.model.eval()
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.system.seed + 1)
        raw_all, idx_all = self.val
        losses, psnrs, ssims = [], [], []
        for start in range(0, raw_all.shape[0], VAL_BATCH):
            raw, idx = raw_all[start : start + VAL_BATCH], idx_all[start : start + VAL_BATCH]
            with self.autocast():
                loss, out = self.task.evaluate(
                    self.core_model, self.to_memory_format(raw), idx, generator
                )
            losses.append(float(loss) * raw.shape[0])
            out_np, raw_np = out.float().cpu().numpy(), raw.cpu().numpy()
            for pred, target in zip(out_np, raw_np, strict=True):
                rng = float(target.max() - target.min()) or 1.0
                psnrs.append(psnr(pred, target, rng))
                if len(ssims) < 16:
                    ssims.append(ssim(pred, target, rng))
        n = raw_all.shape[0]
        return sum(losses) / n, {
            "val_psnr": float(np.mean(psnrs)),
            "val_ssim": float(np.mean(ssims)),
        }

    def train_state(self, partial: bool) -> dict[str, Any]:
        """Resume state; ``partial``: saved mid-epoch (resuming restarts that epoch)."""
        return {
            **self.state.to_dict(),
            "partial_epoch": partial,
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "task_generator": self.task_generator.get_state(),
            "sampler_rng": json.dumps(self.sampler.rng_state()),
            "lr_schedule": self.schedule.state_dict(),
        }

    @property
    def core_model(self) -> torch.nn.Module:
        """The model without DDP / torch.compile wrappers."""
        return ckpt.unwrap(self.model)

    def save_best(self, epoch: int) -> Path:
        if not dist.is_main_process():
            return self.layout.best_checkpoint
        payload = ckpt.make_payload(self.model, self.cfg, self.in_channels, epoch)
        return ckpt.save_checkpoint(payload, self.layout.best_checkpoint)

    def save_last(self, epoch: int, partial: bool = False) -> Path:
        if not dist.is_main_process():
            return self.layout.last_checkpoint
        payload = ckpt.make_payload(
            self.model, self.cfg, self.in_channels, epoch, self.optimizer, self.train_state(partial)
        )
        return ckpt.save_checkpoint(payload, self.layout.last_checkpoint)

    def write_epoch_outputs(self, seconds: float, final: bool) -> None:
        """The epoch's log row; the charts at most every CHARTS_EVERY_S seconds and at the end
        (drawing them holds the interpreter, which a GUI thread beside the worker feels)."""
        if not dist.is_main_process():
            return
        from napari_ssl.results import append_train_log

        row = dict(self.state.history[-1])
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = seconds
        append_train_log(self.layout, row)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, int(row["epoch"]))
            self.tensorboard.flush()
        if final or time.perf_counter() - self.charts_written_at >= CHARTS_EVERY_S:
            self.write_charts()

    def write_charts(self) -> None:
        if not dist.is_main_process() or not self.state.history:
            return
        from napari_ssl.charts import write_charts

        write_charts(self.state.history, self.layout)
        self.charts_written_at = time.perf_counter()

    # ----- events and previews
    def started_event(self) -> ev.Started:
        from napari_ssl.models import count_parameters

        return ev.Started(
            epochs=self.cfg.train.epochs,
            steps_per_epoch=self.steps_per_epoch,
            start_epoch=self.start_epoch,
            device=str(self.device),
            precision=precision_name(self.amp_dtype),
            model=self.cfg.model.architecture,
            parameters=count_parameters(self.model),
            train_patches=self.steps_per_epoch * self.cfg.train.batch_size * dist.world_size(),
            notes=tuple(self.notes),
            history=tuple(dict(row) for row in self.state.history),
        )

    def finished_event(self, seconds: float, early: bool) -> ev.Finished:
        best = self.layout.best_checkpoint
        return ev.Finished(
            epochs_run=self.state.epoch,
            best_val_loss=self.state.best_val_loss,
            best_checkpoint=str(best) if best.exists() else "",
            last_checkpoint=str(self.layout.last_checkpoint),
            seconds=seconds,
            early_stopped=early,
        )

    @torch.no_grad()
    def preview(self, spec: Any) -> np.ndarray:
        """Reconstruction of a region of a training image, in raw units (C, *region)."""
        from napari_ssl.inference.reconstruct import reconstruct_region

        self.model.eval()
        image = self.images[spec.image_index]
        return reconstruct_region(
            self.model,
            self.cfg,
            image.read(spec.region),
            self.stats[spec.image_index],
            self.device,
        )

    def release(self) -> None:
        """Free device memory (the GUI keeps running after training)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.sampler.release()
        self.val = None
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def memory_format(cfg: Config, device: torch.device) -> torch.memory_format | None:
    """Channels-last for the CNNs on CUDA (when asked for); None keeps the default layout."""
    if device.type != "cuda" or not cfg.train.channels_last or cfg.model.architecture == "mae":
        return None
    return torch.channels_last if cfg.data.ndim == 2 else torch.channels_last_3d


def prepare_run(
    cfg: Config, images: list[Image], layout: ResultsLayout | None, resume: str | Path | None
) -> Run:
    """Check inputs against the config, build data, model and optimizer; restore a checkpoint."""
    from napari_ssl.models import build_model

    data = cfg.data
    check_images(cfg, images)
    torch.manual_seed(cfg.system.seed)
    device = dist.device_for_rank(cfg.system.device)
    check_memory(cfg, device, images[0].channels)  # before anything big is allocated
    dist.init(device)
    patch = tuple(data.patch_size)
    images, train_regions, val_regions = split_train_val(data, images, patch)
    notes = size_notes(images, patch)  # the validation folder's images too
    if not val_regions:
        notes.append(NO_VALIDATION)
    record = norm_record(data)
    stats = [stats_for(img, record) for img in images]
    notes += constant_notes(images, stats)
    seed = cfg.system.seed + 1000 * dist.rank()  # each process draws its own patches
    sampler = PatchSampler(images, train_regions, patch, device, seed=seed)
    threads = sampler.reader_threads(cfg.system.num_workers)
    if threads and sampler.is_large():  # small images are read fast enough to need no word
        notes.append(f"large images: patches read ahead by {threads} threads (SYSTEM.NUM_WORKERS)")
    val = None
    if val_regions:
        raw, idx = validation_patches(images, val_regions, patch)
        val = (torch.from_numpy(raw).to(device), torch.from_numpy(idx).to(device))
    in_channels = images[0].channels
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(data, channels=in_channels))
    integer = all(np.issubdtype(img.dtype, np.integer) for img in images)
    table = StatsTable(stats, device)
    model = build_model(cfg.model, data.ndim, in_channels, patch).to(device)
    fmt = memory_format(cfg, device)
    if fmt is not None:
        model = model.to(memory_format=fmt)
    optimizer = _make_optimizer(cfg, model, device)
    amp = autocast_dtype(device, cfg.train.mixed_precision)
    if cfg.train.mixed_precision in ("fp16", "bf16") and precision_name(amp) == "fp32":
        notes.append(f"mixed precision {cfg.train.mixed_precision} needs a GPU here: fp32 instead")
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    per_epoch = cfg.train.patches_per_epoch or coverage_count(train_regions, patch)
    steps = max(1, -(-per_epoch // (cfg.train.batch_size * dist.world_size())))
    layout = (layout or ResultsLayout(tempfile.mkdtemp(prefix="napari-ssl-"), "run", "1")).make()
    task = make_task(cfg, table, integer)
    task_generator = torch.Generator(device=device).manual_seed(seed)
    run = Run(
        cfg, images, layout, device, model, optimizer, stats, sampler, task, val, in_channels,
        steps, torch.Generator().manual_seed(seed), task_generator, amp, scaler, notes=notes,
    )  # fmt: skip
    source = checkpoint_to_load(cfg, layout, resume)
    resumed: dict[str, Any] = {}
    if source is not None:
        same_run = source.resolve() == layout.last_checkpoint.resolve()
        full = resume is not None or same_run
        resumed = restore(run, source, full=full, explicit=resume is not None)
    else:
        write_start_outputs(run)
    run.schedule = LrSchedule(cfg.train, optimizer, steps, run.start_epoch)
    run.schedule.load_state_dict(resumed.get("lr_schedule", {}))
    if cfg.model.architecture == "mae" and (note := biapy_decoder_note(cfg.model)):
        run.notes.append(note)
    if cfg.train.lr_schedule:
        run.notes.append(f"learning rate ({cfg.train.lr_schedule}): {describe(cfg.train)}")
        if note := warmup_note(cfg.train):
            run.notes.append(note)
    if dist.is_main_process():
        from napari_ssl.results import make_tensorboard_writer

        run.tensorboard = make_tensorboard_writer(layout)
    run.model = dist.wrap_model(run.model, device, cfg.model.norm == "sync_bn")
    if cfg.train.compile:
        run.model = torch.compile(run.model)
    return run


def _make_optimizer(
    cfg: Config, model: torch.nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    tc = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if tc.optimizer == "SGD":
        return torch.optim.SGD(
            params, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay, **fused
        )
    if tc.optimizer == "ADAM":
        return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, **fused)
