"""BiaPy 3.7.1 self-supervised YAML: reading, writing, round trip, and BiaPy's own acceptance."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from biapy_peer import run_biapy
from napari_ssl.biapy_config import KeyTypoWarning, from_biapy
from napari_ssl.biapy_export import to_biapy
from napari_ssl.config import Config, ConfigError, load_yaml

# Written like BiaPy's templates/self-supervised/2d_self-supervised.yaml (BiaPy ships no
# templates in its wheel): string tuples, "1.E-4", DA_PROB, keys we do not use.
TEMPLATE_2D = """\
SYSTEM:
    NUM_CPUS: -1
    NUM_WORKERS: 5

PROBLEM:
    TYPE: SELF_SUPERVISED
    NDIM: 2D
    SELF_SUPERVISED:
        PRETEXT_TASK: 'crappify'

DATA:
    PATCH_SIZE: (256, 256, 1)
    TRAIN:
        PATH: /path/to/data/train/x
        IN_MEMORY: True
    VAL:
        SPLIT_TRAIN: 0.1
    TEST:
        IN_MEMORY: True
        PATH: /path/to/data/test/x
        PADDING: (32,32)

AUGMENTOR:
    ENABLE: True
    DA_PROB: 0.5
    RANDOM_ROT: True
    VFLIP: True
    HFLIP: True

MODEL:
    ARCHITECTURE: unet
    LOAD_CHECKPOINT: False

TRAIN:
    ENABLE: True
    OPTIMIZER: ADAMW
    LR: 1.E-4
    BATCH_SIZE: 12
    EPOCHS: 360
    PATIENCE: 50

TEST:
    ENABLE: True
    AUGMENTATION: False
    FULL_IMG: False
"""

TEMPLATE_3D_MAE = """\
PROBLEM:
    TYPE: SELF_SUPERVISED
    NDIM: 3D
    SELF_SUPERVISED:
        PRETEXT_TASK: masking
DATA:
    PATCH_SIZE: (32, 32, 32, 2)
    TRAIN:
        PATH: /data/train/x
    TEST:
        PATH: /data/test/x
        OVERLAP: (0.25, 0.25, 0.25)
        PADDING: (4, 4, 4)
MODEL:
    ARCHITECTURE: MAE
    VIT_TOKEN_SIZE: 8
    VIT_EMBED_DIM: 64
    VIT_NUM_LAYERS: 2
    VIT_NUM_HEADS: 4
    MAE_MASK_TYPE: random
    MAE_MASK_RATIO: 0.75
    DROPOUT_VALUES: [0.0]
TRAIN:
    ENABLE: True
    OPTIMIZER: [ADAMW]
    LR: [5.E-4]
    W_DECAY: 0.05
    BATCH_SIZE: 4
    EPOCHS: 10
    PATIENCE: 3
TEST:
    ENABLE: False
"""


def _read(text: str, **kwargs) -> Config:
    """from_biapy on YAML text, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return from_biapy(yaml.safe_load(text), **kwargs)


def _set(data: dict, key: str, value) -> dict:
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


def test_template_2d_loads_through_load_yaml(tmp_path: Path) -> None:
    path = tmp_path / "2d_self-supervised.yaml"
    path.write_text(TEMPLATE_2D)
    with pytest.warns(UserWarning) as record:
        cfg = load_yaml(path)
    assert len(record) == 1
    d, t = cfg.data, cfg.train
    assert (d.ndim, d.patch_size, d.channels) == (2, (256, 256), 1)
    assert d.train_path == "/path/to/data/train/x" and d.test_path == "/path/to/data/test/x"
    assert d.test_padding == (32, 32) and d.val_fraction == 0.1
    assert cfg.pretext.task == "crappify" and cfg.model.architecture == "unet"
    assert t.optimizer == "ADAMW" and isinstance(t.lr, float) and t.lr == pytest.approx(1e-4)
    assert (t.batch_size, t.epochs, t.patience, t.augment) == (12, 360, 50, True)
    assert cfg.system.num_workers == 5 and t.enable and cfg.test.enable


def test_template_3d_masking() -> None:
    cfg = _read(TEMPLATE_3D_MAE)
    d, p, m = cfg.data, cfg.pretext, cfg.model
    assert (d.ndim, d.patch_size, d.channels) == (3, (32, 32, 32), 2)
    assert d.test_overlap == 0.25 and d.test_padding == (4, 4, 4)
    assert (p.task, p.mask_type, p.mask_ratio) == ("masking", "random", 0.75)
    assert m.architecture == "mae" and m.dropout == (0.0,)
    assert (m.vit_token_size, m.vit_embed_dim, m.vit_num_layers, m.vit_num_heads) == (8, 64, 2, 4)
    assert cfg.train.lr == pytest.approx(5e-4) and cfg.train.weight_decay == 0.05
    assert not cfg.test.enable and not cfg.train.augment  # AUGMENTOR absent: BiaPy's default off


def test_the_mae_decoder_is_biapys_unless_the_config_changes_it() -> None:
    """BiaPy 3.7.1 builds its MAE decoder 512/8/16 with an MLP of 512 x VIT_MLP_RATIO, whatever
    its config says: a BiaPy YAML's decoder MLP follows the ratio too, so that BiaPy loads what
    napari-ssl trains; a decoder of our own is said at Start."""
    from napari_ssl.models.mae_config import biapy_decoder_note

    data = _set(yaml.safe_load(TEMPLATE_3D_MAE), "MODEL.VIT_MLP_RATIO", 2.0)
    model = _read(yaml.safe_dump(data)).model
    assert model.mae_dec_mlp_dims == 1024 and biapy_decoder_note(model) is None
    model = _read(yaml.safe_dump(_set(data, "MODEL.MAE_DEC_HIDDEN_SIZE", 128))).model
    assert biapy_decoder_note(model) == (
        "the MAE decoder (width 128, 8 blocks, 16 heads, MLP 256) is not BiaPy 3.7.1's (512, 8, "
        "16, MLP 1024, built whatever the config says): its checkpoints load in napari-ssl, not "
        "in BiaPy"
    )


def test_string_tuples_and_yaml_lists_parse_alike() -> None:
    as_lists = (
        TEMPLATE_3D_MAE.replace("(32, 32, 32, 2)", "[32, 32, 32, 2]")
        .replace("(0.25, 0.25, 0.25)", "[0.25, 0.25, 0.25]")
        .replace("(4, 4, 4)", "[4, 4, 4]")
        .replace("[5.E-4]", "0.0005")
        .replace("[ADAMW]", "ADAMW")
        .replace("ENABLE: False", "ENABLE: 'False'")
    )
    assert as_lists != TEMPLATE_3D_MAE
    assert _read(as_lists) == _read(TEMPLATE_3D_MAE)


def test_missing_keys_take_biapy_defaults() -> None:
    cfg = _read("PROBLEM: {TYPE: SELF_SUPERVISED}\nTRAIN: {ENABLE: True}\n")
    t, d = cfg.train, cfg.data
    assert (t.optimizer, t.batch_size, t.epochs, t.patience) == ("SGD", 2, 360, -1)
    assert (t.lr, t.weight_decay, t.loss, t.augment) == (1e-4, 0.02, "l1", False)
    assert (d.patch_size, d.channels, d.test_padding, d.test_overlap) == ((256, 256), 1, (0, 0), 0)
    assert cfg.model.z_down == (2, 2, 2, 2) and not cfg.test.enable


def test_one_warning_names_unused_and_unknown_keys() -> None:
    data = yaml.safe_load(TEMPLATE_2D)
    _set(data, "LOG.LOG_DIR", "/tmp/logs")
    _set(data, "DATA.TRAIN.EXTRACT_RANDOM_PATCH", True)
    _set(data, "TRAIN.GRADIENT_CLIP_NORM", 1.0)
    _set(data, "AUGMENTOR.ELASTIC", True)
    _set(data, "AUGMENTOR.G_BLUR", False)  # off, as we are: not worth a mention
    _set(data, "MODEL.ARCHITECTRE", "unet")  # typo
    with pytest.warns(UserWarning) as record:
        from_biapy(data, source="mine.yaml")
    assert len(record) == 2
    assert record[0].category is KeyTypoWarning  # first, and on its own
    assert str(record[0].message) == (
        "MODEL.ARCHITECTRE is not a key: did you mean MODEL.ARCHITECTURE? (MODEL.ARCHITECTRE is "
        "ignored; MODEL.ARCHITECTURE is set too)"
    )
    message = str(record[1].message)
    for key in (
        "SYSTEM.NUM_CPUS", "DATA.TRAIN.IN_MEMORY", "DATA.TEST.IN_MEMORY", "AUGMENTOR.RANDOM_ROT",
        "TEST.AUGMENTATION", "TEST.FULL_IMG", "LOG.LOG_DIR", "DATA.TRAIN.EXTRACT_RANDOM_PATCH",
        "TRAIN.GRADIENT_CLIP_NORM", "AUGMENTOR.ELASTIC",
    ):  # fmt: skip
        assert key in message
    assert "mine.yaml" in message and "ARCHITECTRE" not in message
    assert "AUGMENTOR: VFLIP, HFLIP enabled" in message  # no ROT90: we rotate anyway
    assert "G_BLUR" not in message and "DA_PROB" not in message and "TRAIN.LR," not in message


def test_approximations_are_reported() -> None:
    data = yaml.safe_load(TEMPLATE_3D_MAE)
    _set(data, "DATA.NORMALIZATION.TYPE", "scale_range")
    _set(data, "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL", [10.0])
    _set(data, "DATA.VAL.PATH", "/data/val/x")  # FROM_TRAIN True (default): unused, as in BiaPy
    _set(data, "DATA.TEST.OVERLAP", "(0.1, 0.5, 0.5)")
    _set(data, "SYSTEM.NUM_WORKERS", -1)
    with pytest.warns(UserWarning) as record:
        cfg = from_biapy(data)
    assert len(record) == 1
    message = str(record[0].message)
    assert "ZERO_MEAN_UNIT_VAR.MEAN_VAL [10.0]: not used, as in BiaPy" in message
    assert "Not used by napari-ssl, or not known: DATA.VAL.PATH." in message
    assert "DATA.TEST.OVERLAP (0.1, 0.5, 0.5)" in message
    assert "NUM_WORKERS" not in message  # -1 is automatic here too (reader threads, lazy data)
    assert (cfg.data.val_fraction, cfg.data.test_overlap, cfg.system.num_workers) == (0.1, 0.5, -1)
    assert cfg.data.normalization_mean is None and cfg.data.val_path == ""


def test_separate_validation_folder_and_fixed_normalization_are_read() -> None:
    data = yaml.safe_load(TEMPLATE_3D_MAE)  # PATCH_SIZE ends in 2 channels
    _set(data, "DATA.VAL", {"FROM_TRAIN": False, "PATH": "/data/val/x", "SPLIT_TRAIN": 0.1})
    _set(data, "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR", {"MEAN_VAL": "[100, 20.5]",
                                                         "STD_VAL": 12})  # fmt: skip
    d = _read(yaml.safe_dump(data)).data
    assert d.val_path == "/data/val/x"
    assert d.normalization_mean == (100.0, 20.5) and d.normalization_std == (12.0,)
    _set(data, "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR", {"MEAN_VAL": [-1.0], "STD_VAL": [3.0]})
    d = _read(yaml.safe_dump(data)).data  # BiaPy: -1 first = "compute it", each on its own
    assert d.normalization_mean is None and d.normalization_std == (3.0,)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("PROBLEM.TYPE", "SEMANTIC_SEG", ["PROBLEM.TYPE", "'SELF_SUPERVISED'"]),
        ("PROBLEM.NDIM", "4D", ["PROBLEM.NDIM", "'2D' or '3D'"]),
        ("DATA.PATCH_SIZE", "(256, 256)", ["DATA.PATCH_SIZE", "(y, x, c)", "channel count"]),
        ("DATA.PATCH_SIZE", "(256, a, 1)", ["DATA.PATCH_SIZE", "list"]),
        ("PROBLEM.SELF_SUPERVISED.PRETEXT_TASK", "inpaint", ["PRETEXT_TASK", "'crappify'"]),
        ("PROBLEM.SELF_SUPERVISED.NOISE", 1.5, ["PROBLEM.SELF_SUPERVISED.NOISE", "[0, 1]"]),
        ("PROBLEM.SELF_SUPERVISED.NOISE", "lots", ["PROBLEM.SELF_SUPERVISED.NOISE", "number"]),
        ("PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR", 0.5, ["RESIZING_FACTOR", ">= 1"]),
        ("DATA.NORMALIZATION.TYPE", "percentile", ["DATA.NORMALIZATION.TYPE", "'scale_range'"]),
        ("DATA.NORMALIZATION.PERC_CLIP", {"ENABLE": True, "LOWER_PERC": 99.0, "UPPER_PERC": 1.0},
         ["DATA.NORMALIZATION.PERC_CLIP", "0 <= lower < upper <= 100"]),
        ("DATA.NORMALIZATION.PERC_CLIP", {"ENABLE": True, "LOWER_VALUE": [0.0]},
         ["DATA.NORMALIZATION.PERC_CLIP.LOWER_PERC", "[0, 100]"]),
        ("DATA.VAL.SPLIT_TRAIN", 1.0, ["DATA.VAL.SPLIT_TRAIN", "[0, 1)"]),
        ("DATA.TEST.OVERLAP", "(0.5, 1.0)", ["DATA.TEST.OVERLAP", "[0, 1)"]),
        ("DATA.TEST.PADDING", "(32,)", ["DATA.TEST.PADDING", "needs 2 values"]),
        ("DATA.TEST.PADDING", "(128, 32)", ["DATA.TEST.PADDING", "half"]),
        ("TRAIN.ENABLE", "maybe", ["TRAIN.ENABLE", "True or False"]),
        ("TRAIN.OPTIMIZER", "RMSPROP", ["TRAIN.OPTIMIZER", "'ADAMW'", "'SGD'"]),
        ("TRAIN.OPTIMIZER", ["ADAMW", "SGD"], ["TRAIN.OPTIMIZER", "one value"]),
        ("TRAIN.LR", "-1.E-4", ["TRAIN.LR", "> 0"]),
        ("TRAIN.BATCH_SIZE", 0, ["TRAIN.BATCH_SIZE", ">= 1"]),
        ("TRAIN.EPOCHS", 2.5, ["TRAIN.EPOCHS", "whole number"]),
        ("LOSS.TYPE", ["SSIM"], ["LOSS.TYPE", "'MAE'", "'MSE'"]),
        ("LOSS.TYPE", "W_MAE_SSIM", ["LOSS.TYPE", "'MAE'"]),
        ("MODEL.SOURCE", "bmz", ["MODEL.SOURCE", "'biapy'"]),
        ("DATA.VAL.FROM_TRAIN", False, ["DATA.VAL.PATH (data.val_path)", "FROM_TRAIN is False"]),
        ("DATA.VAL", {"FROM_TRAIN": False, "PATH": " "}, ["DATA.VAL.PATH", "validation images"]),
        ("DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR", {"STD_VAL": [0.0]},
         ["data.normalization_std (BiaPy DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL)", "> 0"]),
        ("DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR", {"MEAN_VAL": [1.0, 2.0]},
         ["data.normalization_mean (BiaPy DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL)",
          "one value (DATA.PATCH_SIZE gives 1 channel)", "(1.0, 2.0)"]),
        ("DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR", {"MEAN_VAL": "high"},
         ["DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL", "list"]),
    ],
)  # fmt: skip
def test_invalid_value_names_the_key(key: str, value, expected: list[str]) -> None:
    data = _set(yaml.safe_load(TEMPLATE_2D), key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ConfigError) as info:
            from_biapy(data)
    for text in expected:
        assert text in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("MODEL.MAE_MASK_TYPE", "block", ["MODEL.MAE_MASK_TYPE", "'random'", "'grid'"]),
        ("MODEL.MAE_MASK_RATIO", 1.0, ["MODEL.MAE_MASK_RATIO", "(0, 1)"]),
        ("DATA.PATCH_SIZE", "(32, 32, 32)", ["DATA.PATCH_SIZE", "(z, y, x, c)"]),
    ],
)
def test_invalid_masking_value_names_the_key(key: str, value, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        from_biapy(_set(yaml.safe_load(TEMPLATE_3D_MAE), key, value))
    for text in expected:
        assert text in str(info.value)


def test_pairing_rule_uses_biapy_wording() -> None:
    masking_unet = _set(yaml.safe_load(TEMPLATE_3D_MAE), "MODEL.ARCHITECTURE", "unet")
    task = "'PROBLEM.SELF_SUPERVISED.PRETEXT_TASK'"
    with pytest.raises(ConfigError) as info:
        from_biapy(masking_unet)
    assert f"'MODEL.ARCHITECTURE' needs to be 'mae' when {task} is 'masking'" in str(info.value)
    crappify_mae = _set(yaml.safe_load(TEMPLATE_2D), "MODEL.ARCHITECTURE", "mae")
    with warnings.catch_warnings(), pytest.raises(ConfigError) as info:
        warnings.simplefilter("ignore", UserWarning)
        from_biapy(crappify_mae)
    assert f"'MODEL.ARCHITECTURE' can not be 'mae' when {task} is 'crappify'" in str(info.value)


def _crappify_2d() -> Config:
    """Every field BiaPy can express set away from its default."""
    cfg = Config()
    d, p, m, t = cfg.data, cfg.pretext, cfg.model, cfg.train
    d.patch_size, d.channels, d.train_path, d.test_path = (128, 96), 3, "/d/train/x", "/d/test/x"
    d.normalization, d.percentile_clip, d.val_fraction = "scale_range", (0.5, 99.5), 0.2
    d.test_overlap, d.test_padding = 0.5, (16, 8)
    p.noise, p.resizing_factor = 0.1, 2.0
    m.architecture, m.feature_maps, m.dropout = "resunet", (8, 16, 32), (0.0, 0.1, 0.2)
    m.kernel_size, m.norm, m.activation, m.upsample_layer = 5, "bn", "relu", "upsampling"
    m.z_down, m.load_checkpoint, m.checkpoint_file = (1, 2), True, "/ck/model.pth"
    t.optimizer, t.lr, t.weight_decay, t.batch_size = "SGD", 3e-3, 0.0, 3
    t.epochs, t.patience, t.loss, t.augment = 7, 4, "mse", False
    t.lr_schedule, t.min_lr, t.plateau_factor, t.plateau_patience = "reduceonplateau", 1e-5, 0.2, 3
    cfg.test.enable, cfg.system.seed, cfg.system.num_workers = False, 42, 2
    return cfg


def _masking_2d() -> Config:
    cfg = Config()
    d, p, m = cfg.data, cfg.pretext, cfg.model
    d.patch_size, d.channels, d.train_path, d.test_padding = (64, 64), 1, "/d/train/x", (8, 8)
    d.val_path, d.normalization_mean, d.normalization_std = "/d/val/x", (110.0,), (35.5,)
    p.task, p.mask_type, p.mask_ratio = "masking", "random", 0.6
    m.architecture, m.dropout, m.vit_token_size, m.vit_embed_dim = "mae", (0.1,), 8, 48
    m.vit_num_layers, m.vit_num_heads, m.vit_mlp_ratio, m.vit_norm_eps = 2, 3, 2.0, 1e-5
    m.mae_dec_hidden_size, m.mae_dec_num_layers, m.mae_dec_num_heads = 32, 1, 2
    m.mae_dec_mlp_dims = 64
    cfg.train.epochs, cfg.train.augment = 3, True
    t = cfg.train  # warmupcosine as the Train dock fills it in: no decay fraction
    t.lr_schedule, t.min_lr, t.warmup_epochs = "warmupcosine", 1e-6, 1
    return cfg


@pytest.mark.parametrize("make", [_crappify_2d, _masking_2d])
def test_round_trip(make) -> None:
    cfg = make()
    written = to_biapy(cfg)
    json.dumps(written)  # plain builtins only
    assert _read(yaml.safe_dump(written, sort_keys=False), source="ours") == cfg


def test_to_biapy_writes_what_biapy_will_run() -> None:
    cfg = _masking_2d()
    cfg.model.vit_preset, cfg.train.patience, cfg.data.test_padding = "tiny", 0, None
    cfg.data.channels, cfg.data.train_path = None, ""
    out = to_biapy(cfg)
    model = out["MODEL"]
    assert (model["VIT_EMBED_DIM"], model["VIT_NUM_LAYERS"], model["VIT_NUM_HEADS"]) == (192, 12, 3)
    assert out["TRAIN"]["PATIENCE"] == -1 and out["DATA"]["TEST"]["PADDING"] == [8, 8]
    assert out["DATA"]["PATCH_SIZE"] == [64, 64, 1] and "PATH" not in out["DATA"].get("TRAIN", {})
    assert out["PROBLEM"]["SELF_SUPERVISED"]["RESIZING_FACTOR"] == 4  # int, as yacs wants


def test_to_biapy_gives_plain_builtins_for_numpy_values() -> None:
    cfg = Config()
    cfg.data.patch_size, cfg.data.channels = tuple(np.array([128, 64])), np.int64(2)
    cfg.train.lr, cfg.train.patience = np.float32(2e-4), np.int64(5)
    cfg.pretext.resizing_factor, cfg.data.test_overlap = np.float64(2.0), np.float32(0.5)
    out = to_biapy(cfg)
    assert yaml.safe_load(yaml.safe_dump(out)) == json.loads(json.dumps(out)) == out
    assert out["DATA"]["PATCH_SIZE"] == [128, 64, 2] and type(out["TRAIN"]["LR"][0]) is float


_BIAPY_CHECK = """
import json, sys, yaml
from yacs.config import CfgNode as CN
from biapy.config.config import Config, update_dependencies
from biapy.engine.check_configuration import (
    check_configuration, convert_old_model_cfg_to_current_version)
result = {}
for path in sys.argv[2:]:
    with open(path) as f:
        raw = yaml.safe_load(f)
    manager = Config(sys.argv[1], "job_1")
    manager._C.merge_from_other_cfg(CN(convert_old_model_cfg_to_current_version(raw)))
    update_dependencies(manager)
    cfg = manager.get_cfg_defaults()
    check_configuration(cfg, "job_1", check_data_paths=True)
    result[path] = {
        "arch": cfg.MODEL.ARCHITECTURE, "task": cfg.PROBLEM.SELF_SUPERVISED.PRETEXT_TASK,
        "patch": list(cfg.DATA.PATCH_SIZE), "optimizer": list(cfg.TRAIN.OPTIMIZER),
        "lr": list(cfg.TRAIN.LR), "loss": list(cfg.LOSS.TYPE),
        "padding": list(cfg.DATA.TEST.PADDING), "train": cfg.DATA.TRAIN.PATH,
        "mask_ratio": cfg.MODEL.MAE_MASK_RATIO, "from_train": cfg.DATA.VAL.FROM_TRAIN,
        "val": cfg.DATA.VAL.PATH, "mean": list(cfg.DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL),
        "std": list(cfg.DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL),
        "schedule": cfg.TRAIN.LR_SCHEDULER.NAME, "min_lr": list(cfg.TRAIN.LR_SCHEDULER.MIN_LR),
        "warmup": cfg.TRAIN.LR_SCHEDULER.WARMUP_COSINE_DECAY_EPOCHS,
        "plateau": [cfg.TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_FACTOR,
                    cfg.TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_PATIENCE],
    }
print("RESULT" + json.dumps(result))
"""


def test_biapy_accepts_what_we_write(biapy_python: Path, tmp_path: Path) -> None:
    """BiaPy 3.7.1 merges our YAML into its defaults and passes its configuration check."""
    paths = []
    for name, cfg in (("crappify_unet", _crappify_2d()), ("masking_mae", _masking_2d())):
        cfg.data.train_path = str(tmp_path / name / "train" / "x")
        cfg.data.test_path = str(tmp_path / name / "test" / "x")
        cfg.data.val_path = str(tmp_path / name / "val" / "x") if cfg.data.val_path else ""
        for folder in (cfg.data.train_path, cfg.data.test_path, cfg.data.val_path):
            if folder:
                Path(folder).mkdir(parents=True)
        if name == "crappify_unet":  # no checkpoint file to load; the unet of the brief
            cfg.model.load_checkpoint, cfg.model.architecture = False, "unet"
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(to_biapy(cfg), sort_keys=False))
        paths.append(str(path))
    stdout = run_biapy(biapy_python, _BIAPY_CHECK, str(tmp_path / "job"), *paths)
    result = json.loads(stdout.split("RESULT", 1)[1])
    crappify, masking = (result[p] for p in paths)
    assert crappify["arch"] == "unet" and crappify["task"] == "crappify"
    assert crappify["patch"] == [128, 96, 3] and crappify["padding"] == [16, 8]
    assert crappify["optimizer"] == ["SGD"] and crappify["lr"] == [pytest.approx(3e-3)]
    assert crappify["loss"] == ["MSE"] and crappify["train"].endswith("crappify_unet/train/x")
    assert masking["arch"] == "mae" and masking["task"] == "masking"
    assert masking["patch"] == [64, 64, 1] and masking["mask_ratio"] == 0.6
    assert crappify["from_train"] and crappify["mean"] == crappify["std"] == [-1.0]
    assert not masking["from_train"] and masking["val"].endswith("masking_mae/val/x")
    assert masking["mean"] == [110.0] and masking["std"] == [35.5]
    assert (crappify["schedule"], crappify["min_lr"], crappify["plateau"]) == (
        "reduceonplateau", [1e-5], [0.2, 3]
    )  # fmt: skip
    assert (masking["schedule"], masking["min_lr"], masking["warmup"]) == (
        "warmupcosine",
        [1e-6],
        1,
    )
