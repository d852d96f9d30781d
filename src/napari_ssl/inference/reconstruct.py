"""Whole-image reconstruction with a trained model: normalise, tile, predict, blend, undo.

Outputs are float32 arrays ``(C, *spatial)`` in the input's raw units. For crappify the network
restores the image it is given (or, with ``degrade=True``, a crappified copy, to score it against
the original); for masking the image is masked token by token and the four MAE views come back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from napari_ssl.config import Config
from napari_ssl.data.images import DataError, Image
from napari_ssl.data.normalization import NormStats, norm_record, stats_for
from napari_ssl.engine.checkpoints import TrainedModel
from napari_ssl.engine.device import autocast_dtype, resolve_device
from napari_ssl.engine.tasks import HIDDEN, make_predictor
from napari_ssl.inference.tiling import predict_tiled
from napari_ssl.pretext.crappify import crappify


def _tiling(cfg: Config, overlap: float | None, padding: tuple[int, ...] | None) -> dict[str, Any]:
    """Masking tiles do not overlap, so every pixel keeps the one mask it was drawn with."""
    if cfg.pretext.task == "masking":
        return {"overlap": 0.0, "padding": (0,) * cfg.data.ndim}
    return {
        "overlap": cfg.data.test_overlap if overlap is None else overlap,
        "padding": padding if padding is not None else cfg.data.test_padding,
    }


def _autocast(device: torch.device, cfg: Config) -> Callable[[], contextlib.AbstractContextManager]:
    dtype = autocast_dtype(device, cfg.train.mixed_precision, inference=True)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def _run(
    model: torch.nn.Module,
    cfg: Config,
    image: Image,
    stats: NormStats,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
    seed: int,
    **tiling: Any,
) -> dict[str, np.ndarray]:
    predict = make_predictor(cfg, model, seed)

    def predict_amp(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast():
            return predict(x)

    outputs = predict_tiled(
        predict_amp,
        image,
        tuple(cfg.data.patch_size),
        normalize=stats.normalize,
        device=device,
        **tiling,
    )
    outputs = {
        name: out if name == HIDDEN else stats.denormalize(out) for name, out in outputs.items()
    }
    if HIDDEN in outputs:
        _paste_raw(outputs, image.read())
    return outputs


def _paste_raw(outputs: dict[str, np.ndarray], raw: np.ndarray) -> None:
    """Masking views with the image's own values where a token is visible (exact: normalising
    and back is not, nor is percentile clipping) and, in ``masked``, hidden tokens at the whole
    image's per-channel minimum (each tile's own minimum would differ from tile to tile)."""
    hidden = np.broadcast_to(outputs[HIDDEN] > 0.5, raw.shape)
    raw = outputs["original"] = raw.astype(np.float32)
    low = raw.reshape(raw.shape[0], -1).min(axis=1).reshape(-1, *[1] * (raw.ndim - 1))
    outputs["masked"] = np.where(hidden, low, raw)
    outputs["reconstruction_and_visible"] = np.where(hidden, outputs["reconstruction"], raw)


@torch.no_grad()
def reconstruct_region(
    model: torch.nn.Module, cfg: Config, raw: np.ndarray, stats: NormStats, device: torch.device
) -> np.ndarray:
    """Live preview during training: the reconstruction of one region (C, *S), raw units, in
    the precision of inference (bf16 on an AMX CPU too, as the Reconstruct dock)."""
    if cfg.pretext.task == "crappify":
        p, whole = cfg.pretext, (stats.data_min, stats.data_max)  # as in training
        raw = crappify(raw, p.noise, p.resizing_factor, seed=cfg.system.seed, data_range=whole)
    outputs = _run(model, cfg, Image(raw, "preview"), stats, device, _autocast(device, cfg),
                   cfg.system.seed, **_tiling(cfg, None, None))  # fmt: skip
    key = "reconstruction" if cfg.pretext.task == "crappify" else "reconstruction_and_visible"
    return outputs[key].astype(np.float32)


def check_image(trained: TrainedModel, image: Image) -> None:
    cfg = trained.cfg
    if image.ndim != cfg.data.ndim:
        raise DataError(
            f"{image.name} is {image.ndim}D but the model was trained on {cfg.data.ndim}D images: "
            "change the 2D/3D choice or pick another image."
        )
    if image.channels != trained.in_channels:
        raise DataError(
            f"{image.name} has {image.channels} channel(s) but the model expects "
            f"{trained.in_channels}: set the channel axis to match."
        )


@torch.no_grad()
def reconstruct(
    trained: TrainedModel,
    image: Image,
    *,
    overlap: float | None = None,
    padding: tuple[int, ...] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    degrade: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Reconstruct a whole image; see the module docstring for the outputs.

    ``batch_size``: tiles per forward pass (default: the checkpoint's ``test.batch_size``).
    """
    check_image(trained, image)
    cfg = trained.cfg
    batch_size = batch_size or cfg.test.batch_size
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = trained.model.to(dev).eval()
    norm = {**norm_record(cfg.data), **trained.normalization}  # older files lack some keys
    extra: dict[str, np.ndarray] = {}
    source = image
    # as in training, a degraded copy is normalised with the clean image's statistics
    stats = stats_for(image, norm)
    if cfg.pretext.task == "crappify" and degrade:  # noise scaled to the range training used
        degraded = crappify(
            image.read(), cfg.pretext.noise, cfg.pretext.resizing_factor, seed=seed,
            data_range=(stats.data_min, stats.data_max),
        )  # fmt: skip
        source = Image(degraded, image.name, image.scale, image.translate)
        extra["degraded"] = degraded.astype(np.float32)
    outputs = _run(
        model, cfg, source, stats, dev, _autocast(dev, cfg), seed,
        batch_size=batch_size, progress=progress, cancelled=cancelled,
        **_tiling(cfg, overlap, padding),
    )  # fmt: skip
    return {**extra, **outputs}
