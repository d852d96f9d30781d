"""A validation folder of its own (BiaPy DATA.VAL.FROM_TRAIN False + DATA.VAL.PATH): the CLI job
on dataset/{train,val,test}/x, what the engine trains and validates on, bad folders refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_ssl.config import load_yaml
from napari_ssl.data.images import as_image
from napari_ssl.engine.setup import prepare_run
from napari_ssl.results import ResultsLayout
from test_cli import files_under, run_cli, set_keys, write_folders, write_yaml
from test_training import no_charts, one_thread, tiny_config  # noqa: F401  (shared fixtures)

NAME = "val_ssl"


def _dataset(root: Path, sem: np.ndarray, val: bool = True) -> Path:
    """train/x: two 96x96 crops; val/x: 64x64 and 32x64; test/x: one crop."""
    crops = {"train": {"a": sem[:96, :96], "b": sem[96:192, :96]}, "test": {"t": sem[300:364, :80]}}
    if val:
        crops["val"] = {"v": sem[400:464, 500:564], "w": sem[500:532, 600:664]}
    return write_folders(root, crops)


def _config(path: Path, data: Path) -> Path:
    val = {"FROM_TRAIN": False, "PATH": str(data / "val" / "x"), "SPLIT_TRAIN": 0.1}
    return set_keys(write_yaml(path, data), {"DATA.VAL": val})


def test_cli_job_validates_on_the_val_folder(tmp_path: Path, sem_2d: np.ndarray) -> None:
    data = _dataset(tmp_path / "dataset", sem_2d)
    ran = run_cli("--config", _config(tmp_path / "cfg.yaml", data), "--result_dir",
                  tmp_path / "out", "--name", NAME)  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    assert "warning:" not in ran.err  # FROM_TRAIN, PATH and the moot SPLIT_TRAIN are all read
    lines = ran.out.splitlines()
    # the training images are whole: 2 x 9 patches of 32 cover them (held out: 2 x 6)
    assert "2 epochs x 5 steps (20 patches/epoch)" in lines[0]
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all("val loss" in ln and "val_psnr" in ln for ln in epochs)
    assert any(ln.startswith("test mean: psnr") for ln in lines)
    root = tmp_path / "out" / NAME
    written = yaml.safe_load((root / "config_files" / f"{NAME}.yaml").read_text())
    assert written["DATA"]["VAL"] == {"SPLIT_TRAIN": 0.1, "FROM_TRAIN": False,
                                      "PATH": str(data / "val" / "x")}  # fmt: skip
    ours = load_yaml(root / "config_files" / f"{NAME}.napari-ssl.yaml")
    assert ours.data.val_path == str(data / "val" / "x")
    best = torch.load(root / "checkpoints" / f"{NAME}_1-checkpoint-best.pth", weights_only=True)
    assert best["cfg"]["DATA"]["VAL"]["FROM_TRAIN"] is False


def test_engine_trains_on_whole_images_and_validates_on_the_folder(
    tmp_path: Path, sem_2d: np.ndarray
) -> None:
    data = _dataset(tmp_path / "dataset", sem_2d)
    cfg = tiny_config()
    cfg.data.val_path = str(data)  # our layout: a dataset folder means dataset/val/x
    train = [as_image(sem_2d[:96, :96].copy(), "a", 2), as_image(sem_2d[:64, :128].copy(), "b", 2)]
    run = prepare_run(cfg, train, ResultsLayout(tmp_path / "out", "job"), None)
    raw, idx = run.val
    run.release()
    assert [img.name for img in run.images] == ["a", "b", "v", "w"]
    assert [(r.image, r.shape) for r in run.sampler.regions] == [(0, (96, 96)), (1, (64, 128))]
    assert idx.tolist() == [2] * 4 + [3] * 2  # v: 2 x 2 patches of 32, w: 1 x 2
    np.testing.assert_array_equal(raw[0, 0].numpy(), sem_2d[400:432, 500:532])
    np.testing.assert_array_equal(raw[-1, 0].numpy(), sem_2d[500:532, 632:664])


def test_a_validation_image_smaller_than_the_patch_is_noted(
    tmp_path: Path, sem_2d: np.ndarray
) -> None:
    folder = tmp_path / "val"
    folder.mkdir()
    np.save(folder / "small.npy", sem_2d[:20, :24])
    cfg = tiny_config()
    cfg.data.val_path = str(folder)
    run = prepare_run(cfg, [as_image(sem_2d[:96, :96].copy(), "a", 2)], None, None)
    run.release()
    assert run.notes == ["small (20, 24) is smaller than the patch (32, 32): it is reflect-padded."]


def _bad_val_folder(kind: str, folder: Path, sem: np.ndarray, nuclei: np.ndarray) -> str:
    """Fill ``folder`` with one kind of bad validation data; return what the error must say."""
    key = r"data\.val_path \(BiaPy DATA\.VAL\.PATH\)"
    if kind == "missing":
        return rf"folder not found: '.*val/x'\. Check {key}\."
    folder.mkdir(parents=True)
    if kind == "empty":
        return rf"no images in '.*val/x'.*Point {key} to the folder"
    if kind == "channels":
        np.save(folder / "v.npy", np.stack([sem[:64, :64]] * 2, axis=-1))
        return rf"validation image 'v\.npy' in {key} .* 2 channel\(s\) .* training images have 1"
    tifffile.imwrite(folder / "v.tif", nuclei[:5, :64, :64])  # a 3D stack in the 2D folder
    return rf"validation image in {key} .*'v\.tif' is a stack .*PROBLEM\.NDIM"


@pytest.mark.parametrize("kind", ["missing", "empty", "channels", "dimensionality"])
def test_bad_val_folder_is_refused_cleanly(
    kind: str, tmp_path: Path, sem_2d: np.ndarray, nuclei_3d: np.ndarray
) -> None:
    data = _dataset(tmp_path / "data", sem_2d, val=False)
    expected = _bad_val_folder(kind, data / "val" / "x", sem_2d, nuclei_3d)
    out = tmp_path / "out"
    ran = run_cli("--config", _config(tmp_path / "cfg.yaml", data), "--result_dir", out)
    assert ran.code == 1
    err = ran.err.strip()
    assert err.startswith("napari-ssl: ") and "\n" not in err, err
    assert re.search(expected, err), err
    assert files_under(out) == []
