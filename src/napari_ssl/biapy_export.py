"""Our :class:`~napari_ssl.config.Config` as a BiaPy 3.7.1 self-supervised config.

:func:`to_biapy` gives a plain nested dict that BiaPy 3.7.1 merges into its defaults and accepts
(checkpoints' ``cfg``, ``config_files/<name>.yaml``); :mod:`napari_ssl.biapy_config` reads the
other way.
"""

from __future__ import annotations

from typing import Any

from napari_ssl.biapy_config import (
    AUG_PROB,
    BIAPY_KEYS,
    FLIPS,
    LOSSES,
    NOT_GIVEN,
    SECTIONS,
    SPECIAL_KEYS,
)
from napari_ssl.config import MAE_ARCHITECTURES, VIT_PRESETS, Config


def to_biapy(cfg: Config) -> dict[str, Any]:
    """A BiaPy 3.7.1 self-supervised config (nested plain dicts) describing ``cfg``.

    Values BiaPy cannot express are written as BiaPy will run them: ``test_padding`` None as
    tile // 8, ``patience`` <= 0 as -1 (off), ``vit_preset`` as its three numbers, an unknown
    channel count as 1. Empty paths are left out (BiaPy then uses its placeholders); a
    ``val_path`` sets DATA.VAL.FROM_TRAIN False. Normalisation values not fixed are written as
    BiaPy's "not given" ``[-1.0]``. BiaPy itself accepts only RESIZING_FACTOR in {2, 4, 6}.
    """
    out: dict[str, Any] = {s: {} for s in SECTIONS}
    defaults = Config()
    for field, key in BIAPY_KEYS.items():
        section, name = field.split(".")
        value = getattr(getattr(cfg, section), name)
        if field not in SPECIAL_KEYS and not (key.endswith(".PATH") and value == ""):
            _put(out, key, _typed(value, getattr(getattr(defaults, section), name)))
    d, m, t = cfg.data, cfg.model, cfg.train
    factor = float(cfg.pretext.resizing_factor)
    spatial = [int(s) for s in d.patch_size]
    padding = d.test_padding if d.test_padding is not None else [s // 8 for s in spatial]
    embed, layers, heads = VIT_PRESETS.get(
        m.vit_preset or "", (m.vit_embed_dim, m.vit_num_layers, m.vit_num_heads)
    )
    values: dict[str, Any] = {
        "PROBLEM.TYPE": "SELF_SUPERVISED",
        "PROBLEM.NDIM": f"{d.ndim}D",
        "PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR": int(factor) if factor.is_integer() else factor,
        "DATA.PATCH_SIZE": [*spatial, int(d.channels or 1)],
        "DATA.VAL.FROM_TRAIN": not d.val_path,
        "DATA.TEST.PADDING": [int(p) for p in padding],
        "DATA.TEST.OVERLAP": [float(d.test_overlap)] * d.ndim,
        "DATA.NORMALIZATION.PERC_CLIP.ENABLE": d.percentile_clip is not None,
        "AUGMENTOR.ENABLE": t.augment,
        "TRAIN.OPTIMIZER": [t.optimizer],
        "TRAIN.LR": [float(t.lr)],
        "TRAIN.LR_SCHEDULER.MIN_LR": [float(t.min_lr)],
        "TRAIN.PATIENCE": int(t.patience) if t.patience > 0 else -1,
        "LOSS.TYPE": [{v: k for k, v in LOSSES.items()}[t.loss]],
        "LOSS.WEIGHTS": [1.0],
        "MODEL.VIT_EMBED_DIM": int(embed),
        "MODEL.VIT_NUM_LAYERS": int(layers),
        "MODEL.VIT_NUM_HEADS": int(heads),
    }
    if d.val_path:
        values["DATA.VAL.PATH"] = d.val_path
    for name in ("mean", "std"):
        fixed = getattr(d, f"normalization_{name}")
        values[BIAPY_KEYS[f"data.normalization_{name}"]] = [float(v) for v in fixed or [NOT_GIVEN]]
    if d.percentile_clip is not None:
        lo, hi = d.percentile_clip
        values["DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC"] = float(lo)
        values["DATA.NORMALIZATION.PERC_CLIP.UPPER_PERC"] = float(hi)
    flips = FLIPS if d.ndim == 3 else FLIPS[:3]
    for name in flips if t.augment else ():
        values[f"AUGMENTOR.{name}"] = True
        values[f"AUGMENTOR.{name}_PROB"] = AUG_PROB
    if m.architecture in MAE_ARCHITECTURES:  # BiaPy: one dropout value for ViT models
        values["MODEL.DROPOUT_VALUES"] = [float(m.dropout[0]) if m.dropout else 0.0]
    for key, value in values.items():
        _put(out, key, value)
    return out


def _typed(value: Any, default: Any) -> Any:
    """Plain builtins of our default's type: BiaPy's yacs refuses e.g. an int for a float key."""
    if isinstance(default, tuple):
        return [_typed(v, default[0]) for v in value]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return type(default)(value)
    return value


def _put(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value
