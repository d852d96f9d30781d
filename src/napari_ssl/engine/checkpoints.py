"""Checkpoints in BiaPy 3.7.1's ``.pth`` layout, safe loading, and safetensors export.

Keys, as BiaPy writes them: ``model`` (state dict, no DDP ``module.`` prefix),
``model_build_kwargs``, ``optimizer`` (a list of state dicts), ``epoch``, ``cfg`` (a plain dict in
BiaPy's key layout); ours in addition: ``normalization``, ``napari_ssl_config``,
``napari_ssl_version``, ``train_state`` (resume). Only tensors and builtins go in, so everything
loads with ``torch.load(weights_only=True)``; nothing is ever unpickled beyond that.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_ssl import __version__
from napari_ssl.config import Config, ConfigError, save_yaml


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


@dataclass
class TrainedModel:
    """A model ready for inference, with what is needed to use it on new images."""

    model: torch.nn.Module
    cfg: Config
    in_channels: int
    epoch: int = 0
    path: str = ""
    normalization: dict[str, Any] = field(default_factory=dict)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP (``module``) and torch.compile (``_orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def state_dict_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights without DDP's ``module.`` or torch.compile's ``_orig_mod.`` prefixes."""
    inner = unwrap(model)
    return {
        k: v.detach().clone() if v.is_cuda else v.detach() for k, v in inner.state_dict().items()
    }


def model_kwargs(cfg: Config, in_channels: int) -> dict[str, Any]:
    """BiaPy's ``model_build_kwargs`` for this config (mae also records its mask)."""
    from napari_ssl.models import build_kwargs

    extra = {}
    if cfg.model.architecture == "mae":
        extra = {"mask_type": cfg.pretext.mask_type, "mask_ratio": cfg.pretext.mask_ratio}
    return build_kwargs(cfg.model, cfg.data.ndim, in_channels, tuple(cfg.data.patch_size), **extra)


def make_payload(
    model: torch.nn.Module,
    cfg: Config,
    in_channels: int,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from napari_ssl.biapy_config import to_biapy

    payload: dict[str, Any] = {
        "model_build_kwargs": model_kwargs(cfg, in_channels),
        "model": {k: v.cpu() for k, v in state_dict_of(model).items()},
        "epoch": epoch,
        "cfg": to_biapy(cfg),
        "biapy_version": "3.7.1",
        "normalization": {
            "type": cfg.data.normalization,
            "percentile_clip": list(cfg.data.percentile_clip) if cfg.data.percentile_clip else None,
            "per_image": True,
        },
        "in_channels": in_channels,
        "napari_ssl_config": cfg.to_dict(),
        "napari_ssl_version": __version__,
    }
    if optimizer is not None:
        payload["optimizer"] = [optimizer.state_dict()]
    if train_state is not None:
        payload["train_state"] = train_state
    return payload


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a crash never leaves a broken file at ``path``."""
    from napari_ssl.results import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; files that need pickled objects are refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: '{path}'. Check PATHS.CHECKPOINT_FILE.")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"'{path.name}' holds pickled Python objects, which could run code when loaded, so it "
            "is refused. Re-save it as a plain dict of tensors (e.g. {'model': state_dict})."
        ) from err
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint '{path}': {err}") from err
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"'{path.name}' is not a model checkpoint (no 'model' entry).")
    return data


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    data: dict[str, Any] = {"model": weights}
    for key in ("napari_ssl_config", "cfg", "normalization", "model_build_kwargs"):
        if key in meta:
            data[key] = json.loads(meta[key])
    for key in ("epoch", "in_channels"):
        if key in meta:
            data[key] = int(meta[key])
    return data


def config_of(data: dict[str, Any]) -> Config:
    """The job config stored in a checkpoint (ours, or rebuilt from BiaPy's ``cfg``)."""
    try:
        if "napari_ssl_config" in data:
            return Config.from_dict(data["napari_ssl_config"])
        if "cfg" in data:
            from napari_ssl.biapy_config import from_biapy

            return from_biapy(data["cfg"], source="checkpoint cfg", warn=False)
    except ConfigError as err:
        raise CheckpointError(f"the checkpoint's configuration is not usable: {err}") from err
    raise CheckpointError("the checkpoint has no configuration ('cfg'): cannot rebuild the model.")


def in_channels_of(data: dict[str, Any], cfg: Config) -> int:
    if "in_channels" in data:
        return int(data["in_channels"])
    kwargs = data.get("model_build_kwargs") or {}
    for key in ("image_shape", "in_chans"):
        if key in kwargs:
            value = kwargs[key]
            return int(value[-1] if isinstance(value, (list, tuple)) else value)
    return int(cfg.data.channels or 1)


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """strict load with a message that names the mismatch instead of torch's wall of keys."""
    weights = {k.removeprefix("module."): v for k, v in weights.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape differs", wrong),
            )
            if keys
        )
        raise CheckpointError(
            f"{source} does not fit this model ({detail}). It was trained with another "
            "architecture or settings: use the same MODEL settings as the checkpoint."
        )
    model.load_state_dict(weights, strict=True)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the model of a checkpoint (ours or BiaPy's) for inference."""
    from napari_ssl.models import build_model

    data = read_checkpoint(path)
    cfg = config_of(data)
    in_channels = in_channels_of(data, cfg)
    model = build_model(cfg.model, cfg.data.ndim, in_channels, tuple(cfg.data.patch_size))
    load_weights(model, data["model"], f"'{Path(path).name}'")
    model.to(device).eval()
    return TrainedModel(
        model,
        cfg,
        in_channels,
        int(data.get("epoch", 0)),
        str(path),
        data.get("normalization") or {},
    )


def export_safetensors(trained: TrainedModel, path: str | Path) -> Path:
    """Weights as safetensors, with the config (ours and BiaPy's) as JSON metadata."""
    from safetensors.torch import save_file

    from napari_ssl.biapy_config import to_biapy
    from napari_ssl.results import atomic_write

    cfg = trained.cfg
    meta = {
        "napari_ssl_config": json.dumps(cfg.to_dict()),
        "cfg": json.dumps(to_biapy(cfg)),
        "normalization": json.dumps(trained.normalization),
        "model_build_kwargs": json.dumps(model_kwargs(cfg, trained.in_channels)),
        "epoch": str(trained.epoch),
        "in_channels": str(trained.in_channels),
        "napari_ssl_version": __version__,
    }
    weights = {k: v.contiguous().cpu() for k, v in state_dict_of(trained.model).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_file(weights, str(tmp), metadata=meta)
    return path


def export_checkpoint(trained: TrainedModel, out_dir: str | Path, name: str) -> dict[str, Path]:
    """``<name>.pth`` (BiaPy layout), ``<name>.safetensors`` and ``<name>.yaml`` in ``out_dir``."""
    from napari_ssl.results import check_plain_name

    check_plain_name(name, "name")
    out_dir = Path(out_dir)
    payload = make_payload(trained.model, trained.cfg, trained.in_channels, trained.epoch)
    payload["normalization"] = trained.normalization or payload["normalization"]
    return {
        "pth": save_checkpoint(payload, out_dir / f"{name}.pth"),
        "safetensors": export_safetensors(trained, out_dir / f"{name}.safetensors"),
        "yaml": save_yaml(trained.cfg, out_dir / f"{name}.yaml"),
    }
