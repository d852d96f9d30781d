"""The masked autoencoder's configuration, without torch: :func:`vit_dims`,
:func:`check_mae_config` and :func:`mae_build_kwargs` (the docks check a configuration before
torch is imported)."""

from __future__ import annotations

from typing import Any

from napari_ssl.biapy_config import BIAPY_KEYS
from napari_ssl.config import VIT_PRESETS, ConfigError, ModelConfig


def vit_dims(cfg: ModelConfig) -> tuple[int, int, int]:
    """``(embed_dim, num_layers, num_heads)``, taken from ``cfg.vit_preset`` when it is set."""
    if cfg.vit_preset is None:
        return cfg.vit_embed_dim, cfg.vit_num_layers, cfg.vit_num_heads
    if cfg.vit_preset not in VIT_PRESETS:
        raise ConfigError(
            f"model.vit_preset '{cfg.vit_preset}' is unknown: use one of {sorted(VIT_PRESETS)} "
            "or leave it empty to use model.vit_embed_dim / vit_num_layers / vit_num_heads"
        )
    return VIT_PRESETS[cfg.vit_preset]


def _divisors(n: int, lo: int, hi: int) -> list[int]:
    return [d for d in range(lo, hi + 1) if n % d == 0]


def _biapy(*fields: str) -> str:
    """`` (BiaPy KEY, ...)`` for the fields BiaPy has a key for: users of BiaPy YAMLs see theirs."""
    keys = [BIAPY_KEYS[f] for f in fields if f in BIAPY_KEYS]
    return f" (BiaPy {', '.join(dict.fromkeys(keys))})" if keys else ""


def _check_heads(dim: int, heads: int, dim_key: str, heads_key: str) -> None:
    if dim <= 0 or heads <= 0:
        raise ConfigError(f"{dim_key} ({dim}) and {heads_key} ({heads}) must be positive")
    if dim % heads:
        near = sorted({max(heads, dim // heads * heads), (dim // heads + 1) * heads})
        raise ConfigError(
            f"{dim_key} ({dim}) must be divisible by {heads_key} ({heads})"
            f"{_biapy(dim_key, heads_key)}: use {heads_key} in "
            f"{_divisors(dim, 1, min(dim, 32))} or {dim_key} in {near}"
        )


def check_mae_config(cfg: ModelConfig, ndim: int, patch_size: tuple[int, ...]) -> None:
    """Raise :class:`ConfigError` (key + a valid alternative) if the MAE cannot be built."""
    if ndim not in (2, 3):
        raise ConfigError(f"data.ndim must be 2 or 3, got {ndim}")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != ndim:
        axes = "(Y, X)" if ndim == 2 else "(Z, Y, X)"
        example = (patch[-1] if patch else 64,) * ndim
        raise ConfigError(
            f"data.patch_size {patch} has {len(patch)} axes but data.ndim is {ndim}"
            f"{_biapy('data.patch_size', 'data.ndim')}: "
            f"give {ndim} sizes {axes}, e.g. {example}"
        )
    side = patch[0]
    if any(p != side for p in patch):
        shape = "square" if ndim == 2 else "cubic"
        raise ConfigError(
            f"data.patch_size {patch}{_biapy('data.patch_size')} must be {shape} for the masked "
            f"autoencoder (model.architecture 'mae'): use e.g. {(min(patch),) * ndim} or "
            f"{(max(patch),) * ndim}"
        )
    token = cfg.vit_token_size
    if token <= 0:
        raise ConfigError(
            f"model.vit_token_size{_biapy('model.vit_token_size')} must be positive, got {token} "
            "(default 16)"
        )
    if side % token or side // token < 2:
        sizes = _divisors(side, 2, side // 2)
        lo = max(2, side // token) * token
        patches = sorted({lo, lo + token} - {side})
        raise ConfigError(
            f"data.patch_size {patch} must be a multiple of model.vit_token_size ({token}) "
            f"holding at least 2 tokens per axis{_biapy('data.patch_size', 'model.vit_token_size')}"
            ": use model.vit_token_size in "
            f"{sizes or 'none (patch too small)'} or a patch side in {patches}"
        )
    dim, depth, heads = vit_dims(cfg)
    if depth <= 0 or cfg.mae_dec_num_layers <= 0:
        raise ConfigError("model.vit_num_layers and model.mae_dec_num_layers must be at least 1")
    emb_key = "model.vit_preset" if cfg.vit_preset else "model.vit_embed_dim"
    _check_heads(dim, heads, emb_key, "model.vit_num_heads")
    _check_heads(
        cfg.mae_dec_hidden_size,
        cfg.mae_dec_num_heads,
        "model.mae_dec_hidden_size",
        "model.mae_dec_num_heads",
    )
    if cfg.vit_mlp_ratio <= 0 or cfg.mae_dec_mlp_dims <= 0 or cfg.vit_norm_eps <= 0:
        raise ConfigError(
            "model.vit_mlp_ratio, model.mae_dec_mlp_dims and model.vit_norm_eps must be positive "
            f"(got {cfg.vit_mlp_ratio}, {cfg.mae_dec_mlp_dims}, {cfg.vit_norm_eps}); "
            "defaults: 4.0, 2048, 1e-6"
        )


def mae_build_kwargs(
    cfg: ModelConfig,
    ndim: int,
    in_channels: int,
    patch_size: tuple[int, ...],
    *,
    mask_type: str = "grid",
    mask_ratio: float = 0.5,
    device_type: str = "cpu",
) -> dict[str, Any]:
    """The ``model_build_kwargs`` BiaPy 3.7.1 stores in an mae checkpoint (the arguments of its
    ``MaskedAutoencoderViT``). The decoder entries are ours; BiaPy itself builds its decoder from
    none of them (:func:`biapy_decoder_note`), nor from ``mae_dec_mlp_dims``.
    """
    dim, depth, heads = vit_dims(cfg)
    return {
        "img_size": int(patch_size[0]),
        "patch_size": int(cfg.vit_token_size),
        "in_chans": int(in_channels),
        "ndim": int(ndim),
        "embed_dim": int(dim),
        "depth": int(depth),
        "num_heads": int(heads),
        "decoder_embed_dim": int(cfg.mae_dec_hidden_size),
        "decoder_depth": int(cfg.mae_dec_num_layers),
        "decoder_num_heads": int(cfg.mae_dec_num_heads),
        "mlp_ratio": float(cfg.vit_mlp_ratio),
        "masking_type": str(mask_type),
        "mask_ratio": float(mask_ratio),
        "return_just_preds": False,
        "device": str(device_type),
    }


BIAPY_DECODER = (512, 8, 16)  # width, blocks, heads: what BiaPy 3.7.1 builds, whatever its config


def biapy_decoder_note(cfg: ModelConfig) -> str | None:
    """Why BiaPy 3.7.1 could not load this MAE's checkpoints, or None when it could: BiaPy always
    builds its decoder 512 wide with 8 blocks of 16 heads and an MLP 512 x VIT_MLP_RATIO wide."""
    biapy = (*BIAPY_DECODER, int(BIAPY_DECODER[0] * cfg.vit_mlp_ratio))
    ours = (cfg.mae_dec_hidden_size, cfg.mae_dec_num_layers, cfg.mae_dec_num_heads,
            cfg.mae_dec_mlp_dims)  # fmt: skip
    if ours == biapy:
        return None
    return (
        f"the MAE decoder (width {ours[0]}, {ours[1]} blocks, {ours[2]} heads, MLP {ours[3]}) is "
        f"not BiaPy 3.7.1's ({biapy[0]}, {biapy[1]}, {biapy[2]}, MLP {biapy[3]}, built whatever "
        "the config says): its checkpoints load in napari-ssl, not in BiaPy"
    )
