"""Results folder: layout and name checks, atomic writes, logs, charts, model plot, TIFFs."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from matplotlib.image import imread
from torch import nn

from napari_ssl.charts import write_charts, write_model_plot
from napari_ssl.results import (
    ResultsLayout,
    TrainLog,
    append_train_log,
    atomic_write,
    make_tensorboard_writer,
    next_run_id,
    write_metrics_csv,
)
from napari_ssl.tiffs import save_tif


def test_layout_paths(tmp_path: Path) -> None:
    lay = ResultsLayout(tmp_path, "sem", 3)
    run = tmp_path / "sem" / "results" / "sem_3"
    assert lay.run_id == "3"
    assert lay.root == tmp_path / "sem"
    assert lay.config_file == tmp_path / "sem" / "config_files" / "sem.yaml"
    assert lay.best_checkpoint == tmp_path / "sem" / "checkpoints" / "sem_3-checkpoint-best.pth"
    assert lay.last_checkpoint.name == "sem_3-checkpoint-last.pth"
    assert lay.per_image("a/b:c") == run / "per_image" / "a_b_c.tif"
    assert lay.mae_check("x", "masked") == run / "MAE_checks" / "x_masked.tif"
    assert lay.loss_chart == run / "charts" / "sem_3_loss.png"
    assert lay.metric_chart("val_psnr") == run / "charts" / "sem_3_val_psnr.png"
    assert lay.model_plot == run / "charts" / "model_plot_sem_3.png"
    assert lay.aug("pair_0") == run / "aug" / "pair_0.tif"
    assert lay.train_log == run / "train_logs" / "sem_3_log.csv"
    assert lay.metrics_csv == run / "test_results_metrics.csv"
    assert lay.tensorboard_dir == run / "tensorboard"
    assert lay.make() is lay
    for d in ("charts", "aug", "train_logs"):
        assert (run / d).is_dir()
    assert not (run / "per_image").exists()  # made by a test step, as MAE_checks/
    assert lay.config_dir.is_dir() and lay.checkpoints_dir.is_dir()
    with pytest.raises(ValueError, match="kind"):
        lay.mae_check("x", "bogus")


BAD = ["", " ", ".", "..", "../up", "a/b", "/etc", "a\\b", "C:x", "x\x00y", "~/../../x"]


def test_next_run_id_skips_runs_with_checkpoints_or_results(tmp_path: Path) -> None:
    assert next_run_id(tmp_path, "sem") == 1
    ResultsLayout(tmp_path, "sem", 2).checkpoints_dir.mkdir(parents=True)
    ResultsLayout(tmp_path, "sem", 2).last_checkpoint.write_bytes(b"")
    assert next_run_id(tmp_path, "sem") == 3
    ResultsLayout(tmp_path, "sem", 4).run_dir.mkdir(parents=True)  # results whose checkpoint went
    ResultsLayout(tmp_path, "sem", "first").run_dir.mkdir(parents=True)  # named runs don't count
    ResultsLayout(tmp_path, "sem_x", 9).run_dir.mkdir(parents=True)  # another name's run
    (tmp_path / "sem" / "results" / "sem_7.txt").write_text("")  # not a run
    assert next_run_id(tmp_path, "sem") == 5


@pytest.mark.parametrize("bad", BAD)
def test_refuses_bad_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        ResultsLayout(tmp_path / "out", bad, 1)
    with pytest.raises(ValueError, match="plain name"):
        ResultsLayout(tmp_path / "out", "ok", bad)
    assert not (tmp_path / "out").exists()


def test_refuses_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "evil").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside"):
        ResultsLayout(tmp_path / "out", "evil", 1)


def test_atomic_write(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "ckpt.pth"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".pth"
        torch.save({"a": torch.ones(2)}, tmp)
    assert torch.load(target, weights_only=True)["a"].sum() == 2
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("crash while writing")
    assert torch.load(target, weights_only=True)["a"].sum() == 2  # old file intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["ckpt.pth"]  # no temp left


def test_train_log_rows_resume_and_new_run(tmp_path: Path) -> None:
    lay = ResultsLayout(tmp_path, "run", 1)
    path = lay.train_log
    for e in (1, 2, 3):
        row = {"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "val_psnr": 20 + e}
        append_train_log(lay, {**row, "lr": 1e-4, "seconds": 1.5})
        assert len(list(csv.DictReader(path.open()))) == e  # flushed at once
    with path.open() as f:
        header = next(csv.reader(f))
    assert header == ["epoch", "train_loss", "val_loss", "val_psnr", "lr", "seconds"]

    # resumed from the checkpoint of epoch 2: epoch 3 was logged after it and is replaced
    log = TrainLog(path)
    assert [r["epoch"] for r in log.rows] == [1, 2, 3]
    log.append({"epoch": 3, "train_loss": 0.3, "val_loss": None, "val_ssim": 0.8, "lr": 1e-5})
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == [*header[:4], "val_ssim", "lr", "seconds"]  # widened header
    assert rows[-1]["val_loss"] == "" and rows[-1]["val_psnr"] == "" and rows[0]["val_ssim"] == ""
    assert log.rows[-1] == {"epoch": 3, "train_loss": 0.3, "val_ssim": 0.8, "lr": 1e-5}
    assert TrainLog(path).rows == log.rows

    TrainLog(path).append({"epoch": 1, "train_loss": 9.0})  # a new run replaces the old log
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1 and list(rows[0]) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    with pytest.raises(ValueError, match="epoch"):
        log.append({"train_loss": 1.0})


def test_charts_are_pngs_without_pyplot_figures(tmp_path: Path) -> None:
    lay = ResultsLayout(tmp_path, "exp", 1).make()
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_psnr": 20 + e, "lr": 1e-4}
        for e in range(1, 6)
    ]
    history[2]["val_ssim"] = 0.7
    paths = write_charts(history, lay)
    assert paths == [lay.loss_chart, lay.metric_chart("val_psnr"), lay.metric_chart("val_ssim")]
    for p in paths:
        img = imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0
    assert write_charts([], lay) == []
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


class TinyUNet(nn.Module):
    """Two-level U-Net: 35 layers, as a U-Net template has."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2, self.bottom = _block(1, 8), _block(8, 16), _block(16, 32)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.dec2 = nn.ConvTranspose2d(32, 16, 2, 2), _block(32, 16)
        self.up1, self.dec1 = nn.ConvTranspose2d(16, 8, 2, 2), _block(16, 8)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc1(x)
        b = self.enc2(self.pool(a))
        c = self.bottom(self.pool(b))
        d = self.dec2(torch.cat([self.up2(c), b], 1))
        return self.head(self.dec1(torch.cat([self.up1(d), a], 1)))


class TinyMAE(nn.Module):
    """Takes (x, mask) like the MAE; 40 blocks of 4 leaves = 160 leaves to summarise."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 8)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8))
            for _ in range(40)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(x.flatten(2)) * mask[..., None]
        for blk in self.blocks:
            h = h + blk(h)
        return {"tokens": h, "mask": mask}


def test_model_plot(tmp_path: Path) -> None:
    unet = TinyUNet().train()
    path = write_model_plot(unet, torch.zeros(1, 1, 32, 32), tmp_path / "unet.png")
    img = imread(path)
    assert img.shape[1] > 1000 and img.std() > 0
    assert 35 * 20 < img.shape[0] < 45 * 30  # one readable row per layer
    assert unet.training  # mode restored
    assert not any(m._forward_hooks for m in unet.modules())  # hooks removed

    mae = TinyMAE()
    args = (torch.zeros(1, 4, 4, 4), torch.ones(1, 4))
    tall = imread(write_model_plot(mae, args, tmp_path / "mae.png"))
    assert tall.shape[0] < 90 * 30  # 160 leaves summarised to fit max_rows=80


def test_metrics_csv(tmp_path: Path) -> None:
    rows = [
        {"image": "a", "psnr": 30.0, "ssim": 0.9},
        {"image": "b", "psnr": 20.0, "ssim": 0.7, "masked_mse": 0.5},
    ]
    path = tmp_path / "test_results_metrics.csv"
    write_metrics_csv(rows, path)
    got = list(csv.DictReader(path.open()))
    assert [r["image"] for r in got] == ["a", "b", "mean"]
    assert float(got[-1]["psnr"]) == 25.0 and float(got[-1]["ssim"]) == pytest.approx(0.8)
    assert float(got[-1]["masked_mse"]) == 0.5 and got[0]["masked_mse"] == ""
    with pytest.raises(ValueError):
        write_metrics_csv([], path)


def test_tif_scale_round_trip(tmp_path: Path, sem_2d: np.ndarray, nuclei_3d: np.ndarray) -> None:
    p2 = save_tif(tmp_path / "sem.tif", sem_2d[:64, :80], scale=(0.25, 0.5))
    with tifffile.TiffFile(p2) as tif:
        assert tif.is_imagej and tif.series[0].axes == "YX"
        assert tif.pages[0].resolution == pytest.approx((1 / 0.5, 1 / 0.25))  # (x, y) per unit
        np.testing.assert_array_equal(tif.asarray(), sem_2d[:64, :80])

    vol = np.stack([nuclei_3d[:5, :32, :40], nuclei_3d[5:10, :32, :40]]).astype(np.float64)
    p3 = save_tif(tmp_path / "vol.tif", vol, scale=(2.0, 0.3, 0.3), axes="CZYX")
    with tifffile.TiffFile(p3) as tif:
        assert tif.series[0].axes == "ZCYX"  # ImageJ's order
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        assert tif.pages[0].resolution == pytest.approx((1 / 0.3, 1 / 0.3))
        data = tif.asarray()
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, vol.transpose(1, 0, 2, 3).astype(np.float32))

    two = np.stack([sem_2d[:16, :24], sem_2d[16:32, :24]])  # (C, Y, X), the package's layout
    with tifffile.TiffFile(save_tif(tmp_path / "c.tif", two, scale=(0.1, 0.2))) as tif:
        assert tif.series[0].axes == "CYX" and tif.pages[0].resolution == pytest.approx((5, 10))
    with tifffile.TiffFile(save_tif(tmp_path / "m.tif", np.eye(4, dtype=bool))) as tif:
        assert tif.pages[0].dtype == np.uint8
    assert tifffile.imread(save_tif(tmp_path / "i.tif", np.arange(6).reshape(2, 3))).dtype == (
        np.float32
    )
    with pytest.raises(ValueError, match="axes"):
        save_tif(tmp_path / "x.tif", np.zeros((2, 3)), axes="ZYX")
    with pytest.raises(ValueError, match="scale"):
        save_tif(tmp_path / "x.tif", np.zeros((2, 3)), scale=(1.0, 1.0, 1.0))
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_tensorboard_writer_optional(tmp_path: Path) -> None:
    writer = make_tensorboard_writer(ResultsLayout(tmp_path, "tb", 1))
    if importlib.util.find_spec("tensorboard") is None:
        assert writer is None
    else:
        assert writer is not None
        writer.close()
