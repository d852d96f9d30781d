"""Check a :class:`~napari_ssl.config.Config`: values, ranges and combinations.

Every :class:`ConfigError` names our key, BiaPy's dotted key where there is one, the allowed
values and the value given. Model-specific checks (levels vs patch size, token size, ...) are
delegated to :func:`napari_ssl.models.check_model_config`.
"""

from __future__ import annotations

import importlib
import math
import re
from numbers import Integral, Real
from typing import Any, NoReturn

from napari_ssl.biapy_config import BIAPY_KEYS, NOT_GIVEN
from napari_ssl.config import MAE_ARCHITECTURES, NORMALIZATIONS, Config, ConfigError, DataConfig

_TASKS = ("crappify", "masking")
_MASK_TYPES = ("random", "grid")
_OPTIMIZERS = ("ADAMW", "ADAM", "SGD")
_LOSSES = ("l1", "mse")
_PRECISIONS = ("auto", "bf16", "fp16", "off")
# BiaPy 3.7.1's TRAIN.LR_SCHEDULER.NAME values ("" = none: a constant learning rate)
LR_SCHEDULES = ("", "warmupcosine", "reduceonplateau", "onecycle", "warmupreduceonplateau")


def _fail(field: str, message: str) -> NoReturn:
    key = BIAPY_KEYS.get(field)
    raise ConfigError(f"{field} (BiaPy {key}) {message}" if key else f"{field} {message}")


def _is_whole(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        _fail(field, f"must be a number; got {value!r}")
    return value


def _whole(field: str, value: Any, minimum: int | None) -> None:
    if not _is_whole(value):
        _fail(field, f"must be a whole number; got {value!r}")
    if minimum is not None and value < minimum:
        _fail(field, f"must be >= {minimum}; got {value!r}")


def _range(field: str, value: Any, lo: float, hi: float, *, open_lo: bool, open_hi: bool) -> None:
    v = _number(field, value)
    if (v <= lo if open_lo else v < lo) or (v >= hi if open_hi else v > hi):
        interval = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
        _fail(field, f"must be in {interval}; got {value!r}")


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(field, f"must be one of {list(allowed)}; got {value!r}")


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first invalid value or combination in ``cfg``."""
    check_data(cfg)
    _check_pretext(cfg)
    _check_train(cfg)
    _check_model(cfg)


def check_data(cfg: Config) -> None:
    """The ``data`` section's rules alone (no model is built: torch is not imported)."""
    d = cfg.data
    if d.ndim not in (2, 3):
        _fail("data.ndim", f"must be 2 or 3 (BiaPy '2D' / '3D'); got {d.ndim!r}")
    size = tuple(d.patch_size)
    if len(size) != d.ndim or not all(_is_whole(s) and s > 0 for s in size):
        _fail("data.patch_size", f"must be {d.ndim} positive whole numbers (spatial); got {size}")
    if d.channels is not None:
        _whole("data.channels", d.channels, 1)
    check_normalization(d)
    _range("data.val_fraction", d.val_fraction, 0, 1, open_lo=False, open_hi=True)
    _range("data.test_overlap", d.test_overlap, 0, 1, open_lo=False, open_hi=True)
    if d.test_padding is not None:
        pad = tuple(d.test_padding)
        if len(pad) != d.ndim or not all(
            _is_whole(p) and 0 <= 2 * p < s for p, s in zip(pad, size, strict=True)
        ):
            rule = f"must be {d.ndim} whole numbers >= 0 (pixels per side) under half of {size}"
            _fail("data.test_padding", f"{rule}; got {d.test_padding!r}")


def check_normalization(d: DataConfig) -> None:
    """The normalisation keys of the ``data`` section alone (the Normalisation fields')."""
    _choice("data.normalization", d.normalization, NORMALIZATIONS)
    if d.percentile_clip is not None:
        clip = tuple(d.percentile_clip)
        ok = len(clip) == 2 and all(isinstance(c, Real) for c in clip)
        if not ok or not 0 <= clip[0] < clip[1] <= 100:
            rule = "must be (lower, upper) percentiles with 0 <= lower < upper <= 100"
            _fail("data.percentile_clip", f"{rule}; got {d.percentile_clip!r}")
    _check_fixed_normalization(d)


def _check_fixed_normalization(d: DataConfig) -> None:
    """``normalization_mean`` / ``_std``: zero_mean_unit_variance only, finite (std > 0), one
    value or one per channel (``data.channels``; while it is None, ``stats_for`` checks each
    image)."""
    for name in ("mean", "std"):
        field, values = f"data.normalization_{name}", getattr(d, f"normalization_{name}")
        if values is None:
            continue
        if d.normalization != "zero_mean_unit_variance":
            _fail(field, f"is used with data.normalization 'zero_mean_unit_variance' only; "
                  f"got {d.normalization!r} (remove the values or change the type)")  # fmt: skip
        listed = isinstance(values, (list, tuple)) and len(values) > 0
        numbers = listed and all(isinstance(v, Real) and math.isfinite(v) for v in values)
        if not numbers or (d.channels and len(values) not in (1, d.channels)):
            _fail(field, f"must list numbers in raw units: {_counts(d.channels)}; got {values!r}")
        if name == "std" and min(values) <= 0:
            _fail(field, f"must be > 0 for every channel; got {values!r}")
        if values[0] == NOT_GIVEN:
            _fail(field, f"cannot start with {NOT_GIVEN}, which BiaPy reads as 'not given'; "
                  f"got {values!r}")  # fmt: skip


def _counts(channels: int | None) -> str:
    if channels is None:
        return "one for every channel, or one per channel"
    if channels == 1:
        return "one value (DATA.PATCH_SIZE gives 1 channel)"
    return f"one for every channel, or {channels} (DATA.PATCH_SIZE gives {channels} channels)"


def _check_pretext(cfg: Config) -> None:
    p, arch = cfg.pretext, cfg.model.architecture
    _choice("pretext.task", p.task, _TASKS)
    _range("pretext.noise", p.noise, 0, 1, open_lo=False, open_hi=False)
    if _number("pretext.resizing_factor", p.resizing_factor) < 1:
        _fail("pretext.resizing_factor", f"must be >= 1; got {p.resizing_factor!r}")
    _choice("pretext.mask_type", p.mask_type, _MASK_TYPES)
    _range("pretext.mask_ratio", p.mask_ratio, 0, 1, open_lo=True, open_hi=True)
    # BiaPy's own wording (biapy/engine/check_configuration.py), then our names
    when = (
        f"when 'PROBLEM.SELF_SUPERVISED.PRETEXT_TASK' is {p.task!r} (model.architecture={arch!r})"
    )
    if p.task == "masking" and arch not in MAE_ARCHITECTURES:
        raise ConfigError(
            f"'MODEL.ARCHITECTURE' needs to be 'mae' {when}: set it to 'mae', or set "
            "PRETEXT_TASK to 'crappify' to keep the U-Net"
        )
    if p.task == "crappify" and arch in MAE_ARCHITECTURES:
        raise ConfigError(
            f"'MODEL.ARCHITECTURE' can not be 'mae' {when}: use 'unet' or 'resunet', or set "
            "PRETEXT_TASK to 'masking'"
        )


def _check_train(cfg: Config) -> None:
    t = cfg.train
    if not t.enable and not cfg.test.enable:
        raise ConfigError(
            "At least one of 'TRAIN.ENABLE' or 'TEST.ENABLE' must be set to True "
            "(train.enable, test.enable)"
        )
    if _number("train.lr", t.lr) <= 0:
        _fail("train.lr", f"must be > 0; got {t.lr!r}")
    if _number("train.weight_decay", t.weight_decay) < 0:
        _fail("train.weight_decay", f"must be >= 0; got {t.weight_decay!r}")
    _whole("train.batch_size", t.batch_size, 1)
    _whole("train.epochs", t.epochs, 1)
    _whole("train.patience", t.patience, None)
    if t.patches_per_epoch is not None:
        _whole("train.patches_per_epoch", t.patches_per_epoch, 1)
    _choice("train.optimizer", t.optimizer, _OPTIMIZERS)
    _choice("train.loss", t.loss, _LOSSES)
    _choice("train.mixed_precision", t.mixed_precision, _PRECISIONS)
    check_lr_schedule(cfg)
    _whole("test.batch_size", cfg.test.batch_size, 1)
    _whole("system.num_workers", cfg.system.num_workers, -1)  # -1: automatic
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.system.device)):
        _fail("system.device", f"must be auto, cpu, cuda, cuda:N or mps; got {cfg.system.device!r}")


def check_lr_schedule(cfg: Config) -> None:
    """The learning-rate schedule's values, with BiaPy 3.7.1's rules for them."""
    t = cfg.train
    if t.lr_schedule not in LR_SCHEDULES:
        names = ", ".join(LR_SCHEDULES[1:])
        _fail("train.lr_schedule", f"must be one of {names}, or empty for a constant learning "
              f"rate; got {t.lr_schedule!r}")  # fmt: skip
    if t.lr_schedule in ("warmupcosine", "reduceonplateau"):
        if _number("train.min_lr", t.min_lr) == NOT_GIVEN:
            _fail("train.min_lr", f"must be given for the {t.lr_schedule!r} schedule (e.g. 1e-6)")
        if not 0 <= t.min_lr <= t.lr:
            _fail("train.min_lr", f"must be >= 0 and at most train.lr (BiaPy TRAIN.LR, "
                  f"{t.lr:g}); got {t.min_lr!r}")  # fmt: skip
    if t.lr_schedule == "reduceonplateau":
        _range("train.plateau_factor", t.plateau_factor, 0, 1, open_lo=True, open_hi=True)
        if t.plateau_patience == -1:
            _fail("train.plateau_patience", "must be given for the 'reduceonplateau' schedule")
        _whole("train.plateau_patience", t.plateau_patience, 0)
        if t.patience > 0 and t.plateau_patience >= t.patience:
            rule = f"must be less than train.patience (BiaPy TRAIN.PATIENCE, {t.patience})"
            _fail("train.plateau_patience", f"{rule}; got {t.plateau_patience!r}")
    if t.lr_schedule == "warmupcosine":
        _whole("train.warmup_epochs", t.warmup_epochs, None)
        fraction = _number("train.cosine_decay_fraction", t.cosine_decay_fraction)
        if fraction > 1:
            rule = "must be in (0, 1], or <= 0 for a decay right after the warm-up"
            _fail("train.cosine_decay_fraction", f"{rule}; got {fraction!r}")
        if fraction > 0 and t.warmup_epochs > (start := decay_start(t.epochs, fraction)):
            rule = f"must end by epoch {start}, where the decay starts (epochs x (1 - fraction))"
            _fail("train.warmup_epochs", f"{rule}; got {t.warmup_epochs!r}")
        if fraction <= 0 and t.warmup_epochs == -1:  # BiaPy's rule: one of the two is given
            _fail("train.warmup_epochs", "must be given for the 'warmupcosine' schedule (0: no "
                  "warm-up), or train.cosine_decay_fraction instead")  # fmt: skip
        if t.warmup_epochs > t.epochs:
            rule = f"must be at most train.epochs (BiaPy TRAIN.EPOCHS, {t.epochs})"
            _fail("train.warmup_epochs", f"{rule}; got {t.warmup_epochs!r}")


def decay_start(epochs: int, fraction: float) -> int:
    """The epoch where warmupcosine's decay starts when it covers the last ``fraction``."""
    return round(epochs * (1.0 - fraction))


def _check_model(cfg: Config) -> None:
    """The model registry's own checks; skipped only while that module does not exist."""
    try:
        models = importlib.import_module("napari_ssl.models")
    except ModuleNotFoundError as err:
        if err.name != "napari_ssl.models":
            raise
        return
    check = getattr(models, "check_model_config", None)
    if check is not None:
        check(cfg.model, cfg.data.ndim, tuple(cfg.data.patch_size))
