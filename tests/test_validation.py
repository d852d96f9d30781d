"""validate_config: every invalid value names our key, BiaPy's key and the allowed values."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from napari_ssl.config import Config, ConfigError, load_yaml, save_yaml
from napari_ssl.validation import validate_config


def _masking() -> Config:
    cfg = Config()
    cfg.data.patch_size = (64, 64)
    cfg.pretext.task, cfg.model.architecture = "masking", "mae"
    cfg.model.vit_preset = "tiny"
    return cfg


def _set(path: str, value) -> Callable[[Config], None]:
    section, name = path.split(".")
    return lambda cfg: setattr(getattr(cfg, section), name, value)


def test_checking_a_config_does_not_import_torch(tmp_path: Path) -> None:
    """The docks check configs (Load config, Start, previews) on the GUI thread: importing torch
    there would freeze napari for a second."""
    code = (
        "import sys\n"
        "from napari_ssl.config import Config, load_yaml, save_yaml\n"
        "from napari_ssl.models import build_kwargs\n"
        "from napari_ssl.pretext.preview import check_pretext\n"
        "from test_validation import _masking\n"
        "for cfg in (Config(), _masking()):\n"
        "    save_yaml(cfg, 'c.yaml')\n"
        "    cfg = load_yaml('c.yaml').validate()\n"
        "    check_pretext(cfg)\n"
        "    build_kwargs(cfg.model, 2, 1, cfg.data.patch_size)\n"
        "print('torch' in sys.modules)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    path = f"{src}:{Path(__file__).parent}"
    env = {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-c", code]
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.strip() == "False", out.stderr


def test_defaults_are_valid() -> None:
    validate_config(Config())
    assert Config().validate() == Config()
    validate_config(_masking())


CASES = [
    ("data.ndim", 4, ["data.ndim (BiaPy PROBLEM.NDIM)", "2 or 3", "4"]),
    ("data.patch_size", (256,), ["data.patch_size (BiaPy DATA.PATCH_SIZE)", "2 positive"]),
    ("data.patch_size", (256, 0), ["data.patch_size", "(256, 0)"]),
    ("data.patch_size", (256, 25.6), ["data.patch_size", "whole numbers"]),
    ("data.channels", 0, ["data.channels (BiaPy DATA.PATCH_SIZE)", ">= 1"]),
    ("data.normalization", "percentile",
     ["data.normalization (BiaPy DATA.NORMALIZATION.TYPE)", "'zero_mean_unit_variance'",
      "'scale_range'", "'div'", "'percentile'"]),
    ("data.percentile_clip", (50.0, 50.0),
     ["data.percentile_clip (BiaPy DATA.NORMALIZATION.PERC_CLIP)", "0 <= lower < upper <= 100"]),
    ("data.percentile_clip", (-1.0, 99.0), ["data.percentile_clip", "(-1.0, 99.0)"]),
    ("data.percentile_clip", (1.0, 100.5), ["data.percentile_clip", "<= 100"]),
    ("data.percentile_clip", (1.0,), ["data.percentile_clip", "(lower, upper)"]),
    ("data.normalization_mean", 10.0,
     ["data.normalization_mean (BiaPy DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL)",
      "raw units: one for every channel, or one per channel; got 10.0"]),
    ("data.normalization_mean", (), ["data.normalization_mean", "got ()"]),
    ("data.normalization_mean", (float("nan"),), ["data.normalization_mean", "(nan,)"]),
    ("data.normalization_mean", (-1.0, 5.0),
     ["data.normalization_mean", "cannot start with -1.0", "'not given'"]),
    ("data.normalization_std", (1.0, -2.0),
     ["data.normalization_std (BiaPy DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL)",
      "> 0 for every channel; got (1.0, -2.0)"]),
    ("data.val_fraction", 1.0, ["data.val_fraction (BiaPy DATA.VAL.SPLIT_TRAIN)", "[0, 1)"]),
    ("data.val_fraction", -0.1, ["data.val_fraction", "[0, 1)"]),
    ("data.test_overlap", 1.0, ["data.test_overlap (BiaPy DATA.TEST.OVERLAP)", "[0, 1)"]),
    ("data.test_padding", (8,), ["data.test_padding (BiaPy DATA.TEST.PADDING)", "2 whole"]),
    ("data.test_padding", (-1, 0), ["data.test_padding", ">= 0"]),
    ("data.test_padding", (128, 8), ["data.test_padding", "half of (256, 256)"]),
    ("pretext.task", "inpaint",
     ["pretext.task (BiaPy PROBLEM.SELF_SUPERVISED.PRETEXT_TASK)", "['crappify', 'masking']"]),
    ("pretext.noise", 1.5, ["pretext.noise (BiaPy PROBLEM.SELF_SUPERVISED.NOISE)", "[0, 1]"]),
    ("pretext.noise", -0.1, ["pretext.noise", "[0, 1]"]),
    ("pretext.noise", "lots", ["pretext.noise", "must be a number"]),
    ("pretext.resizing_factor", 0.5,
     ["pretext.resizing_factor (BiaPy PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR)", ">= 1"]),
    ("pretext.mask_type", "block",
     ["pretext.mask_type (BiaPy MODEL.MAE_MASK_TYPE)", "['random', 'grid']"]),
    ("pretext.mask_ratio", 0.0, ["pretext.mask_ratio (BiaPy MODEL.MAE_MASK_RATIO)", "(0, 1)"]),
    ("pretext.mask_ratio", 1.0, ["pretext.mask_ratio", "(0, 1)"]),
    ("train.lr", 0.0, ["train.lr (BiaPy TRAIN.LR)", "> 0"]),
    ("train.weight_decay", -0.1, ["train.weight_decay (BiaPy TRAIN.W_DECAY)", ">= 0"]),
    ("train.batch_size", 0, ["train.batch_size (BiaPy TRAIN.BATCH_SIZE)", ">= 1"]),
    ("train.epochs", 0, ["train.epochs (BiaPy TRAIN.EPOCHS)", ">= 1"]),
    ("train.epochs", 1.5, ["train.epochs", "whole number"]),
    ("train.optimizer", "adamw",
     ["train.optimizer (BiaPy TRAIN.OPTIMIZER)", "['ADAMW', 'ADAM', 'SGD']"]),
    ("train.loss", "ssim", ["train.loss (BiaPy LOSS.TYPE)", "['l1', 'mse']"]),
    ("train.mixed_precision", "fp8",
     ["train.mixed_precision must be one of ['auto', 'bf16', 'fp16', 'off']"]),
    ("train.patches_per_epoch", 0, ["train.patches_per_epoch", ">= 1"]),
    ("system.num_workers", -2, ["system.num_workers (BiaPy SYSTEM.NUM_WORKERS)", ">= -1"]),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "expected"), CASES)
def test_invalid_value_names_the_key(field: str, value, expected: list[str]) -> None:
    cfg = Config()
    _set(field, value)(cfg)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    for text in expected:
        assert text in str(info.value)


def test_fixed_normalization_fits_the_type_and_the_channels() -> None:
    cfg = Config()
    cfg.data.normalization_mean, cfg.data.normalization_std = (100.0, 90.0), (20.0,)
    validate_config(cfg)  # the channel count is not known yet: the images are checked later
    cfg.data.channels = 3
    with pytest.raises(ConfigError, match=r"normalization_mean .*or 3 \(DATA\.PATCH_SIZE gives 3"):
        validate_config(cfg)
    cfg.data.channels, cfg.data.normalization = 2, "scale_range"
    with pytest.raises(ConfigError, match=r"'zero_mean_unit_variance' only; got 'scale_range'"):
        validate_config(cfg)


def test_masking_needs_mae_in_biapy_wording() -> None:
    cfg = Config()
    cfg.pretext.task = "masking"
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert str(info.value) == (
        "'MODEL.ARCHITECTURE' needs to be 'mae' when 'PROBLEM.SELF_SUPERVISED.PRETEXT_TASK' is "
        "'masking' (model.architecture='unet'): set it to 'mae', or set PRETEXT_TASK to "
        "'crappify' to keep the U-Net"
    )


def test_crappify_refuses_mae_in_biapy_wording() -> None:
    cfg = _masking()
    cfg.pretext.task = "crappify"
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert str(info.value) == (
        "'MODEL.ARCHITECTURE' can not be 'mae' when 'PROBLEM.SELF_SUPERVISED.PRETEXT_TASK' is "
        "'crappify' (model.architecture='mae'): use 'unet' or 'resunet', or set PRETEXT_TASK "
        "to 'masking'"
    )


def test_train_or_test_must_be_enabled() -> None:
    cfg = Config()
    cfg.train.enable = cfg.test.enable = False
    with pytest.raises(ConfigError, match=r"'TRAIN\.ENABLE' or 'TEST\.ENABLE'"):
        validate_config(cfg)
    cfg.test.enable = True  # inference only is fine
    validate_config(cfg)


def test_model_checks_are_delegated_to_the_registry() -> None:
    cfg = _masking()
    cfg.data.patch_size = (64, 48)  # the MAE needs square patches
    with pytest.raises(ConfigError, match="square"):
        validate_config(cfg)
    cfg = Config()
    cfg.model.architecture = "transformer9000"
    with pytest.raises(ConfigError, match="transformer9000"):
        validate_config(cfg)


@pytest.mark.parametrize(
    "text", ["train: 5\n", "1: 2\n", "TRAIN: 5\nPROBLEM: {TYPE: SELF_SUPERVISED, NDIM: 2D}\n"]
)
def test_load_yaml_wrong_kinds_are_config_errors(tmp_path, text: str) -> None:
    """A section that is not a mapping (ours or BiaPy's) is a plain ConfigError, not a crash."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_yaml(path)


def test_a_vit_preset_writes_its_sizes_and_says_which_it_overrides(tmp_path: Path) -> None:
    """The ViT sizes beside a preset are the model's (an exported config says what it trained),
    and sizes a user edits there while the preset stays are said to be unused."""
    import yaml

    cfg = Config()
    cfg.pretext.task, cfg.model.architecture, cfg.model.vit_preset = "masking", "mae", "tiny"
    path = save_yaml(cfg, tmp_path / "tiny.yaml")
    model = yaml.safe_load(path.read_text())["model"]
    assert (model["vit_embed_dim"], model["vit_num_layers"], model["vit_num_heads"]) == (192, 12, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as written: nothing to say
        assert load_yaml(path).model.vit_preset == "tiny"
    path.write_text(path.read_text().replace("vit_embed_dim: 192", "vit_embed_dim: 64"))
    with pytest.warns(UserWarning) as caught:
        load_yaml(path)
    assert str(caught[0].message) == (
        f"{path}: model.vit_preset 'tiny' sets the ViT's sizes (vit_embed_dim 192, "
        "vit_num_layers 12, vit_num_heads 3): vit_embed_dim 64 in the file is not used. To use "
        "it, set model.vit_preset to null."
    )
