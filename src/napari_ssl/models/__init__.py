"""Model registry: architecture name -> builder, config check and BiaPy build kwargs.

Architecture modules are imported lazily, so importing this package does not import torch;
nor does checking a configuration or writing BiaPy's build kwargs (``*_config`` modules).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari_ssl.config import ConfigError, ModelConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "available_architectures",
    "build_kwargs",
    "build_model",
    "check_model_config",
    "count_parameters",
]


@dataclass(frozen=True)
class _Entry:
    """Where an architecture's functions live, as "module:function" (imported on first use)."""

    build: str  # (cfg, ndim, in_channels, patch_size) -> nn.Module
    check: str  # (cfg, ndim, patch_size) -> None, raises ConfigError
    kwargs: str  # (cfg, ndim, in_channels, patch_size) -> BiaPy's model_build_kwargs

    def function(self, role: str) -> Callable[..., Any]:
        module, name = getattr(self, role).split(":")
        return getattr(importlib.import_module(module), name)


_UNET = "napari_ssl.models.unet_config"  # checks and kwargs live apart from torch
_MAE = "napari_ssl.models.mae_config"
_REGISTRY: dict[str, _Entry] = {
    "unet": _Entry(
        "napari_ssl.models.unet:build_unet",
        f"{_UNET}:check_unet_config",
        f"{_UNET}:unet_build_kwargs",
    ),
    "resunet": _Entry(
        "napari_ssl.models.resunet:build_resunet",
        f"{_UNET}:check_unet_config",
        f"{_UNET}:unet_build_kwargs",
    ),
    "mae": _Entry(
        "napari_ssl.models.mae:build_mae", f"{_MAE}:check_mae_config", f"{_MAE}:mae_build_kwargs"
    ),
}


def available_architectures() -> tuple[str, ...]:
    """Names accepted in ``ModelConfig.architecture`` (BiaPy's MODEL.ARCHITECTURE)."""
    return tuple(_REGISTRY)


def _entry(cfg: ModelConfig) -> _Entry:
    name = str(cfg.architecture).lower()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown architecture (MODEL.ARCHITECTURE) {cfg.architecture!r}; "
            f"available: {list(_REGISTRY)}"
        )
    return _REGISTRY[name]


def check_model_config(cfg: ModelConfig, ndim: int, patch_size: tuple[int, ...]) -> None:
    """Raise :class:`ConfigError` (with a fix) when ``cfg`` cannot build a model for the patch."""
    _entry(cfg).function("check")(cfg, ndim, tuple(patch_size))


def build_model(
    cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...]
) -> nn.Module:
    """Check ``cfg`` and build its network for ``in_channels``-channel patches."""
    if int(in_channels) < 1:
        raise ConfigError(f"the input needs at least one channel, got {in_channels}")
    return _entry(cfg).function("build")(cfg, ndim, int(in_channels), tuple(patch_size))


def build_kwargs(
    cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...], **extra: Any
) -> dict[str, Any]:
    """The ``model_build_kwargs`` BiaPy 3.7.1 stores in a checkpoint (plain builtins only).

    ``extra`` goes to architectures that record more (mae: ``mask_type``, ``mask_ratio``).
    """
    return _entry(cfg).function("kwargs")(cfg, ndim, int(in_channels), tuple(patch_size), **extra)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values in ``model`` (optionally only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
