"""Building blocks shared by the U-Net family (2D and 3D).

Module names and nesting follow BiaPy 3.7.1's layout (``block``, ``up``, ``conv_block``,
``shortcut``, ...) so that state dicts are interchangeable with BiaPy's own models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from napari_ssl.models.unet_config import ACTIVATIONS, NORMS, UNetSpec

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INSTANCE = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def make_norm(norm: str, channels: int, ndim: int) -> nn.Module | None:
    """Normalisation layer for ``norm`` (None for "none"); instance norm is affine."""
    if norm == "in":
        return _INSTANCE[ndim](channels, affine=True)
    if norm in ("bn", "sync_bn"):
        return _BATCH[ndim](channels)
    if norm == "none":
        return None
    raise ValueError(f"unknown normalization {norm!r}; expected one of {NORMS}")


def make_activation(name: str, inplace: bool = True) -> nn.Module:
    """Activation module for one of :data:`ACTIVATIONS`."""
    simple: dict[str, Callable[[], nn.Module]] = {
        "tanh": nn.Tanh,
        "gelu": nn.GELU,
        "sigmoid": nn.Sigmoid,
        "softmax": lambda: nn.Softmax(dim=1),
        "linear": nn.Identity,
        "softplus": nn.Softplus,
        "none": nn.Identity,
    }
    with_inplace: dict[str, Callable[..., nn.Module]] = {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "silu": nn.SiLU,
    }
    if name in with_inplace:
        return with_inplace[name](inplace=inplace)
    if name in simple:
        return simple[name]()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class ConvNormAct(nn.Module):
    """Convolution ("same" padding), then optional normalisation, activation and dropout."""

    def __init__(
        self,
        ndim: int,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        norm: str = "none",
        activation: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [_CONV[ndim](in_ch, out_ch, kernel_size, padding="same")]
        norm_layer = make_norm(norm, out_ch, ndim)
        if norm_layer is not None:
            layers.append(norm_layer)
        if activation is not None:
            layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DoubleConv(nn.Module):
    """Two :class:`ConvNormAct` in a row (the classic U-Net level)."""

    def __init__(
        self,
        ndim: int,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        norm: str,
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ConvNormAct(ndim, in_ch, out_ch, kernel_size, norm, activation, dropout),
            ConvNormAct(ndim, out_ch, out_ch, kernel_size, norm, activation, dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


# (in_channels, out_channels, level index, first block?) -> encoder / bottleneck block
BlockFactory = Callable[[int, int, int, bool], nn.Module]
# (in_channels, out_channels, level index) -> decoder block called as block(x, skip)
UpFactory = Callable[[int, int, int], nn.Module]


class EncoderDecoder(nn.Module):
    """The U-Net skeleton: pooled encoder levels, bottleneck, decoder with skips, 1x1 head.

    ``block`` and ``up`` build the per-level modules; the head is a linear 1x1 convolution with
    one output channel per input channel (BiaPy's ``heads.0`` for the self-supervised workflow).
    """

    def __init__(self, spec: UNetSpec, block: BlockFactory, up: UpFactory) -> None:
        super().__init__()
        self.spec = spec
        fmaps = spec.feature_maps
        self.down_path = nn.ModuleList()
        self.mpooling_layers = nn.ModuleList()
        channels = spec.in_channels
        for level in range(spec.depth):
            self.down_path.append(block(channels, fmaps[level], level, level == 0))
            self.mpooling_layers.append(_POOL[spec.ndim](spec.factors(level)))
            channels = fmaps[level]
        self.bottleneck = block(channels, fmaps[-1], spec.depth, False)
        decoder = nn.ModuleList(
            up(fmaps[level + 1], fmaps[level], level) for level in reversed(range(spec.depth))
        )
        self.up_paths = nn.ModuleList([decoder])
        self.heads = nn.Sequential(conv1x1(spec.ndim, fmaps[0], spec.in_channels))
        self.apply(_init_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down, pool in zip(self.down_path, self.mpooling_layers, strict=True):
            x = down(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        for up, skip in zip(self.up_paths[0], reversed(skips), strict=True):
            x = up(x, skip)
        return self.heads(x)


def _init_conv(module: nn.Module) -> None:
    """Xavier-uniform convolution weights and zero biases (BiaPy's initialisation)."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    """Raise ValueError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(allowed)}")


def interpolation(ndim: int, factors: tuple[int, ...]) -> nn.Module:
    """Parameter-free upsampling by ``factors`` (bilinear in 2D, trilinear in 3D)."""
    return nn.Upsample(scale_factor=factors, mode="bilinear" if ndim == 2 else "trilinear")


def transposed_conv(ndim: int, in_ch: int, out_ch: int, factors: tuple[int, ...]) -> nn.Module:
    """Learned upsampling by ``factors`` (kernel = stride = factors)."""
    return _CONV_T[ndim](in_ch, out_ch, kernel_size=factors, stride=factors)


def conv1x1(ndim: int, in_ch: int, out_ch: int) -> nn.Module:
    """Pointwise convolution."""
    return _CONV[ndim](in_ch, out_ch, kernel_size=1)
