"""Pretext tasks as the trainer uses them: raw device batches in, losses and outputs out.

A task turns a raw batch (float32, raw units, on the device) and the image index of each sample
into normalised network inputs and targets and computes the loss; :func:`make_predictor` builds
the tile predictor of whole-image inference (it needs no statistics: tiles come normalised).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from napari_ssl.config import Config
from napari_ssl.data.normalization import NormStats
from napari_ssl.engine.checkpoints import unwrap
from napari_ssl.engine.device import to_device_async
from napari_ssl.pretext.crappify import crappify_batch

HIDDEN = "hidden"  # masking predictor output: 1 where a token was hidden (not an intensity)
Predictor = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class Task(Protocol):
    """A pretext task as the trainer, the run setup and inference use it.

    ``raw``: a batch ``(B, C, *S)`` in raw units on the device; ``idx``: each sample's image
    number; ``generator``: the task's random stream, on the device.
    """

    def loss(
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The training loss of one batch (a scalar on the device)."""

    def evaluate(
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation loss and the reconstruction, in raw units."""

    def example_args(self, raw: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's forward arguments for ``raw`` (to draw the model picture)."""

    def examples(
        self, raw: torch.Tensor, idx: torch.Tensor, generator: torch.Generator
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(network input, target) pairs in raw units: what the network sees."""


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
        bounded = all(s.out_lo is not None for s in stats)
        self.out_lo = stack([s.out_lo for s in stats]) if bounded else None
        self.out_hi = stack([s.out_hi for s in stats]) if bounded else None
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
        """Raw units, clipped as :meth:`NormStats.denormalize`."""
        x = y * self._shape(self.scale[idx], y) + self._shape(self.offset[idx], y)
        if self.out_lo is not None and self.out_hi is not None:
            lo, hi = self._shape(self.out_lo[idx], x), self._shape(self.out_hi[idx], x)
            x = torch.minimum(torch.maximum(x, lo), hi)
        return x


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

    def __init__(self, cfg: Config, table: StatsTable, integer: bool) -> None:
        self.cfg = cfg
        self.table = table
        self.integer = integer
        self.loss_fn = F.l1_loss if cfg.train.loss == "l1" else F.mse_loss

    def pair(
        self, raw: torch.Tensor, idx: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(degraded input, clean target), normalised."""
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
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        inputs, targets = self.pair(raw, idx, generator)
        return self.loss_fn(model(inputs).float(), targets)

    def evaluate(
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.pair(raw, idx, generator)
        out = model(inputs).float()
        return self.loss_fn(out, targets), self.table.denormalize(out, idx)

    def example_args(self, raw: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.table.normalize(raw, idx),)

    @torch.no_grad()
    def examples(
        self, raw: torch.Tensor, idx: torch.Tensor, generator: torch.Generator
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        inputs, targets = self.pair(raw, idx, generator)
        inputs, targets = self.table.denormalize(inputs, idx), self.table.denormalize(targets, idx)
        return [(i.cpu().numpy(), t.cpu().numpy()) for i, t in zip(inputs, targets, strict=True)]


class MaskingTask:
    """Masked autoencoding: MSE on the hidden tokens of the normalised patch.

    Training masks are drawn on the device with the device generator, and the hidden-token
    count comes from the config: no host copy and no synchronisation per step.
    """

    def __init__(self, cfg: Config, table: StatsTable) -> None:
        from napari_ssl.pretext import masking

        self.cfg = cfg
        self.table = table
        self.masking = masking
        self.grid = masking.token_grid(cfg.data.patch_size, cfg.model.vit_token_size)
        self.n_hidden = masking.hidden_count(
            self.grid, cfg.pretext.mask_type, cfg.pretext.mask_ratio
        )

    def _mask(
        self, n: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        p = self.cfg.pretext
        return self.masking.make_mask(n, self.grid, p.mask_type, p.mask_ratio, generator, device)

    def loss(
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator, x.device)
        return self.masking.masked_loss(
            model, x, mask, self.cfg.pretext.norm_pix_loss, self.n_hidden
        )

    def evaluate(
        self,
        model: torch.nn.Module,
        raw: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator, x.device)
        norm_pix = self.cfg.pretext.norm_pix_loss
        pred = model(x, mask, self.n_hidden)  # one forward pass for the loss and the image
        views = self.masking.views(unwrap(model), pred, x, mask, norm_pix)
        out = views["reconstruction_and_visible"].float()
        loss = self.masking.token_loss(pred, x, mask, norm_pix)
        return loss, self.table.denormalize(out, idx)

    def example_args(self, raw: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.table.normalize(raw, idx), self._mask(raw.shape[0], None, raw.device))

    @torch.no_grad()
    def examples(
        self, raw: torch.Tensor, idx: torch.Tensor, generator: torch.Generator
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Masked inputs show hidden tokens at each channel's minimum (as every masked view)."""
        x = self.table.normalize(raw, idx)
        mask = self._mask(x.shape[0], generator, x.device)
        hidden = self.masking.mask_to_pixels(mask, tuple(x.shape[2:]))
        low = x.amin(dim=tuple(range(2, x.ndim)), keepdim=True)
        masked = self.table.denormalize(torch.where(hidden, low, x), idx)
        return [(m.cpu().numpy(), r.cpu().numpy()) for m, r in zip(masked, raw, strict=True)]


def make_predictor(cfg: Config, model: torch.nn.Module, seed: int) -> Predictor:
    """Whole-image inference of ``cfg``'s task, tile by tile: normalised tiles in, named outputs
    out (crappify: the reconstruction; masking: the MAE views and :data:`HIDDEN`)."""
    if cfg.pretext.task != "masking":
        return lambda x: {"reconstruction": model(x).float()}
    from napari_ssl.pretext import masking

    generator = torch.Generator().manual_seed(seed)  # on the host: a seed hides the same tokens
    p = cfg.pretext  # on every device (copied pinned and non-blocking)

    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = masking.token_grid(tuple(x.shape[2:]), cfg.model.vit_token_size)
        host = masking.make_mask(x.shape[0], grid, p.mask_type, p.mask_ratio, generator)
        mask = to_device_async(host, x.device)
        n_hidden = masking.hidden_count(grid, p.mask_type, p.mask_ratio)
        views = masking.reconstruct(model, x, mask, p.norm_pix_loss, n_hidden)
        outputs = {k: v.float() for k, v in views.items()}
        outputs[HIDDEN] = masking.mask_to_pixels(mask, tuple(x.shape[2:])).float().expand_as(x)
        return outputs

    return predict


def make_task(cfg: Config, table: StatsTable, integer: bool) -> Task:
    """The task of ``cfg.pretext.task``."""
    if cfg.pretext.task == "masking":
        return MaskingTask(cfg, table)
    return CrappifyTask(cfg, table, integer)
