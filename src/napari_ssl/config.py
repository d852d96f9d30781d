"""Typed configuration shared by the GUI, the CLI and checkpoints.

One :class:`Config` describes a whole job. It saves to and loads from our own YAML layout
(:func:`save_yaml` / :func:`load_yaml`); BiaPy's self-supervised YAML is read and written by
:mod:`napari_ssl.biapy_config`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PretextTask = Literal["crappify", "masking"]
Normalization = Literal["zero_mean_unit_variance", "scale_range", "div"]
MaskType = Literal["random", "grid"]

MAE_ARCHITECTURES = ("mae",)
NORMALIZATIONS = ("zero_mean_unit_variance", "scale_range", "div")
VIT_PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


@dataclass
class DataConfig:
    ndim: int = 2
    patch_size: tuple[int, ...] = (256, 256)  # spatial only: (Y, X) or (Z, Y, X)
    channels: int | None = None  # expected channels (last entry of BiaPy PATCH_SIZE); None = any
    train_path: str = ""
    test_path: str = ""
    val_path: str = ""  # validation images of their own; "": val_fraction of the training data
    normalization: Normalization = "zero_mean_unit_variance"
    percentile_clip: tuple[float, float] | None = None  # e.g. (0.1, 99.9), applied first
    # fixed zero_mean_unit_variance values in raw units, one for all channels or one per channel;
    # None = each image's own (after clipping)
    normalization_mean: tuple[float, ...] | None = None
    normalization_std: tuple[float, ...] | None = None
    val_fraction: float = 0.1
    test_overlap: float = 0.25  # fraction of the tile shared with each neighbour
    test_padding: tuple[int, ...] | None = None  # per side, spatial; None = tile // 8


@dataclass
class PretextConfig:
    task: PretextTask = "crappify"
    noise: float = 0.2  # Gaussian std as a fraction of the image max (clipped, with PERC_CLIP)
    resizing_factor: float = 4.0  # area factor: each axis is scaled by 1/sqrt(factor)
    mask_type: MaskType = "grid"
    mask_ratio: float = 0.5
    norm_pix_loss: bool = False


@dataclass
class ModelConfig:
    architecture: str = "unet"
    feature_maps: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    kernel_size: int = 3
    norm: str = "in"  # BiaPy MODEL.NORMALIZATION: "in", "bn", "sync_bn", "none"
    activation: str = "elu"
    upsample_layer: str = "convtranspose"
    z_down: tuple[int, ...] = (2, 2, 2, 2)
    # vision transformer (mae)
    vit_preset: str | None = None  # "tiny" | "small" | "base": overrides the three numbers below
    vit_token_size: int = 16
    vit_embed_dim: int = 768
    vit_num_layers: int = 12
    vit_num_heads: int = 12
    vit_mlp_ratio: float = 4.0
    vit_norm_eps: float = 1e-6
    mae_dec_hidden_size: int = 512
    mae_dec_num_layers: int = 8
    mae_dec_num_heads: int = 16
    mae_dec_mlp_dims: int = 2048
    # loading
    load_checkpoint: bool = False
    checkpoint_file: str = ""


@dataclass
class TrainConfig:
    enable: bool = True
    optimizer: str = "ADAMW"  # "ADAMW" | "ADAM" | "SGD"
    lr: float = 1e-4
    # BiaPy's TRAIN.LR_SCHEDULER ("" = constant lr); napari_ssl.engine.lr_schedule applies it
    lr_schedule: str = ""  # or one of validation.LR_SCHEDULES
    min_lr: float = -1.0  # warmupcosine's floor, reduceonplateau's; -1: not given
    warmup_epochs: int = -1  # warmupcosine: linear ramp from 0 over these epochs (<= 0: none)
    cosine_decay_fraction: float = -1.0  # warmupcosine: decay over this last part (<= 0: all)
    plateau_factor: float = 0.5  # reduceonplateau: lr times this after ...
    plateau_patience: int = -1  # ... this many epochs without a better validation loss
    weight_decay: float = 0.02
    batch_size: int = 6
    epochs: int = 100
    patience: int = 20  # epochs without val-loss improvement; <= 0 disables early stopping
    loss: Literal["l1", "mse"] = "l1"
    patches_per_epoch: int | None = None  # None: as many patches as cover the training data once
    augment: bool = True  # flips and 90-degree rotations, p = 0.5 each
    # auto = bf16 on CUDA, and for inference on CPUs with AMX
    mixed_precision: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True  # CUDA only
    compile: bool = False
    log_every: int = 10  # steps between step events (a host sync each)


@dataclass
class SystemConfig:
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    seed: int = 0
    # threads reading lazy images (dask, zarr, memory-mapped) ahead: -1 = min(4, CPUs), 0 = none
    num_workers: int = -1


@dataclass
class TestConfig:
    enable: bool = True
    batch_size: int = 4


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    pretext: PretextConfig = field(default_factory=PretextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    system: SystemConfig = field(default_factory=SystemConfig)

    def validate(self) -> Config:
        """Check values and combinations; raise :class:`ConfigError` naming the key."""
        from napari_ssl.validation import validate_config

        validate_config(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s): {sorted(unknown)}")
        cfg = cls()
        for name, values in data.items():
            section = getattr(cfg, name)
            _update_section(section, values or {}, name)
        return cfg


def _update_section(section: Any, values: dict[str, Any], prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(section)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"unknown key(s) in '{prefix}': {sorted(unknown)}; known: {sorted(known)}"
        )
    for key, value in values.items():
        default = getattr(section, key)
        if isinstance(value, list) and (isinstance(default, tuple) or default is None):
            value = tuple(value)
        setattr(section, key, value)


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively, for YAML / JSON / checkpoint metadata."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


VIT_SIZES = ("vit_embed_dim", "vit_num_layers", "vit_num_heads")  # what a preset sets


def save_yaml(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` in our layout; a ViT preset's sizes are written as the model has them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cfg.to_dict()
    if cfg.model.vit_preset in VIT_PRESETS:
        data["model"].update(_preset_sizes(cfg.model.vit_preset))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _preset_sizes(preset: str) -> dict[str, int]:
    """The ViT sizes a preset sets, by field name."""
    return dict(zip(VIT_SIZES, VIT_PRESETS[preset], strict=True))


def _warn_unused_vit_sizes(model: Any, cfg: Config, source: str) -> None:
    """Warn when a file sets ViT sizes that its ``vit_preset`` overrides."""
    preset = cfg.model.vit_preset
    if not isinstance(model, dict) or preset not in VIT_PRESETS:
        return
    given = {k: model[k] for k in VIT_SIZES if k in model}
    sizes = _preset_sizes(preset)
    unused = {k: v for k, v in given.items() if v != sizes[k]}
    if unused:
        warnings.warn(
            f"{source}: model.vit_preset '{preset}' sets the ViT's sizes "
            f"({', '.join(f'{k} {v}' for k, v in sizes.items())}): "
            f"{', '.join(f'{k} {v}' for k, v in unused.items())} in the file "
            f"{'is' if len(unused) == 1 else 'are'} not used. To use "
            f"{'it' if len(unused) == 1 else 'them'}, set model.vit_preset to null.",
            UserWarning,
            stacklevel=3,
        )


def _parse(text: str) -> tuple[Any, yaml.Node | None]:
    """``yaml.safe_load(text)`` and the node it was built from (read once for both)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node | None, prefix: str = "") -> list[str]:
    """Dotted keys that a YAML mapping in ``node`` gives more than once (``DATA`` twice)."""
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: set[str] = set()
    found: list[str] = []
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen and key not in found:
            found.append(key)
        seen.add(key)
        found.extend(_duplicate_keys(value_node, f"{key}."))
    return found


def enable_training(cfg: Config, source: str) -> Config:
    """``cfg`` with TRAIN.ENABLE on, said in a warning when it was off (BiaPy's default)."""
    if not cfg.train.enable:
        cfg.train.enable = True
        warnings.warn(f"{source}: TRAIN.ENABLE is off in the file: the docks train", stacklevel=2)
    return cfg


def load_yaml(path: str | Path, train: bool = False) -> Config:
    """Load our YAML layout, or BiaPy's (detected by its upper-case sections); ``train``: the
    caller always trains (the docks), so training is enabled, with a warning if it was off."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file: give the YAML file itself")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data, node = _parse(path.read_text())
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not a text file: give a YAML config ({err.reason})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    for key in _duplicate_keys(node):
        warnings.warn(
            f"{path}: {key} is given twice: only its last value is read (YAML keeps the last; "
            "BiaPy does the same, silently). Merge the two into one.",
            UserWarning,
            stacklevel=2,
        )
    if data is None:
        raise ConfigError(f"{path} is empty: give a napari-ssl or BiaPy self-supervised config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        if any(isinstance(k, str) and k.isupper() for k in data):
            from napari_ssl.biapy_config import from_biapy

            return from_biapy(data, source=str(path), train=train)
        cfg = Config.from_dict(data)
        _warn_unused_vit_sizes(data.get("model"), cfg, str(path))
        return enable_training(cfg, str(path)) if train else cfg
    except (TypeError, AttributeError) as err:  # e.g. a section that is a number, not a mapping
        raise ConfigError(f"{path}: a section or value has the wrong kind ({err})") from err
