"""The U-Net family's configuration, without torch: BiaPy's choices, :class:`UNetSpec`,
:func:`unet_spec`, :func:`check_unet_config` and :func:`unet_build_kwargs` (the docks check a
configuration before torch is imported)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from napari_ssl.config import ConfigError, ModelConfig

# BiaPy's MODEL.NORMALIZATION values that build a model. "sync_bn" builds plain BatchNorm (same
# state dict); the training engine converts it with nn.SyncBatchNorm.convert_sync_batchnorm.
NORMS = ("in", "bn", "sync_bn", "none")
# BiaPy's MODEL.ACTIVATION values.
ACTIVATIONS = (
    "relu",
    "tanh",
    "leaky_relu",
    "elu",
    "gelu",
    "silu",
    "sigmoid",
    "softmax",
    "linear",
    "softplus",
    "none",
)
# Activations BiaPy applies in place (this matters in a residual block without normalisation).
INPLACE_ACTIVATIONS = frozenset({"relu", "leaky_relu", "elu", "silu"})
UPSAMPLE_LAYERS = ("convtranspose", "upsampling")


@dataclass(frozen=True)
class UNetSpec:
    """Everything that shapes a U-Net-family network (BiaPy's MODEL.* U-Net keys)."""

    ndim: int = 2
    in_channels: int = 1
    feature_maps: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: tuple[float, ...] | None = None  # one per level; None: no dropout
    kernel_size: int = 3
    norm: str = "in"
    activation: str = "elu"
    upsample_layer: str = "convtranspose"
    z_down: tuple[int, ...] | None = None  # 3D: Z pooling per pooled level (1 or 2); None: 2

    @property
    def depth(self) -> int:
        """Number of poolings (levels minus one)."""
        return len(self.feature_maps) - 1

    def drop(self, level: int) -> float:
        return 0.0 if self.dropout is None else float(self.dropout[level])

    def factors(self, level: int) -> tuple[int, ...]:
        """Pooling / upsampling factor of one level: (Z, Y, X) in 3D, (Y, X) in 2D."""
        if self.ndim == 2:
            return (2, 2)
        return (2 if self.z_down is None else int(self.z_down[level]), 2, 2)


def _resolved_dropout(cfg: ModelConfig) -> tuple[float, ...]:
    """One dropout per level; all zeros (or one value) are spread over the levels."""
    levels = len(cfg.feature_maps)
    values = tuple(float(v) for v in cfg.dropout)
    if len(values) == levels:
        return values
    if not values or all(v == 0 for v in values):
        return (0.0,) * levels
    if len(values) == 1:
        return values * levels
    raise ConfigError(
        f"dropout (MODEL.DROPOUT_VALUES) has {len(values)} values but feature maps "
        f"(MODEL.FEATURE_MAPS) has {levels} levels: give one dropout value per level "
        f"(e.g. {[0.0] * levels})"
    )


def _resolved_z_down(cfg: ModelConfig, ndim: int) -> tuple[int, ...]:
    """Z pooling per pooled level; all zeros means BiaPy's automatic 2, one value is spread."""
    depth = len(cfg.feature_maps) - 1
    values = tuple(int(v) for v in cfg.z_down)
    if not values or all(v == 0 for v in values):
        return (2,) * depth
    if len(values) == depth:
        return values
    if len(set(values)) == 1:
        return (values[0],) * depth
    if ndim == 2:  # Z is never pooled in 2D: keep BiaPy's automatic value
        return (2,) * depth
    raise ConfigError(
        f"Z downsampling (MODEL.Z_DOWN) has {len(values)} values but the U-Net pools {depth} "
        f"times (one less than the {depth + 1} levels of MODEL.FEATURE_MAPS): give {depth} "
        f"values, each 1 (keep Z) or 2 (halve Z)"
    )


def unet_spec(cfg: ModelConfig, ndim: int, in_channels: int) -> UNetSpec:
    """The network described by ``cfg`` (one output channel per input channel)."""
    return UNetSpec(
        ndim=ndim,
        in_channels=in_channels,
        feature_maps=tuple(int(f) for f in cfg.feature_maps),
        dropout=_resolved_dropout(cfg),
        kernel_size=int(cfg.kernel_size),
        norm=cfg.norm,
        activation=cfg.activation.lower(),
        upsample_layer=cfg.upsample_layer.lower(),
        z_down=_resolved_z_down(cfg, ndim) if ndim == 3 else None,
    )


def _axis_fits(size: int, factors: tuple[int, ...]) -> bool:
    """BiaPy's rule: before each pooling the axis is larger than 2 and divisible by the factor."""
    for factor in factors:
        if size <= 2 or size % factor:
            return False
        size //= factor
    return True


def _nearest_fits(size: int, factors: tuple[int, ...]) -> list[int]:
    """The closest valid sizes below and above ``size``."""
    step = math.prod(factors)
    found = []
    below = size - size % step
    while below > 0 and not _axis_fits(below, factors):
        below -= step
    if below > 0:
        found.append(below)
    above = -(-(size + 1) // step) * step
    while not _axis_fits(above, factors):
        above += step
    return [*found, above]


def _axis_problem(name: str, size: int, factors: tuple[int, ...]) -> str | None:
    if _axis_fits(size, factors):
        return None
    step = math.prod(factors)
    smallest = _nearest_fits(1, factors)[-1]
    rule = f"a multiple of {step} and at least {smallest}" if step > 1 else f"at least {smallest}"
    nearest = " or ".join(str(s) for s in _nearest_fits(size, factors))
    return f"{name} = {size} must be {rule} (nearest valid: {nearest})"


def _check_patch(cfg: ModelConfig, spec: UNetSpec, patch_size: tuple[int, ...]) -> None:
    axes = "ZYX"[3 - spec.ndim :]
    problems = []
    for axis, name, size in zip(range(spec.ndim), axes, patch_size, strict=True):
        factors = tuple(spec.factors(level)[axis] for level in range(spec.depth))
        problem = _axis_problem(name, size, factors)
        if problem:
            problems.append(problem)
    if not problems:
        return
    hint = "use fewer levels in feature maps (MODEL.FEATURE_MAPS)"
    if spec.ndim == 3 and problems[0].startswith("Z ="):
        hint += ", or pool Z less: set some Z downsampling (MODEL.Z_DOWN) values to 1"
    raise ConfigError(
        f"The patch size (DATA.PATCH_SIZE) ({', '.join(axes)}) = {tuple(patch_size)} does not "
        f"fit the {cfg.architecture}: its {spec.depth + 1} levels (MODEL.FEATURE_MAPS = "
        f"{list(spec.feature_maps)}) pool the patch {spec.depth} times, so "
        + "; ".join(problems)
        + f". Change the patch size, or {hint}."
    )


def check_unet_config(cfg: ModelConfig, ndim: int, patch_size: tuple[int, ...]) -> None:
    """Raise :class:`ConfigError` with a fix when ``cfg`` cannot build a U-Net for the patch."""
    if ndim not in (2, 3):
        raise ConfigError(f"ndim must be 2 or 3, got {ndim}")
    if len(patch_size) != ndim or any(int(s) < 1 for s in patch_size):
        raise ConfigError(
            f"the patch size (DATA.PATCH_SIZE) must give {ndim} positive spatial sizes "
            f"({'Z, Y, X' if ndim == 3 else 'Y, X'}), got {tuple(patch_size)}"
        )
    if len(cfg.feature_maps) < 3 or any(int(f) < 1 for f in cfg.feature_maps):
        raise ConfigError(
            "feature maps (MODEL.FEATURE_MAPS) needs at least 3 positive values (one per "
            f"level, e.g. [16, 32, 64, 128, 256]), got {list(cfg.feature_maps)}"
        )
    if int(cfg.kernel_size) < 1:
        raise ConfigError(f"kernel size (MODEL.KERNEL_SIZE) must be >= 1, got {cfg.kernel_size}")
    _check_choices(cfg)
    spec = unet_spec(cfg, ndim, 1)
    if any(not 0 <= p < 1 for p in spec.dropout or ()):
        raise ConfigError(f"dropout (MODEL.DROPOUT_VALUES) must be in [0, 1), got {spec.dropout}")
    if ndim == 3 and any(z not in (1, 2) for z in spec.z_down or ()):
        raise ConfigError(
            f"Z downsampling (MODEL.Z_DOWN) values must be 1 or 2, got {list(cfg.z_down)}"
        )
    _check_patch(cfg, spec, tuple(int(s) for s in patch_size))


def _check_choices(cfg: ModelConfig) -> None:
    if cfg.norm in ("gn", "ln"):
        raise ConfigError(
            f"normalization (MODEL.NORMALIZATION) {cfg.norm!r} is not supported: BiaPy 3.7.1 "
            "cannot build U-Nets with it, so such a checkpoint could not be used there; "
            f"choose one of {list(NORMS)} ('in' is BiaPy's default)"
        )
    choices = (
        ("normalization (MODEL.NORMALIZATION)", cfg.norm, NORMS),
        ("activation (MODEL.ACTIVATION)", cfg.activation.lower(), ACTIVATIONS),
        ("upsample layer (MODEL.UPSAMPLE_LAYER)", cfg.upsample_layer.lower(), UPSAMPLE_LAYERS),
    )
    for what, value, allowed in choices:
        if value not in allowed:
            raise ConfigError(f"{what} {value!r} is not one of {list(allowed)}")


def unet_build_kwargs(
    cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...]
) -> dict[str, Any]:
    """The ``model_build_kwargs`` BiaPy 3.7.1 stores for a self-supervised U-Net-family model."""
    spec = unet_spec(cfg, ndim, in_channels)
    levels = len(spec.feature_maps)
    return {
        "image_shape": (*(int(s) for s in patch_size), in_channels),
        "activation": spec.activation,
        "feature_maps": list(spec.feature_maps),
        "drop_values": list(spec.dropout or ()),
        "normalization": spec.norm,
        "k_size": spec.kernel_size,
        "upsample_layer": spec.upsample_layer,
        "yx_down": [2] * spec.depth,
        "z_down": list(_resolved_z_down(cfg, ndim)),
        "output_channels": [in_channels],
        "output_channel_info": ["pred0"],
        "head_activations": ["linear"] * in_channels,
        "explicit_activations": False,
        "contrast": False,
        "contrast_proj_dim": 256,
        "separated_decoders": False,
        "divide_decoder_feature_maps": False,
        "isotropy": [True] * levels,
        "larger_io": False,
        "conv_layers": [2] * levels,
        "conv_block_order": "conv_norm_act",
        "return_one_tensor": False,
    }
