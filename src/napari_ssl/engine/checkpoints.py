"""Checkpoints in BiaPy 3.7.1's ``.pth`` layout, safe loading, and safetensors export.

Keys, as BiaPy writes them: ``model`` (state dict, no DDP ``module.`` prefix),
``model_build_kwargs``, ``optimizer`` (a list of state dicts), ``epoch``, ``cfg`` (a plain dict in
BiaPy's key layout); ours in addition: ``normalization``, ``napari_ssl_config``,
``napari_ssl_version``, ``train_state`` (resume). Only tensors and builtins go in, so everything
loads with ``torch.load(weights_only=True)``; nothing is ever unpickled beyond that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_ssl import __version__
from napari_ssl.config import Config, ConfigError, save_yaml
from napari_ssl.data.normalization import norm_record


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


# BiaPy resolves these MODEL lists before it saves its cfg; ours must be resolved too, or
# BiaPy's fine-tuning merge (MODEL.LOAD_CHECKPOINT) keeps its own lengths and then refuses them.
_RESOLVED = {"yx_down": "YX_DOWN", "z_down": "Z_DOWN", "drop_values": "DROPOUT_VALUES",
             "isotropy": "ISOTROPY", "conv_layers": "CONV_LAYERS"}  # fmt: skip


def biapy_cfg(cfg: Config, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``cfg``: BiaPy's layout, MODEL lists resolved as in ``kwargs``."""
    from napari_ssl.biapy_export import to_biapy

    out = to_biapy(cfg)
    out["MODEL"].update({name: list(kwargs[k]) for k, name in _RESOLVED.items() if k in kwargs})
    return out


def make_payload(
    model: torch.nn.Module,
    cfg: Config,
    in_channels: int,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    kwargs = model_kwargs(cfg, in_channels)
    payload: dict[str, Any] = {
        "model_build_kwargs": kwargs,
        "model": {k: v.cpu() for k, v in state_dict_of(model).items()},
        "epoch": epoch,
        "cfg": biapy_cfg(cfg, kwargs),
        "biapy_version": "3.7.1",
        "normalization": norm_record(cfg.data),
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

    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` or safetensors; pickled objects are refused. Like
    BiaPy, weights under ``model_state_dict`` / ``state_dict`` or a bare state dict are accepted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: '{path}'. Check PATHS.CHECKPOINT_FILE.")
    try:
        if path.suffix == ".safetensors":
            data = _read_safetensors(path)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many kinds for a bad file
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        first = str(err).strip().split("\n")[0].split(". ")[0][:120]
        why = (
            f"it holds a pickled Python object ({found.group(1)}) that could run code, so it is "
            "refused (older BiaPy versions store their config so): re-save it as a dict of "
            "tensors and builtins, e.g. {'model': state_dict}"
            if found
            else "it is not a .pth / .safetensors checkpoint, or it is damaged (e.g. an "
            f"incomplete copy) ({type(err).__name__}: {first})"
        )
        raise CheckpointError(f"cannot read '{path.name}': {why}.") from err
    return _with_weights(data, path.name)


def _with_weights(data: Any, name: str) -> dict[str, Any]:
    """``data`` with its state dict under ``model``, checked to map names to tensors."""
    keys = ("model", "model_state_dict", "state_dict")
    key = next((k for k in keys if k in data), None) if isinstance(data, dict) else None
    weights = data if key is None else data[key]
    if not (isinstance(weights, dict) and weights and all(map(torch.is_tensor, weights.values()))):
        what = f"its '{key}' entry is" if key else f"it holds a {type(data).__name__} that is"
        raise CheckpointError(
            f"'{name}' is not a model checkpoint: {what} not a state dict (names -> tensors)."
        )
    return {**data, "model": weights} if key else {"model": weights}


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        weights = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    as_json = ("napari_ssl_config", "cfg", "normalization", "model_build_kwargs")
    data = {k: json.loads(v) if k in as_json else int(v) for k, v in meta.items()
            if k in (*as_json, "epoch", "in_channels")}  # fmt: skip
    return {**data, "model": weights}


def config_of(data: dict[str, Any]) -> Config:
    """The job config stored in a checkpoint (ours, or rebuilt from BiaPy's ``cfg``)."""
    try:
        if "napari_ssl_config" in data:
            return Config.from_dict(data["napari_ssl_config"])
        if "cfg" in data:
            from napari_ssl.biapy_config import from_biapy

            cfg = from_biapy(data["cfg"], source="checkpoint cfg", warn=False)
            _built_decoder(cfg, data.get("model_build_kwargs") or {})
            return cfg
    except ConfigError as err:
        raise CheckpointError(f"the checkpoint's configuration is not usable: {err}") from err
    raise CheckpointError(
        "the checkpoint holds weights but no configuration ('cfg') to rebuild its model from "
        "(BiaPy's .safetensors files hold none): use the run's .pth, or a checkpoint written by "
        "napari-ssl (its .safetensors too) or by BiaPy >= 3.5.1 as .pth."
    )


def _built_decoder(cfg: Config, kwargs: dict[str, Any]) -> None:
    """BiaPy ignores MODEL.MAE_DEC_* and builds the mae decoder its kwargs record."""
    if cfg.model.architecture == "mae" and "decoder_embed_dim" in kwargs:
        m, dim = cfg.model, int(kwargs["decoder_embed_dim"])
        m.mae_dec_hidden_size, m.mae_dec_mlp_dims = dim, int(dim * float(kwargs["mlp_ratio"]))
        m.mae_dec_num_layers = int(kwargs["decoder_depth"])
        m.mae_dec_num_heads = int(kwargs["decoder_num_heads"])


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
    weights = {re.sub(r"^((module|_orig_mod)\.)+", "", k): v for k, v in weights.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' * (len(keys) > 3)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected),
                                ("shape differs", wrong))
            if keys
        )  # fmt: skip
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
    epoch = data.get("epoch", 0)  # BiaPy writes "best" for its best checkpoint
    epoch = epoch if isinstance(epoch, int) else 0
    return TrainedModel(model, cfg, in_channels, epoch, str(path), data.get("normalization") or {})


def export_safetensors(trained: TrainedModel, path: str | Path) -> Path:
    """Weights as safetensors, with the config (ours and BiaPy's) as JSON metadata."""
    from safetensors.torch import save_file

    from napari_ssl.results import atomic_write

    cfg, kwargs = trained.cfg, model_kwargs(trained.cfg, trained.in_channels)
    meta = {
        "napari_ssl_config": json.dumps(cfg.to_dict()),
        "cfg": json.dumps(biapy_cfg(cfg, kwargs)),
        "normalization": json.dumps(trained.normalization),
        "model_build_kwargs": json.dumps(kwargs),
        "epoch": str(trained.epoch),
        "in_channels": str(trained.in_channels),
        "napari_ssl_version": __version__,
    }
    weights = {k: v.contiguous().cpu() for k, v in state_dict_of(trained.model).items()}
    with atomic_write(path) as tmp:
        save_file(weights, str(tmp), metadata=meta)
    return Path(path)


def export_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """The files :func:`export_checkpoint` writes, by kind; ``name`` must be a plain name."""
    from napari_ssl.results import check_plain_name

    check_plain_name(name, "name")
    return {kind: Path(out_dir) / f"{name}.{kind}" for kind in ("pth", "safetensors", "yaml")}


def export_checkpoint(trained: TrainedModel, out_dir: str | Path, name: str) -> dict[str, Path]:
    """``<name>.pth`` (BiaPy layout), ``<name>.safetensors`` and ``<name>.yaml`` in ``out_dir``."""
    paths = export_paths(out_dir, name)
    payload = make_payload(trained.model, trained.cfg, trained.in_channels, trained.epoch)
    payload["normalization"] = trained.normalization or payload["normalization"]
    return {
        "pth": save_checkpoint(payload, paths["pth"]),
        "safetensors": export_safetensors(trained, paths["safetensors"]),
        "yaml": save_yaml(trained.cfg, paths["yaml"]),
    }
