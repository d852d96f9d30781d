"""Pretext tasks as the trainer uses them: raw device batches in, losses and outputs out.

A task turns a raw batch (float32, raw units, on the device) and the image index of each sample
into normalised network inputs and targets, computes the loss, and builds the tile predictor used
for whole-image inference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from napari_ssl.config import Config
from napari_ssl.data.normalization import NormStats
from napari_ssl.engine.device import to_device_async
from napari_ssl.pretext.crappify import crappify_batch

HIDDEN = "hidden"  # masking predictor output: 1 where a token was hidden (not an intensity)
Predictor = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class StatsTable:
    """Per-image normalisation statistics as device tensors, indexed by image number."""

    def __init__(self, stats: list[NormStats], device: torch.device) -> None:
        def stack(values: list) -> torch.Tensor:
            return torch.as_tensor([list(v) for v in values], dtype=torch.float32, device=device)

        self.offset = stack([s.offset for s in stats])
        self.scale = stack([s.scale for s in stats])
        clip = all(s.clip_lo is not None for s in stats)
        self.clip_lo = stack([s.clip_lo for s in stats]) if clip else None
        self.clip_hi = stack([s.clip_hi for s in stats]) if clip else None
        self.data_min = torch.tensor([s.data_min for s in stats], device=device)
        self.data_max = torch.tensor([s.data_max for s in stats], device=device)

    @staticmethod
    def _shape(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.reshape(*t.shape, *([1] * (x.ndim - 2)))

    def normalize(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.clip_lo is not None and self.clip_hi is not None:
            lo, hi = self._shape(self.clip_lo[idx], x), self._shape(self.clip_hi[idx], x)
            x = torch.minimum(torch.maximum(x, lo), hi)
        return (x - self._shape(self.offset[idx], x)) / self._shape(self.scale[idx], x)

    def denormalize(self, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return y * self._shape(self.scale[idx], y) + self._shape(self.offset[idx], y)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips of each in-plane axis, a 90-degree rotation (square patches) and, in 3D, a Z
    flip, each with probability 0.5 per sample."""
    ndim = x.ndim - 2
    flags = to_device_async(torch.rand(x.shape[0], 4, generator=generator), x.device)
    view = (-1,) + (1,) * (x.ndim - 1)

    def where(k: int, y: torch.Tensor) -> torch.Tensor:
        return torch.where(flags[:, k].reshape(view) < 0.5, y, x)

    x = where(0, x.flip(-1))
    x = where(1, x.flip(-2))
    if x.shape[-1] == x.shape[-2]:
        x = where(2, x.rot90(1, (-2, -1)))
    if ndim == 3:
        x = where(3, x.flip(-3))
    return x


class CrappifyTask:
    """Degraded patch -> clean patch; L1 (or MSE) loss on normalised intensities."""

    name = "crappify"

    def __init__(self, cfg: Config, table: StatsTable, integer: bool) -> None:
        self.cfg = cfg
        self.table = table
        self.integer = integer
        self.loss_fn = F.l1_loss if cfg.train.loss == "l1" else F.mse_loss

    def pair(
        self, raw: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.cfg.pretext
        degraded = crappify_batch(
            raw,
            self.table.data_min[idx],
            self.table.data_max[idx],
            p.noise,
            p.resizing_factor,
            self.integer,
            generator,
        )
        return self.table.normalize(degraded, idx), self.table.normalize(raw, idx)

    def loss(
        self, model: torch.nn.Module, raw: torch.Tensor, idx: torch.Tensor, generator
    ) -> torch.Tensor:
        inputs, targets = self.pair(raw, idx, generator)
        return self.loss_fn(model(inputs).float(), targets)

    def evaluate(self, model, raw, idx, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, reconstruction in raw units)."""
        inputs, targets = self.pair(raw, idx, generator)
        out = model(inputs).float()
        return self.loss_fn(out, targets), self.table.denormalize(out, idx)

    def predictor(self, model: torch.nn.Module, seed: int) -> Predictor:
        return lambda x: {"reconstruction": model(x).float()}

    def example_args(self, raw: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.table.normalize(raw, idx),)

    @torch.no_grad()
    def examples(self, raw, idx, generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """(degraded input, target) pairs in raw units: what the network sees."""
        inputs, targets = self.pair(raw, idx, generator)
        inputs, targets = self.table.denormalize(inputs, idx), self.table.denormalize(targets, idx)
        return [(i.cpu().numpy(), t.cpu().numpy()) for i, t in zip(inputs, targets, strict=True)]


class MaskingTask:
    """Masked autoencoding: MSE on the hidden tokens of the normalised patch."""

    name = "masking"

    def __init__(self, cfg: Config, table: StatsTable) -> None:
        from napari_ssl.pretext import masking

        self.cfg = cfg
        self.table = table
        self.masking = masking
        self.grid = masking.token_grid(cfg.data.patch_size, cfg.model.vit_token_size)

    def _mask(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        p = self.cfg.pretext
        # made on the host: the model reads the hidden count there without a device sync
        return self.masking.make_mask(n, self.grid, p.mask_type, p.mask_ratio, generator, "cpu")

    def loss(self, model, raw, idx, generator) -> torch.Tensor:
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator)
        return self.masking.masked_loss(model, x, mask, self.cfg.pretext.norm_pix_loss)

    def evaluate(self, model, raw, idx, generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator)
        loss = self.masking.masked_loss(model, x, mask, self.cfg.pretext.norm_pix_loss)
        out = self.masking.reconstruct(model, x, mask, self.cfg.pretext.norm_pix_loss)[
            "reconstruction_and_visible"
        ].float()
        return loss, self.table.denormalize(out, idx)

    def example_args(self, raw: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.table.normalize(raw, idx), self._mask(raw.shape[0], None))

    @torch.no_grad()
    def examples(self, raw, idx, generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """(masked input, target) pairs in raw units (hidden tokens at the image mean)."""
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator)
        hidden = self.masking.mask_to_pixels(mask.to(x.device), tuple(x.shape[2:]))
        masked = self.table.denormalize(x.masked_fill(hidden, 0.0), idx)
        return [(m.cpu().numpy(), r.cpu().numpy()) for m, r in zip(masked, raw, strict=True)]

    def predictor(self, model, seed: int) -> Predictor:
        generator = torch.Generator().manual_seed(seed)

        def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
            grid = self.masking.token_grid(tuple(x.shape[2:]), self.cfg.model.vit_token_size)
            p = self.cfg.pretext
            mask = self.masking.make_mask(
                x.shape[0], grid, p.mask_type, p.mask_ratio, generator, x.device
            )
            outputs = {
                k: v.float()
                for k, v in self.masking.reconstruct(
                    model, x, mask, self.cfg.pretext.norm_pix_loss
                ).items()
            }
            hidden = self.masking.mask_to_pixels(mask.to(x.device), tuple(x.shape[2:]))
            outputs[HIDDEN] = hidden.float().expand_as(x)
            return outputs

        return predict


def make_generator(
    task: CrappifyTask | MaskingTask, device: torch.device, seed: int
) -> torch.Generator:
    """The task's random stream: crappify draws noise on the device, masking draws masks on
    the host (the model reads the hidden-token count there without a device sync)."""
    where = device if task.name == "crappify" else torch.device("cpu")
    return torch.Generator(device=where).manual_seed(seed)


def make_task(cfg: Config, table: StatsTable, integer: bool) -> CrappifyTask | MaskingTask:
    if cfg.pretext.task == "masking":
        return MaskingTask(cfg, table)
    return CrappifyTask(cfg, table, integer)
