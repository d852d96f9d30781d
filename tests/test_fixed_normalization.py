"""Fixed zero-mean-unit-variance values (BiaPy DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL /
STD_VAL): the statistics, BiaPy's own normalisation of the same image, and a CLI job whose
training, validation, checkpoint, BiaPy-style .npy files and reconstruction all use them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from biapy_peer import run_biapy
from napari_ssl.biapy_export import to_biapy
from napari_ssl.config import Config, load_yaml
from napari_ssl.data.images import DataError, Image, as_image
from napari_ssl.data.normalization import compute_stats, norm_record, stats_for
from napari_ssl.engine.checkpoints import load_trained
from napari_ssl.engine.setup import prepare_run
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import ResultsLayout, save_normalization_values
from test_cli import run_cli, set_keys, write_folders, write_yaml
from test_training import no_charts, one_thread, tiny_config  # noqa: F401  (shared fixtures)

MEAN, STD = 120.0, 40.0  # the SEM crops below have their own: mean 150-205, std 28-35
NAME = "fixed"


def _two_channels(sem: np.ndarray) -> np.ndarray:
    return np.stack([sem[:64, :64], sem[64:128, 100:164]], axis=-1)  # (Y, X, C) uint8


def test_fixed_values_replace_the_images_own_after_clipping(sem_2d: np.ndarray) -> None:
    image = as_image(_two_channels(sem_2d), "two", 2, channel_axis=-1)
    raw = image.read().astype(np.float64)
    own = compute_stats(image, "zero_mean_unit_variance", (1.0, 99.0))
    both = compute_stats(image, "zero_mean_unit_variance", (1.0, 99.0), mean=[100.0, 90.0],
                         std=[30.0])  # fmt: skip
    lo, hi = np.percentile(raw.reshape(2, -1), (1.0, 99.0), axis=1)
    clipped = np.clip(raw, lo[:, None, None], hi[:, None, None])
    mean, std = np.array([100.0, 90.0])[:, None, None], 30.0
    np.testing.assert_allclose(both.normalize(raw), (clipped - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both.denormalize(both.normalize(raw)), clipped, atol=1e-3)
    mean_only = compute_stats(image, "zero_mean_unit_variance", (1.0, 99.0), mean=[100.0])
    np.testing.assert_array_equal(mean_only.scale, own.scale)  # BiaPy: each value on its own
    np.testing.assert_array_equal(mean_only.offset, [100.0, 100.0])
    with pytest.raises(DataError, match=r"two has 2 channel.*\[1\.0, 2\.0, 3\.0\].*MEAN_VAL"):
        compute_stats(image, "zero_mean_unit_variance", mean=[1.0, 2.0, 3.0])


_BIAPY_NORMALIZE = """
import json, sys, yaml
import numpy as np
from yacs.config import CfgNode as CN
from biapy.config.config import Config, update_dependencies
from biapy.engine.check_configuration import (
    check_configuration, convert_old_model_cfg_to_current_version)
from biapy.data.norm import normalize_image
manager = Config(sys.argv[1], "job_1")
with open(sys.argv[2]) as f:
    manager._C.merge_from_other_cfg(CN(convert_old_model_cfg_to_current_version(yaml.safe_load(f))))
update_dependencies(manager)
cfg = manager.get_cfg_defaults()
check_configuration(cfg, "job_1", check_data_paths=False)
n = cfg.DATA.NORMALIZATION
norm_module = {  # as biapy/engine/base_workflow.py builds it
    "type": n.TYPE, "target_type": "mask", "out_dtype": "float32", "norm_target": False,
    "percentile_clip": n.PERC_CLIP.ENABLE, "per_lower_bound": n.PERC_CLIP.LOWER_PERC,
    "per_upper_bound": n.PERC_CLIP.UPPER_PERC, "lower_bound_val": n.PERC_CLIP.LOWER_VALUE,
    "upper_bound_val": n.PERC_CLIP.UPPER_VALUE, "mean": n.ZERO_MEAN_UNIT_VAR.MEAN_VAL,
    "std": n.ZERO_MEAN_UNIT_VAR.STD_VAL,
}
out, info = normalize_image(np.load(sys.argv[3]), norm_module)
np.save(sys.argv[4], out)
print("RESULT" + json.dumps(info["per_channel_info"]))
"""


def test_biapy_normalises_like_us_from_the_keys_we_write(
    biapy_python: Path, tmp_path: Path, sem_2d: np.ndarray
) -> None:
    cfg = Config()
    d = cfg.data
    d.channels, d.percentile_clip = 2, (1.0, 99.0)
    d.normalization_mean, d.normalization_std = (100.0, 90.0), (30.0, 20.0)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(to_biapy(cfg)))
    pixels = _two_channels(sem_2d)
    np.save(tmp_path / "x.npy", pixels)
    stdout = run_biapy(biapy_python, _BIAPY_NORMALIZE, str(tmp_path / "job"), str(config),
                       str(tmp_path / "x.npy"), str(tmp_path / "out.npy"))  # fmt: skip
    used = json.loads(stdout.split("RESULT", 1)[1])
    assert [(used[c]["mean"], used[c]["std"]) for c in "01"] == [(100.0, 30.0), (90.0, 20.0)]
    image = as_image(pixels, "two", 2, channel_axis=-1)
    ours = stats_for(image, norm_record(d)).normalize(image.read())
    theirs = np.moveaxis(np.load(tmp_path / "out.npy"), -1, 0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_training_and_validation_use_the_fixed_values(tmp_path: Path, sem_2d: np.ndarray) -> None:
    val = write_folders(tmp_path / "data", {"val": {"v": sem_2d[400:464, 500:564]}})
    cfg = tiny_config()
    d = cfg.data
    d.val_path, d.normalization_mean, d.normalization_std = str(val), (MEAN,), (STD,)
    train = [as_image(sem_2d[:96, :96].copy(), "a", 2), as_image(sem_2d[96:160, :96], "b", 2)]
    run = prepare_run(cfg, train, ResultsLayout(tmp_path / "out", "job"), None)
    table = run.task.table
    run.release()
    assert len(run.images) == 3  # a, b, then v of the validation folder
    assert table.offset.flatten().tolist() == [MEAN] * 3
    assert table.scale.flatten().tolist() == [STD] * 3


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, sem_2d: np.ndarray) -> Path:
    """A BiaPy-YAML CLI job with fixed values; returns its folder."""
    tmp = tmp_path_factory.mktemp("fixed")
    data = write_folders(tmp / "data", {"train": {"a": sem_2d[:96, :96]},
                                        "test": {"t": sem_2d[300:332, 300:332]}})  # fmt: skip
    fixed = {"MEAN_VAL": [MEAN], "STD_VAL": [STD]}
    config = set_keys(write_yaml(tmp / "cfg.yaml", data, epochs=1),
                      {"DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR": fixed})  # fmt: skip
    ran = run_cli("--config", config, "--result_dir", tmp / "out", "--name", NAME)
    assert ran.code == 0 and "warning:" not in ran.err, ran.out + ran.err
    return tmp / "out" / NAME


def test_job_writes_the_values_as_biapy_did(job: Path) -> None:
    for stat, value in (("mean", MEAN), ("std", STD)):
        saved = np.load(job / "checkpoints" / f"normalization_{stat}_value.npy")
        assert saved.shape == () and saved.dtype == np.float64 and float(saved) == value
    best = torch.load(job / "checkpoints" / f"{NAME}_1-checkpoint-best.pth", weights_only=True)
    assert best["normalization"] == {"type": "zero_mean_unit_variance", "percentile_clip": None,
                                     "mean": [MEAN], "std": [STD], "per_image": False}  # fmt: skip
    zmuv = best["cfg"]["DATA"]["NORMALIZATION"]["ZERO_MEAN_UNIT_VAR"]
    assert zmuv == {"MEAN_VAL": [MEAN], "STD_VAL": [STD]}
    written = yaml.safe_load((job / "config_files" / f"{NAME}.yaml").read_text())
    assert written["DATA"]["NORMALIZATION"]["ZERO_MEAN_UNIT_VAR"] == zmuv
    ours = load_yaml(job / "config_files" / f"{NAME}.napari-ssl.yaml")
    assert (ours.data.normalization_mean, ours.data.normalization_std) == ((MEAN,), (STD,))


def test_load_trained_reconstructs_with_the_fixed_values(job: Path, sem_2d: np.ndarray) -> None:
    trained = load_trained(job / "checkpoints" / f"{NAME}_1-checkpoint-best.pth")
    trained.cfg.train.mixed_precision = "off"
    assert (trained.normalization["mean"], trained.normalization["std"]) == ([MEAN], [STD])
    raw = sem_2d[600:632, 700:732]  # one patch: the reconstruction is one forward pass
    out = reconstruct(trained, as_image(raw, "tile", 2), overlap=0.0, padding=(0, 0), device="cpu")
    x = torch.from_numpy((raw.astype(np.float32) - MEAN) / STD)[None, None]
    with torch.no_grad():
        expected = np.clip(trained.model(x)[0].numpy() * STD + MEAN, 0, 255)  # uint8's range
    np.testing.assert_allclose(out["reconstruction"], expected, rtol=1e-5, atol=1e-3)
    own = compute_stats(Image(raw[None], "tile"), "zero_mean_unit_variance")
    assert abs(float(own.offset[0]) - MEAN) > 5  # the image's own mean would differ


def test_a_later_run_without_fixed_values_removes_the_earlier_files(tmp_path: Path) -> None:
    layout = ResultsLayout(tmp_path, NAME, "1").make()
    save_normalization_values(layout, (MEAN, MEAN), (STD, STD))
    assert np.load(layout.normalization_values("std")).tolist() == [STD, STD]
    later = ResultsLayout(tmp_path, NAME, "2").make()  # same name: the same checkpoints folder
    save_normalization_values(later, None, None)
    assert not any(layout.checkpoints_dir.glob("normalization_*"))
