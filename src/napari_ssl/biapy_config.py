"""BiaPy 3.7.1 self-supervised YAML <-> :class:`~napari_ssl.config.Config`.

:func:`from_biapy` reads BiaPy's nested upper-case layout as ``yaml.safe_load`` returns it, so
tuples written ``(256, 256, 1)`` and floats written ``1.E-4`` arrive as strings
(:mod:`napari_ssl.biapy_values` parses them). A key the file leaves out takes BiaPy 3.7.1's
default, because that is what BiaPy would run
(e.g. ``TRAIN.OPTIMIZER`` SGD, ``TRAIN.EPOCHS`` 360, ``AUGMENTOR.ENABLE`` False); our settings
that BiaPy has no key for keep our defaults. A key that is not one but nearly one we read (a
typo, ``DATA.PACH_SIZE``) gets a :class:`KeyTypoWarning` of its own, first; the other keys we do
not use, or do not know, are named in one ``UserWarning`` together with any approximation made.

:func:`napari_ssl.biapy_export.to_biapy` is the reverse.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from napari_ssl.biapy_values import (
    Cut,
    as_bool,
    as_number,
    as_numbers,
    as_one,
    as_text,
    convert,
    literal,
)
from napari_ssl.config import Config, ConfigError, enable_training

_MODEL_SAME_NAME = (
    "architecture", "feature_maps", "kernel_size", "activation", "upsample_layer", "z_down",
    "vit_token_size", "vit_embed_dim", "vit_num_layers", "vit_num_heads", "vit_mlp_ratio",
    "vit_norm_eps", "mae_dec_hidden_size", "mae_dec_num_layers", "mae_dec_num_heads",
    "mae_dec_mlp_dims", "load_checkpoint",
)  # fmt: skip
# our field -> BiaPy key. Fields absent from SPECIAL_KEYS map one to one, typed like our default.
BIAPY_KEYS: dict[str, str] = {
    **{f"model.{name}": f"MODEL.{name.upper()}" for name in _MODEL_SAME_NAME},
    "data.ndim": "PROBLEM.NDIM",
    "data.patch_size": "DATA.PATCH_SIZE",
    "data.channels": "DATA.PATCH_SIZE",
    "data.train_path": "DATA.TRAIN.PATH",
    "data.test_path": "DATA.TEST.PATH",
    "data.val_path": "DATA.VAL.PATH",
    "data.normalization": "DATA.NORMALIZATION.TYPE",
    "data.percentile_clip": "DATA.NORMALIZATION.PERC_CLIP",
    "data.normalization_mean": "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL",
    "data.normalization_std": "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL",
    "data.val_fraction": "DATA.VAL.SPLIT_TRAIN",
    "data.test_overlap": "DATA.TEST.OVERLAP",
    "data.test_padding": "DATA.TEST.PADDING",
    "pretext.task": "PROBLEM.SELF_SUPERVISED.PRETEXT_TASK",
    "pretext.noise": "PROBLEM.SELF_SUPERVISED.NOISE",
    "pretext.resizing_factor": "PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR",
    "pretext.mask_type": "MODEL.MAE_MASK_TYPE",
    "pretext.mask_ratio": "MODEL.MAE_MASK_RATIO",
    "model.dropout": "MODEL.DROPOUT_VALUES",
    "model.norm": "MODEL.NORMALIZATION",
    "model.checkpoint_file": "PATHS.CHECKPOINT_FILE",
    "train.enable": "TRAIN.ENABLE",
    "train.optimizer": "TRAIN.OPTIMIZER",
    "train.lr": "TRAIN.LR",
    "train.weight_decay": "TRAIN.W_DECAY",
    "train.batch_size": "TRAIN.BATCH_SIZE",
    "train.epochs": "TRAIN.EPOCHS",
    "train.patience": "TRAIN.PATIENCE",
    "train.lr_schedule": "TRAIN.LR_SCHEDULER.NAME",
    "train.min_lr": "TRAIN.LR_SCHEDULER.MIN_LR",
    "train.warmup_epochs": "TRAIN.LR_SCHEDULER.WARMUP_COSINE_DECAY_EPOCHS",
    "train.cosine_decay_fraction": "TRAIN.LR_SCHEDULER.COSINE_DECAY_FRACTION",
    "train.plateau_factor": "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_FACTOR",
    "train.plateau_patience": "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_PATIENCE",
    "train.loss": "LOSS.TYPE",
    "train.augment": "AUGMENTOR.ENABLE",
    "test.enable": "TEST.ENABLE",
    "system.seed": "SYSTEM.SEED",
    "system.num_workers": "SYSTEM.NUM_WORKERS",
}
SPECIAL_KEYS = {
    "data.ndim", "data.patch_size", "data.channels", "data.percentile_clip", "data.test_overlap",
    "data.test_padding", "data.val_path", "data.normalization_mean", "data.normalization_std",
    "train.optimizer", "train.lr", "train.min_lr", "train.loss", "train.augment",
}  # fmt: skip
NOT_GIVEN = -1.0  # BiaPy: a list whose first value is -1 means "not given" (MEAN_VAL, STD_VAL)
# BiaPy 3.7.1 defaults that differ from ours (applied when the file leaves the key out)
_BIAPY_DEFAULTS: dict[str, Any] = {
    "TRAIN.ENABLE": False,
    "TEST.ENABLE": False,
    "TRAIN.BATCH_SIZE": 2,
    "TRAIN.EPOCHS": 360,
    "TRAIN.PATIENCE": -1,
    "MODEL.Z_DOWN": [0, 0, 0, 0],  # 0 = BiaPy's "2 at every level"
}
LOSSES = {"MAE": "l1", "MSE": "mse"}
FLIPS = ("VFLIP", "HFLIP", "ROT90", "ZFLIP")  # ZFLIP only counts in 3D
AUG_PROB = 0.5
SECTIONS = ("SYSTEM", "PROBLEM", "DATA", "AUGMENTOR", "MODEL", "LOSS", "TRAIN", "TEST", "PATHS")
TYPO_CUTOFF = 0.9  # difflib similarity from which an unknown key is taken for a typo
_LOOKALIKES = {  # BiaPy 3.7.1 keys (of other workflows) as close as typos to keys we read
    *(f"DATA.{split}.GT_PATH" for split in ("TRAIN", "VAL", "TEST")),
    *(f"DATA.NORMALIZATION.PERC_CLIP.{end}_VALUE" for end in ("LOWER", "UPPER")),
    *(f"DATA.NORMALIZATION.TARGET.{k}" for k in ("PERC_CLIP.ENABLE", "ZERO_MEAN_UNIT_VAR.MEAN_VAL",
                                                 "ZERO_MEAN_UNIT_VAR.STD_VAL")),
}  # fmt: skip


class KeyTypoWarning(UserWarning):
    """A config key that is not one, but nearly one that napari-ssl reads (``DATA.PACH_SIZE``)."""


class _Reader:
    """Looks up dotted keys in a nested dict and remembers which ones were read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.used: set[str] = set()
        self.asked: set[str] = set()
        self.notes: list[str] = []

    def get(self, key: str, default: Any) -> Any:
        """The value at ``key``, else ``default``; a tuple cut by ``{…}`` as a :class:`Cut`."""
        self.asked.add(key)
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        self.used.add(key)
        cut = isinstance(node, str) and node.lstrip().startswith("(") and ")" not in node
        return Cut(node) if cut else node

    def ignored(self) -> list[str]:
        """Leaf keys not read; switched-off augmentations agree with us and are left out."""
        return [
            key
            for key, value in _leaves(self.data, "")
            if key not in self.used and not (key.startswith("AUGMENTOR.") and value is False)
        ]


def _leaves(node: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, key + "."))
        else:
            out.append((key, value))
    return out


def from_biapy(
    data: dict[str, Any], source: str = "config", warn: bool = True, train: bool = False
) -> Config:
    """Read a BiaPy 3.7.1 self-supervised config; raise :class:`ConfigError` if it is invalid.

    ``warn=False`` skips the unused-keys warning (e.g. a checkpoint's full BiaPy dump);
    ``train``: training is enabled (:func:`~napari_ssl.config.enable_training`).
    """
    from napari_ssl.validation import validate_config

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of BiaPy sections, got {type(data)}")
    r = _Reader(data)
    problem = as_text("PROBLEM.TYPE", r.get("PROBLEM.TYPE", None) or "")
    if problem != "SELF_SUPERVISED":
        got = repr(problem) if problem else "no PROBLEM.TYPE (BiaPy's default: 'SEMANTIC_SEG')"
        raise ConfigError(
            f"{source}: PROBLEM.TYPE must be 'SELF_SUPERVISED' (napari-ssl runs BiaPy's "
            f"self-supervised workflow only); got {got}"
        )
    model_source = as_text("MODEL.SOURCE", r.get("MODEL.SOURCE", "biapy"))
    if model_source != "biapy":
        raise ConfigError(f"MODEL.SOURCE: allowed 'biapy' (BiaPy's models); got {model_source!r}")
    cfg = Config()
    for field, key in BIAPY_KEYS.items():
        if field not in SPECIAL_KEYS:
            section, name = field.split(".")
            default = getattr(getattr(cfg, section), name)
            value = convert(key, r.get(key, _BIAPY_DEFAULTS.get(key, default)), default)
            setattr(getattr(cfg, section), name, value)
    if r.get("MODEL.MAE_DEC_MLP_DIMS", None) is None:  # BiaPy builds it from VIT_MLP_RATIO
        cfg.model.mae_dec_mlp_dims = int(cfg.model.mae_dec_hidden_size * cfg.model.vit_mlp_ratio)
    _read_shape(r, cfg)
    _read_tiling(r, cfg)
    _read_clip(r, cfg)
    _read_fixed_normalization(r, cfg)
    _read_validation(r, cfg)
    _read_training(r, cfg)
    _read_augment(r, cfg)
    _tidy(r, cfg)
    if warn:
        _warn(r, source)
    if train:
        enable_training(cfg, source)
    validate_config(cfg)
    return cfg


def _read_shape(r: _Reader, cfg: Config) -> None:
    ndim_text = as_text("PROBLEM.NDIM", r.get("PROBLEM.NDIM", "2D")).upper()
    if ndim_text not in ("2D", "3D"):
        raise ConfigError(f"PROBLEM.NDIM: allowed '2D' or '3D'; got {ndim_text!r}")
    ndim = int(ndim_text[0])
    size = as_numbers("DATA.PATCH_SIZE", r.get("DATA.PATCH_SIZE", (256, 256, 1)), int)
    if len(size) != ndim + 1:
        axes = "(z, y, x, c)" if ndim == 3 else "(y, x, c)"
        raise ConfigError(
            f"DATA.PATCH_SIZE: with PROBLEM.NDIM {ndim_text} BiaPy expects {ndim + 1} values "
            f"{axes}, the channel count last; got {size}"
        )
    cfg.data.ndim, cfg.data.patch_size, cfg.data.channels = ndim, size[:-1], size[-1]


def _read_tiling(r: _Reader, cfg: Config) -> None:
    """DATA.TEST.PADDING: pixels per side, per axis; OVERLAP: fraction per axis (0 = minimal)."""
    ndim = cfg.data.ndim
    values = {}
    for name, kind in (("PADDING", int), ("OVERLAP", float)):
        key = f"DATA.TEST.{name}"
        value = as_numbers(key, r.get(key, (0,) * ndim), kind)
        if ndim == 3 and value == (0, 0):  # BiaPy widens its 2D default the same way
            value = (kind(0),) * 3
        if len(value) != ndim:
            raise ConfigError(f"{key}: needs {ndim} values for PROBLEM.NDIM {ndim}D; got {value}")
        values[name] = value
    cfg.data.test_padding = values["PADDING"]
    overlap = values["OVERLAP"]
    cfg.data.test_overlap = max(overlap)
    if len(set(overlap)) > 1:
        r.notes.append(
            f"DATA.TEST.OVERLAP {overlap}: napari-ssl uses one overlap for all axes, "
            f"the largest ({max(overlap)})"
        )


def _read_clip(r: _Reader, cfg: Config) -> None:
    base = "DATA.NORMALIZATION.PERC_CLIP"
    enable = as_bool(f"{base}.ENABLE", r.get(f"{base}.ENABLE", False))
    lo = as_number(f"{base}.LOWER_PERC", r.get(f"{base}.LOWER_PERC", -1.0), float)
    hi = as_number(f"{base}.UPPER_PERC", r.get(f"{base}.UPPER_PERC", -1.0), float)
    if not enable:
        cfg.data.percentile_clip = None
    elif lo == -1.0 or hi == -1.0:
        raise ConfigError(
            f"{base}.LOWER_PERC / UPPER_PERC: set both in [0, 100] when {base}.ENABLE is True "
            "(napari-ssl clips by percentiles; fixed LOWER_VALUE / UPPER_VALUE are not supported)"
        )
    else:
        cfg.data.percentile_clip = (lo, hi)


def _read_fixed_normalization(r: _Reader, cfg: Config) -> None:
    """ZERO_MEAN_UNIT_VAR.MEAN_VAL / STD_VAL: fixed values, each on its own, as in BiaPy."""
    for name in ("mean", "std"):
        field = f"data.normalization_{name}"
        key = BIAPY_KEYS[field]
        values = as_numbers(key, r.get(key, [NOT_GIVEN]), float)
        if values[:1] == (NOT_GIVEN,):
            continue
        if cfg.data.normalization != "zero_mean_unit_variance":
            r.notes.append(
                f"{key} {list(values)}: not used, as in BiaPy, because DATA.NORMALIZATION.TYPE "
                f"is {cfg.data.normalization!r} (fixed values need 'zero_mean_unit_variance')"
            )
            continue
        setattr(cfg.data, field.split(".")[1], values)


def _read_validation(r: _Reader, cfg: Config) -> None:
    """DATA.VAL.FROM_TRAIN False: validation images from DATA.VAL.PATH, training images whole."""
    if as_bool("DATA.VAL.FROM_TRAIN", r.get("DATA.VAL.FROM_TRAIN", True)):
        return  # a DATA.VAL.PATH is then unused, as in BiaPy (the warning names it)
    path = as_text("DATA.VAL.PATH", r.get("DATA.VAL.PATH", ""))
    if not path.strip():
        raise ConfigError(
            "DATA.VAL.PATH (data.val_path): give the folder of validation images when "
            "DATA.VAL.FROM_TRAIN is False, or set FROM_TRAIN to True to hold out "
            "DATA.VAL.SPLIT_TRAIN of the training images"
        )
    cfg.data.val_path = path


def _read_training(r: _Reader, cfg: Config) -> None:
    opt = as_text("TRAIN.OPTIMIZER", as_one("TRAIN.OPTIMIZER", r.get("TRAIN.OPTIMIZER", "SGD")))
    cfg.train.optimizer = opt.upper()
    cfg.train.lr = as_number("TRAIN.LR", as_one("TRAIN.LR", r.get("TRAIN.LR", cfg.train.lr)), float)
    key = BIAPY_KEYS["train.min_lr"]
    cfg.train.min_lr = as_number(key, as_one(key, r.get(key, [cfg.train.min_lr])), float)
    names = literal(r.get("LOSS.TYPE", []))
    if isinstance(names, str):
        names = [names] if names else []
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"LOSS.TYPE: expected a list such as ['MAE']; got {names!r}")
    loss = str(as_one("LOSS.TYPE", list(names) or ["MAE"])).upper()
    if loss not in LOSSES:
        raise ConfigError(f"LOSS.TYPE: allowed ['MAE'] (l1) or ['MSE'] (mse); got {names!r}")
    cfg.train.loss = LOSSES[loss]
    weights = as_numbers("LOSS.WEIGHTS", r.get("LOSS.WEIGHTS", []), float)
    if weights not in ((), (1.0,)):
        r.notes.append(f"LOSS.WEIGHTS {list(weights)}: napari-ssl does not scale its single loss")


def _read_augment(r: _Reader, cfg: Config) -> None:
    """We flip and rotate by 90 degrees, all together, p = 0.5 each (ZFLIP in 3D)."""
    enable = as_bool("AUGMENTOR.ENABLE", r.get("AUGMENTOR.ENABLE", False))
    da_prob = as_number("AUGMENTOR.DA_PROB", r.get("AUGMENTOR.DA_PROB", AUG_PROB), float)
    wanted = FLIPS if cfg.data.ndim == 3 else FLIPS[:3]
    on, probs = [], []
    for name in FLIPS:
        if as_bool(f"AUGMENTOR.{name}", r.get(f"AUGMENTOR.{name}", False)) and name in wanted:
            on.append(name)
        key = f"AUGMENTOR.{name}_PROB"
        probs.append(as_number(key, r.get(key, da_prob), float))
    cfg.train.augment = enable and bool(on)
    section = r.data.get("AUGMENTOR")
    if not enable and isinstance(section, dict):
        r.used.update(k for k, _ in _leaves(section, "AUGMENTOR."))
    elif on and (len(on) < len(wanted) or any(p != AUG_PROB for p in probs)):
        r.notes.append(
            f"AUGMENTOR: {', '.join(on)} enabled; napari-ssl applies all of "
            f"{', '.join(wanted)} together, each with probability {AUG_PROB}"
        )


def _tidy(r: _Reader, cfg: Config) -> None:
    """BiaPy conventions that differ from ours."""
    cfg.model.architecture = cfg.model.architecture.lower()
    if all(z == 0 for z in cfg.model.z_down):
        cfg.model.z_down = (2,) * (len(cfg.model.feature_maps) - 1)


def _warn(r: _Reader, source: str) -> None:
    """A :class:`KeyTypoWarning` per near-miss key, then one warning with the other keys not
    used and the approximations made."""
    known = set(BIAPY_KEYS.values()) | r.asked
    others = []
    for key in r.ignored():  # a known key is unused when another makes it moot (DATA.VAL.PATH)
        lookalike = key in known or key in _LOOKALIKES
        close = [] if lookalike else difflib.get_close_matches(key, sorted(known), 1, TYPO_CUTOFF)
        if not close:
            others.append(key)
            continue
        effect = "is set too" if close[0] in r.used else "takes its default"
        warnings.warn(
            f"{key} is not a key: did you mean {close[0]}? ({key} is ignored; {close[0]} {effect})",
            KeyTypoWarning,
            stacklevel=3,
        )
    if not others and not r.notes:
        return
    lines = [f"{source}: napari-ssl reads BiaPy keys with these differences."]
    if others:
        lines.append("Not used by napari-ssl, or not known: " + ", ".join(others) + ".")
    lines.extend(r.notes)
    warnings.warn("\n".join(lines), UserWarning, stacklevel=3)
