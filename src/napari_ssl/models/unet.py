"""2D/3D U-Net, state-dict compatible with BiaPy 3.7.1's ``U_Net`` (configured by
:mod:`.unet_config`)."""

from __future__ import annotations

import torch
from torch import nn

from napari_ssl.config import ModelConfig
from napari_ssl.models.blocks import (
    DoubleConv,
    EncoderDecoder,
    check_choice,
    conv1x1,
    interpolation,
    make_activation,
    make_norm,
    transposed_conv,
)
from napari_ssl.models.unet_config import UPSAMPLE_LAYERS, UNetSpec, check_unet_config, unet_spec


class UpBlock(nn.Module):
    """Upsample (+ norm + activation), concatenate the skip, then two convolutions."""

    def __init__(self, spec: UNetSpec, in_ch: int, out_ch: int, level: int) -> None:
        super().__init__()
        ndim, factors = spec.ndim, spec.factors(level)
        check_choice(spec.upsample_layer, UPSAMPLE_LAYERS, "upsample layer")
        if spec.upsample_layer == "convtranspose":
            layers = [transposed_conv(ndim, in_ch, out_ch, factors)]
        else:
            layers = [interpolation(ndim, factors), conv1x1(ndim, in_ch, out_ch)]
        norm = make_norm(spec.norm, out_ch, ndim)
        if norm is not None:
            layers.append(norm)
        layers.append(make_activation(spec.activation))
        self.up = nn.Sequential(*layers)
        self.conv_block = DoubleConv(
            ndim, 2 * out_ch, out_ch, spec.kernel_size, spec.norm, spec.activation, spec.drop(level)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class UNet(EncoderDecoder):
    """U-Net: two convolutions per level, max pooling, learned or interpolated upsampling."""

    def __init__(self, spec: UNetSpec | None = None) -> None:
        spec = spec or UNetSpec()

        def block(in_ch: int, out_ch: int, level: int, first: bool) -> nn.Module:
            return DoubleConv(
                spec.ndim, in_ch, out_ch, spec.kernel_size, spec.norm, spec.activation,
                spec.drop(level),
            )  # fmt: skip

        super().__init__(spec, block, lambda i, o, level: UpBlock(spec, i, o, level))


def build_unet(cfg: ModelConfig, ndim: int, in_channels: int, patch_size: tuple[int, ...]) -> UNet:
    """A U-Net for ``cfg`` (checked first)."""
    check_unet_config(cfg, ndim, patch_size)
    return UNet(unet_spec(cfg, ndim, in_channels))
