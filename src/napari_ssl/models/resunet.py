"""2D/3D Residual U-Net, state-dict compatible with BiaPy 3.7.1's ``ResUNet``."""

from __future__ import annotations

import torch
from torch import nn

from napari_ssl.config import ModelConfig
from napari_ssl.models.blocks import (
    ConvNormAct,
    EncoderDecoder,
    check_choice,
    conv1x1,
    interpolation,
    make_activation,
    make_norm,
    transposed_conv,
)
from napari_ssl.models.unet_config import (
    INPLACE_ACTIVATIONS,
    UPSAMPLE_LAYERS,
    UNetSpec,
    check_unet_config,
    unet_spec,
)


class ResBlock(nn.Module):
    """Pre-activation residual block: [norm, act] -> conv-norm-act -> conv, plus a 1x1 shortcut.

    The first encoder block skips the leading norm/act. BiaPy applies that leading activation
    in place, so without normalisation its shortcut sees the activated input; we reproduce that
    (without mutating the input) so that the same weights give the same output.
    """

    def __init__(self, spec: UNetSpec, in_ch: int, out_ch: int, level: int, first: bool) -> None:
        super().__init__()
        ndim, act = spec.ndim, spec.activation
        pre: list[nn.Module] = []
        if not first:
            norm = make_norm(spec.norm, in_ch, ndim)
            # without a norm the activation would act on the block input: never in place
            pre = [make_activation(act, inplace=norm is not None)]
            if norm is not None:
                pre.insert(0, norm)
        self._n_pre = len(pre)
        self._shortcut_after_pre = bool(pre) and spec.norm == "none" and act in INPLACE_ACTIVATIONS
        self.block = nn.Sequential(
            *pre,
            ConvNormAct(ndim, in_ch, out_ch, spec.kernel_size, spec.norm, act, spec.drop(level)),
            ConvNormAct(ndim, out_ch, out_ch, spec.kernel_size),
        )
        self.shortcut = nn.Sequential(conv1x1(ndim, in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.block)
        h = x
        for layer in layers[: self._n_pre]:
            h = layer(h)
        shortcut = self.shortcut(h if self._shortcut_after_pre else x)
        for layer in layers[self._n_pre :]:
            h = layer(h)
        return h + shortcut


class ResUpBlock(nn.Module):
    """Upsample (channels kept), concatenate the skip, then a :class:`ResBlock`."""

    def __init__(self, spec: UNetSpec, in_ch: int, out_ch: int, level: int) -> None:
        super().__init__()
        factors = spec.factors(level)
        check_choice(spec.upsample_layer, UPSAMPLE_LAYERS, "upsample layer")
        if spec.upsample_layer == "convtranspose":
            self.up = transposed_conv(spec.ndim, in_ch, in_ch, factors)
        else:
            self.up = interpolation(spec.ndim, factors)
        self.conv_block = ResBlock(spec, in_ch + out_ch, out_ch, level, first=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class ResUNet(EncoderDecoder):
    """Residual U-Net: residual blocks at every level, max pooling, 1x1 linear head."""

    def __init__(self, spec: UNetSpec | None = None) -> None:
        spec = spec or UNetSpec()
        super().__init__(
            spec,
            lambda i, o, level, first: ResBlock(spec, i, o, level, first),
            lambda i, o, level: ResUpBlock(spec, i, o, level),
        )


def build_resunet(
    cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...]
) -> ResUNet:
    """A Residual U-Net for ``cfg`` (checked first)."""
    check_unet_config(cfg, ndim, patch_size)
    return ResUNet(unet_spec(cfg, ndim, in_channels))
