"""The ``napari-ssl`` command as a user runs it: a BiaPy YAML job and its output tree, resume,
predict, export, demo, and every bad input refused with one clear line and nothing written."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image as PILImage

from napari_ssl.cli import main
from napari_ssl.engine.checkpoints import load_trained
from test_training import one_thread  # noqa: F401  (shared fixture)

NAME = "sem_ssl"
BIAPY_YAML = """\
SYSTEM:
  SEED: 0
PROBLEM:
  TYPE: SELF_SUPERVISED
  NDIM: {ndim}
  SELF_SUPERVISED:
    PRETEXT_TASK: crappify
    RESIZING_FACTOR: {factor}
    NOISE: {noise}
DATA:
  PATCH_SIZE: {patch}
  TRAIN:
    PATH: {train}
  TEST:
    PATH: {test}
  VAL:
    SPLIT_TRAIN: 0.1
MODEL:
  ARCHITECTURE: {arch}
  FEATURE_MAPS: [4, 8, 16]
  DROPOUT_VALUES: [0, 0, 0]
  LOAD_CHECKPOINT: {load}
TRAIN:
  ENABLE: {train_enable}
  OPTIMIZER: ADAMW
  LR: 1.E-3
  BATCH_SIZE: 4
  EPOCHS: {epochs}
  PATIENCE: 20
TEST:
  ENABLE: True
PATHS:
  CHECKPOINT_FILE: '{checkpoint}'
"""


def write_yaml(path: Path, data: Path, **values: object) -> Path:
    fields = {
        "ndim": "2D", "factor": 4, "noise": 0.2, "patch": "(32, 32, 1)", "arch": "unet",
        "load": False, "epochs": 2, "train_enable": True, "checkpoint": "",
        "train": data / "train" / "x", "test": data / "test" / "x",
    }  # fmt: skip
    fields.update(values)
    path.write_text(BIAPY_YAML.format(**fields))
    return path


def set_keys(path: Path, values: dict[str, object]) -> Path:
    """Set dotted keys (``DATA.VAL.PATH``) in the YAML file at ``path``."""
    data = yaml.safe_load(path.read_text())
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_folders(root: Path, crops: dict[str, dict[str, np.ndarray]]) -> Path:
    """``root/<split>/x/<name>.tif`` for each split and named crop."""
    for split, images in crops.items():
        (root / split / "x").mkdir(parents=True)
        for name, crop in images.items():
            tifffile.imwrite(root / split / "x" / f"{name}.tif", np.ascontiguousarray(crop))
    return root


def write_dataset(root: Path, sem: np.ndarray) -> Path:
    """train/x: two 96x96 crops and one 20x24 (smaller than the patch); test/x: one crop."""
    return write_folders(
        root,
        {
            "train": {"a": sem[:96, :96], "b": sem[96:192, :96], "small": sem[200:220, :24]},
            "test": {"t": sem[300:364, 300:380]},
        },
    )


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run_cli(*args: object) -> Ran:
    """``napari-ssl ARGS`` in-process, on one torch thread (tiny models), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        torch.set_num_threads(before)
    return Ran(code, out.getvalue(), err.getvalue())


def one_epoch_job(tmp: Path, sem: np.ndarray, name: str) -> Path:
    """The job folder ``tmp/out/<name>`` of a one-epoch 2D crappify CLI run (run 1)."""
    config = write_yaml(tmp / "cfg.yaml", write_dataset(tmp / "data", sem), epochs=1)
    ran = run_cli("--config", config, "--result_dir", tmp / "out", "--name", name)
    assert ran.code == 0, ran.out + ran.err
    return tmp / "out" / name


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


@dataclass
class Job:
    data: Path
    result_dir: Path
    config: Path
    ran: Ran

    @property
    def root(self) -> Path:
        return self.result_dir / NAME

    @property
    def run_dir(self) -> Path:
        return self.root / "results" / f"{NAME}_1"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / f"{NAME}_1-checkpoint-best.pth"


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, sem_2d: np.ndarray) -> Job:
    """One BiaPy-YAML job run through the CLI, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("cli")
    data = write_dataset(tmp / "data", sem_2d)
    config = write_yaml(tmp / "cfg.yaml", data)
    with config.open("a") as f:
        f.write("DATA_TYPO:\n  FOO: 1\n")  # an unknown key
    ran = run_cli("--config", config, "--result_dir", tmp / "out", "--name", NAME, "--run_id", 1)
    return Job(data, tmp / "out", config, ran)


def test_job_exit_code_and_terminal(job: Job) -> None:
    assert job.ran.code == 0, job.ran.out + job.ran.err
    lines = job.ran.out.splitlines()
    assert lines[0].startswith("training unet (") and "2 epochs x" in lines[0]
    assert any("note: small (20, 24) is smaller than the patch (32, 32)" in ln for ln in lines)
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epochs) == 2
    for ln in epochs:
        assert "train loss" in ln and "val loss" in ln and "patches/s" in ln and "ETA" in ln
    assert any(ln.startswith("test mean: psnr") for ln in lines)
    warnings = [ln for ln in job.ran.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "DATA_TYPO.FOO" in job.ran.err


def test_job_output_tree(job: Job) -> None:
    assert (job.root / "config_files" / f"{NAME}.yaml").is_file()
    checkpoints = job.root / "checkpoints"
    assert job.best.is_file() and (checkpoints / f"{NAME}_1-checkpoint-last.pth").is_file()
    per_image = sorted(p.name for p in (job.run_dir / "per_image").iterdir())
    assert per_image == ["t.tif"]
    out = tifffile.imread(job.run_dir / "per_image" / "t.tif")
    assert out.shape == (64, 80) and np.isfinite(out).all()
    charts = sorted((job.run_dir / "charts").glob("*.png"))
    names = {p.name for p in charts}
    assert {f"{NAME}_1_loss.png", f"model_plot_{NAME}_1.png"} <= names
    for png in charts:  # real, decodable pictures
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with PILImage.open(png) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    with open(job.run_dir / "train_logs" / f"{NAME}_1_log.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    with open(job.run_dir / "test_results_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["t", "mean"]
    assert {"psnr", "ssim", "mae", "mse"} <= set(rows[0])
    assert all(np.isfinite(float(rows[0][k])) for k in ("psnr", "ssim", "mae", "mse"))
    ckpt = torch.load(job.best, map_location="cpu", weights_only=True)
    assert ckpt["cfg"]["DATA"]["PATCH_SIZE"] == [32, 32, 1]
    assert ckpt["cfg"]["TRAIN"]["LR"] == [1e-3]
    assert ckpt["normalization"]["type"] == "zero_mean_unit_variance"  # BiaPy's default


def test_resume_continues_the_run(job: Job, tmp_path: Path) -> None:
    longer = write_yaml(tmp_path / "longer.yaml", job.data, epochs=3)
    ran = run_cli("--config", longer, "--result_dir", job.result_dir, "--name", NAME,
                  "--run_id", 1, "--resume")  # fmt: skip
    assert ran.code == 0, ran.out + ran.err
    assert "note: resumed from" in ran.out
    assert [ln.split(":")[0] for ln in ran.out.splitlines() if ln.startswith("epoch ")] == [
        "epoch 3"
    ]
    with open(job.run_dir / "train_logs" / f"{NAME}_1_log.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    missing = run_cli("--config", longer, "--result_dir", job.result_dir, "--name", NAME,
                      "--run_id", 9, "--resume")  # fmt: skip
    assert missing.code == 2 and "no last checkpoint" in missing.err


def test_predict_and_export(job: Job, tmp_path: Path) -> None:
    ran = run_cli("predict", "--checkpoint", job.best, "--input", job.data / "test" / "x",
                  "--output", tmp_path / "pred")  # fmt: skip
    assert ran.code == 0, ran.err
    pred = tifffile.imread(tmp_path / "pred" / "t.tif")
    assert pred.shape == (64, 80) and np.isfinite(pred).all()
    batched = run_cli("predict", "--checkpoint", job.best, "--input", job.data / "test" / "x",
                      "--output", tmp_path / "pred3", "--batch", 3)  # fmt: skip
    assert batched.code == 0, batched.err
    np.testing.assert_allclose(tifffile.imread(tmp_path / "pred3" / "t.tif"), pred, atol=1e-3)
    with pytest.raises(SystemExit, match="2"):  # argparse's usage error
        run_cli("predict", "--checkpoint", job.best, "--input", job.data / "test" / "x",
                "--output", tmp_path / "pred0", "--batch", 0)  # fmt: skip
    assert not (tmp_path / "pred0").exists()
    exported = run_cli("export", "--checkpoint", job.best, "--output", tmp_path / "exp",
                       "--name", "backbone")  # fmt: skip
    assert exported.code == 0, exported.err
    for suffix in (".pth", ".safetensors", ".yaml"):
        assert (tmp_path / "exp" / f"backbone{suffix}").is_file()
        assert f"backbone{suffix}" in exported.out
    original = load_trained(job.best)
    for suffix in (".pth", ".safetensors"):
        again = load_trained(tmp_path / "exp" / f"backbone{suffix}")
        for key, value in original.model.state_dict().items():
            assert torch.equal(again.model.state_dict()[key], value)
    bad = run_cli("predict", "--checkpoint", tmp_path / "none.pth", "--input", job.data,
                  "--output", tmp_path / "p2")  # fmt: skip
    expected = f"napari-ssl predict: --checkpoint {tmp_path / 'none.pth'}: file not found.\n"
    assert (bad.code, bad.out, bad.err) == (1, "", expected)


@pytest.mark.parametrize(("flag", "value"), [("--name", "../evil"), ("--run_id", "a/b")])
def test_names_cannot_escape_the_result_dir(
    job: Job, tmp_path: Path, flag: str, value: str
) -> None:
    out = tmp_path / "inside" / "out"
    args = {"--name": "ok", "--run_id": "1", flag: value}
    ran = run_cli("--config", job.config, "--result_dir", out, *[x for kv in args.items()
                  for x in kv])  # fmt: skip
    assert ran.code == 2 and "is not a plain name" in ran.err and value in ran.err
    assert files_under(tmp_path) == []  # nothing written, inside or outside


def _bad_train_folder(kind: str, folder: Path, sem: np.ndarray, nuclei: np.ndarray) -> str:
    """Fill ``folder`` with one kind of bad training data; return what the error must say."""
    crop = sem[:64, :64]
    if kind == "missing":
        where = re.escape(str(folder))
        return rf"^napari-ssl: folder not found: '{where}'\. Check DATA\.TRAIN\.PATH\.$"
    folder.mkdir(parents=True)
    if kind == "empty":
        return r"no images in '.*train/x'.*Point DATA\.TRAIN\.PATH to the folder with the images"
    tifffile.imwrite(folder / "a.tif", crop)
    if kind == "corrupt":
        (folder / "x.tif").write_bytes(b"\x00junk" * 10)
        return r"cannot read '.*x\.tif'"
    if kind == "mixed_dims":
        tifffile.imwrite(folder / "b.tif", nuclei[:5, :64, :64])
        return r"'b\.tif' is a stack \(shape \(5, 64, 64\)\).*PROBLEM\.NDIM"
    if kind == "mixed_channels":
        np.save(folder / "b.npy", np.stack([crop, crop], axis=-1))
        return r"'b\.npy' \(shape \(64, 64, 2\)\) has 2 channel\(s\).*expects 1 \(last entry"
    if kind == "nan":
        bad = crop.astype(np.float32)
        bad[5, 5] = np.nan
        np.save(folder / "b.npy", bad)
        return r"b: contains NaN or infinite pixels"
    dtype = {"bool": bool, "complex": np.complex64}[kind]
    np.save(folder / "b.npy", np.ones((64, 64), dtype))
    return rf"b: {'boolean' if kind == 'bool' else 'complex'} image"


BAD_DATA = ["missing", "empty", "corrupt", "mixed_dims", "mixed_channels", "nan", "bool", "complex"]


@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_training_data_is_refused_cleanly(
    kind: str, tmp_path: Path, sem_2d: np.ndarray, nuclei_3d: np.ndarray
) -> None:
    data = tmp_path / "data"
    (data / "test" / "x").mkdir(parents=True)
    tifffile.imwrite(data / "test" / "x" / "t.tif", sem_2d[:64, :64])
    expected = _bad_train_folder(kind, data / "train" / "x", sem_2d, nuclei_3d)
    config = write_yaml(tmp_path / "cfg.yaml", data)
    out = tmp_path / "out"
    ran = run_cli("--config", config, "--result_dir", out, "--name", "bad", "--run_id", 1)
    assert ran.code == 1 and ran.out == ""  # the error is printed once, on stderr
    err = ran.err.strip()
    assert err.startswith("napari-ssl: ") and "\n" not in err, err
    assert re.search(expected, err), err
    assert files_under(out) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"factor": 0.5}, r"PROBLEM\.SELF_SUPERVISED\.RESIZING_FACTOR.*>= 1; got 0\.5"),
        ({"noise": 1.5}, r"PROBLEM\.SELF_SUPERVISED\.NOISE.*\[0, 1\]; got 1\.5"),
        ({"noise": -0.1}, r"PROBLEM\.SELF_SUPERVISED\.NOISE.*got -0\.1"),
        ({"patch": "(34, 34, 1)"}, r"DATA\.PATCH_SIZE.*multiple of 4.*nearest valid: 32 or 36"),
    ],
)
def test_bad_config_values_are_refused(
    values: dict, expected: str, tmp_path: Path, sem_2d: np.ndarray
) -> None:
    data = write_dataset(tmp_path / "data", sem_2d)
    config = write_yaml(tmp_path / "cfg.yaml", data, **values)
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out", "--name", "bad")
    assert ran.code == 2
    err = ran.err.strip()
    assert err.startswith("napari-ssl: ") and "\n" not in err, err
    assert re.search(expected, err), err
    assert files_under(tmp_path / "out") == []


def test_checkpoint_of_another_architecture(job: Job, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", job.data, arch="resunet", load=True,
                        checkpoint=job.best)  # fmt: skip
    out = tmp_path / "out"
    ran = run_cli("--config", config, "--result_dir", out, "--name", "ft")
    assert ran.code == 1 and "error" not in ran.out  # printed once, on stderr
    err = ran.err.strip()
    assert "\n" not in err and f"'{job.best.name}' does not fit this model" in err, err
    assert "MODEL" in err
    assert files_under(out) == []  # no checkpoint, config or picture half-written


def test_test_only_run_uses_the_given_checkpoint(job: Job, tmp_path: Path) -> None:
    pretrained = tmp_path / "pretrained.pth"
    pretrained.write_bytes(job.best.read_bytes())
    out = tmp_path / "out"
    stale = out / "eval" / "checkpoints" / "eval_1-checkpoint-best.pth"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an old, broken checkpoint of this run name")
    config = write_yaml(tmp_path / "cfg.yaml", job.data, train_enable=False, load=True,
                        checkpoint=pretrained)  # fmt: skip
    ran = run_cli("--config", config, "--result_dir", out, "--name", "eval")
    assert ran.code == 0, ran.out + ran.err
    assert "testing 1 image(s) with pretrained.pth" in ran.out
    assert (out / "eval" / "results" / "eval_1" / "test_results_metrics.csv").is_file()
    written = yaml.safe_load((out / "eval" / "config_files" / "eval.yaml").read_text())
    assert written["TRAIN"]["ENABLE"] is False and written["TEST"]["ENABLE"] is True
    assert written["PATHS"]["CHECKPOINT_FILE"] == str(pretrained)
    # as BiaPy: the model from the checkpoint, the degradation from the YAML (noise 0 here)
    clean = write_yaml(tmp_path / "clean.yaml", job.data, train_enable=False, load=True,
                       checkpoint=pretrained, noise=0.0)  # fmt: skip
    again = run_cli("--config", clean, "--result_dir", out, "--name", "clean")
    assert again.code == 0, again.err
    noisy, quiet = (_test_mean(ran.out), _test_mean(again.out))
    assert quiet["psnr"] != noisy["psnr"]


def _test_mean(out: str) -> dict[str, float]:
    line = next(ln for ln in out.splitlines() if ln.startswith("test mean: "))
    return {k: float(v) for k, v in (p.split() for p in line[len("test mean: ") :].split(", "))}


def test_empty_test_path_is_not_the_current_folder(job: Job, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "cfg.yaml", job.data, test="''")
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out")
    assert ran.code == 1 and "no test folder given: set DATA.TEST.PATH" in ran.err, ran.err
    assert files_under(tmp_path / "out") == []


def test_demo(tmp_path: Path) -> None:
    ran = run_cli("demo", "--result_dir", tmp_path, "--epochs", 1)
    assert ran.code == 0, ran.out + ran.err
    root = tmp_path / "demo_crappify"
    assert (root / "checkpoints" / "demo_crappify_1-checkpoint-best.pth").is_file()
    assert (root / "results" / "demo_crappify_1" / "test_results_metrics.csv").is_file()
    assert "epoch 1: train loss" in ran.out and "re-run headless with: napari-ssl" in ran.out
    trained = load_trained(root / "checkpoints" / "demo_crappify_1-checkpoint-best.pth")
    assert trained.epoch == 1
