"""Checks made before a run starts: images against the config, memory against the model."""

from __future__ import annotations

import torch

from napari_ssl.config import Config
from napari_ssl.data.images import CHANNELS_SET_BY, MAX_CHANNELS, DataError, Image
from napari_ssl.data.normalization import NormStats
from napari_ssl.engine.device import host_memory_available


def check_images(cfg: Config, images: list[Image]) -> None:
    """Each image has the dimensionality and channel count the config asks for."""
    for img in images:
        if img.ndim != cfg.data.ndim:
            raise DataError(
                f"{img.name} is {img.ndim}D but the config says {cfg.data.ndim}D "
                "(PROBLEM.NDIM / the 2D-3D choice): change one of them."
            )
        if cfg.data.channels is not None and img.channels != cfg.data.channels:
            raise DataError(
                f"{img.name} has {img.channels} channel(s); the config expects {cfg.data.channels} "
                f"({CHANNELS_SET_BY})."
            )


def size_notes(images: list[Image], patch: tuple[int, ...]) -> list[str]:
    """A note for each image smaller than the patch (it is padded, not refused), and one when
    the images have more channels than a microscope gives (a stack read as channels?)."""
    notes = [
        f"{img.name} {img.spatial_shape} is smaller than the patch {patch}: it is reflect-padded."
        for img in images
        if any(s < p for s, p in zip(img.spatial_shape, patch, strict=True))
    ]
    if images and images[0].channels > MAX_CHANNELS and len(patch) == 2:
        notes.append(
            f"{images[0].name} is read as {images[0].channels} channels of 2D images: if these "
            "are Z slices or time points, train in 3D instead (PROBLEM.NDIM); a model of "
            f"{images[0].channels} channels only takes images of {images[0].channels} channels."
        )
    return notes


def constant_notes(images: list[Image], stats: list[NormStats]) -> list[str]:
    """A note for each image that is constant (after percentile clipping, when on)."""
    return [
        f"{img.name} is constant{' after percentile clipping' * (st.clip_lo is not None)} "
        f"(every pixel {st.data_min:g}): there is nothing to learn from it."
        for img, st in zip(images, stats, strict=True)
        if st.data_min == st.data_max
    ]


def check_memory(cfg: Config, device: torch.device, in_channels: int) -> None:
    """Refuse an MAE whose training cannot fit in the free GPU memory or the available RAM."""
    if cfg.model.architecture != "mae" or device.type not in ("cuda", "cpu"):
        return
    from napari_ssl.models.mae import estimate_mae_memory

    need = estimate_mae_memory(
        cfg.model, cfg.data.ndim, tuple(cfg.data.patch_size), cfg.train.batch_size, in_channels,
        0.5 if cfg.pretext.mask_type == "grid" else cfg.pretext.mask_ratio,
    )  # fmt: skip
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else host_memory_available()
    if free is not None and need > free:
        raise ValueError(
            f"training this MAE needs about {need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB are "
            f"free on {device}: lower the batch size (TRAIN.BATCH_SIZE) or the patch size "
            "(DATA.PATCH_SIZE), or use a smaller preset (tiny/small) or MODEL.VIT_EMBED_DIM."
        )
