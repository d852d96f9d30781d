"""Multi-process training under torchrun (gloo on CPU): one result tree, written by rank 0, from
images in memory or memory-mapped ones read by each rank's reader threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_ssl.config import Config, save_yaml
from napari_ssl.engine.checkpoints import load_trained


def _dataset(root: Path, sem_2d, train_suffix: str) -> Path:
    for split, crop in (("train", sem_2d[:192, :192]), ("test", sem_2d[192:320, :128])):
        folder = root / split / "x"
        folder.mkdir(parents=True)
        if split == "train" and train_suffix == ".npy":  # memory-mapped: read by reader threads
            np.save(folder / "sem.npy", crop)
        else:
            tifffile.imwrite(folder / "sem.tif", crop)
    cfg = Config()
    cfg.data.train_path = str(root / "train" / "x")
    cfg.data.test_path = str(root / "test" / "x")
    cfg.data.patch_size = (32, 32)
    cfg.model.feature_maps = (4, 8, 16)
    cfg.train.epochs = 2
    cfg.train.batch_size = 4
    cfg.train.patches_per_epoch = 16
    cfg.system.device = "cpu"
    cfg.system.num_workers = 2
    return save_yaml(cfg, root / "cfg.yaml")


@pytest.mark.parametrize("train_suffix", [".tif", ".npy"])
def test_torchrun_two_processes_write_one_result_tree(tmp_path, sem_2d, train_suffix):
    config = _dataset(tmp_path, sem_2d, train_suffix)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "napari_ssl",
           "--config", str(config), "--result_dir", str(tmp_path / "out"), "--name", "ddp",
           "--run_id", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # rank 0 alone prints, so each line appears once
    assert proc.stdout.count("epoch 2:") == 1
    assert "16 patches/epoch" in proc.stdout  # 2 processes x 2 steps x batch 4
    assert "read ahead" not in proc.stdout  # small images: reader threads without a note
    job = tmp_path / "out" / "ddp"
    best = job / "checkpoints" / "ddp_1-checkpoint-best.pth"
    assert (job / "checkpoints" / "ddp_1-checkpoint-last.pth").is_file()
    assert (job / "results" / "ddp_1" / "per_image" / "sem.tif").is_file()
    assert (job / "results" / "ddp_1" / "test_results_metrics.csv").is_file()
    rows = (job / "results" / "ddp_1" / "train_logs" / "ddp_1_log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, not one per process
    data = torch.load(best, weights_only=True)
    assert not any(k.startswith("module.") for k in data["model"])
    assert load_trained(best).epoch >= 1
    assert not list(job.rglob("*.tmp*"))
