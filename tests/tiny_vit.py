"""The tiny ViT masked autoencoder the engine tests build: embed 32, 2 layers, decoder 32/1/2."""

from __future__ import annotations

from typing import Any

from napari_ssl.config import ModelConfig

# ModelConfig fields (BiaPy key: MODEL.<FIELD>); decoder MLP 32 * 4 = BiaPy's for this decoder
TINY_VIT: dict[str, Any] = {
    "vit_token_size": 8, "vit_embed_dim": 32, "vit_num_layers": 2, "vit_num_heads": 2,
    "mae_dec_hidden_size": 32, "mae_dec_num_layers": 1, "mae_dec_num_heads": 2,
    "mae_dec_mlp_dims": 128,
}  # fmt: skip


def tiny_vit(**changes: Any) -> ModelConfig:
    """The tiny MAE's model config, with ``changes`` to its fields."""
    return ModelConfig(architecture="mae", **{**TINY_VIT, **changes})
