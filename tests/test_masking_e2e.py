"""The masking (MAE) pretext end to end, as a user runs it, in 2D and 3D (issue #3): BiaPy-YAML CLI
jobs and their MAE_checks, stop / resume / reconstruct, seeded inference, crappify in 3D beside it,
bad input refused before anything is written, and a model too big for the memory refused up front.
Tiny real MAEs (embed 32, 2 layers, decoder 32/1/2) on real crops of the sample images.
"""

from __future__ import annotations

import csv
import math
import re
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_ssl.config import Config, load_yaml, save_yaml
from napari_ssl.data.images import Image, as_image
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import load_trained, read_checkpoint
from napari_ssl.engine.tasks import HIDDEN
from napari_ssl.engine.trainer import TrainingControl, train
from napari_ssl.inference.metrics import masked_mse
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import MAE_CHECK_KINDS, ResultsLayout
from test_cli import files_under, run_cli, write_folders
from test_training import no_charts, of_type, one_thread, run_events, tiny_config  # noqa: F401
from tiny_vit import TINY_VIT

NAME = "mae_ssl"
VIEWS = ("original", "masked", "reconstruction", "reconstruction_and_visible")
MAE = {**TINY_VIT, "vit_mlp_ratio": 2.0, "mae_dec_mlp_dims": 64}  # the tiny MAE's fields
TOKEN = MAE["vit_token_size"]
PATCH = {2: 32, 3: 16}
TEST_SHAPE = {2: (70, 90), 3: (20, 40, 36)}  # not multiples of the patch


def biapy_yaml(data: Path, ndim: int, **values: object) -> str:
    """A BiaPy 3.7.1 self-supervised YAML; ``values`` override top-level template fields."""
    fields = {
        "task": "masking", "arch": "mae", "mask_type": "random", "ratio": 0.75,
        "patch": ", ".join(map(str, (PATCH[ndim],) * ndim + (1,))), "batch": 4, "epochs": 2,
        **MAE,
    }  # fmt: skip
    fields.update(values)
    model = "\n".join(f"  {k.upper()}: {fields[k]}" for k in MAE)
    return f"""\
SYSTEM:
  SEED: 0
PROBLEM:
  TYPE: SELF_SUPERVISED
  NDIM: {fields.get("problem_ndim", f"{ndim}D")}
  SELF_SUPERVISED:
    PRETEXT_TASK: {fields["task"]}
DATA:
  PATCH_SIZE: ({fields["patch"]})
  TRAIN:
    PATH: {data / "train" / "x"}
  TEST:
    PATH: {data / "test" / "x"}
MODEL:
  ARCHITECTURE: {fields["arch"]}
  FEATURE_MAPS: [4, 8, 16]
  DROPOUT_VALUES: [0, 0, 0]
{model}
  MAE_MASK_TYPE: {fields["mask_type"]}
  MAE_MASK_RATIO: {fields["ratio"]}
TRAIN:
  ENABLE: True
  OPTIMIZER: ADAMW
  LR: 1.E-3
  BATCH_SIZE: {fields["batch"]}
  EPOCHS: {fields["epochs"]}
TEST:
  ENABLE: True
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def crop_for_test(ndim: int, sem: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    return sem[300:370, 300:390] if ndim == 2 else nuclei[30:50, 100:140, 100:136]


def write_dataset(root: Path, ndim: int, sem: np.ndarray, nuclei: np.ndarray) -> Path:
    """train/x: two real crops (YX or ZYX tifs); test/x: one crop of TEST_SHAPE."""
    train = (
        {"a": sem[:96, :96], "b": sem[96:192, :96]}
        if ndim == 2
        else {"a": nuclei[:24, :64, :64], "b": nuclei[24:48, 64:128, 64:128]}
    )
    return write_folders(root, {"train": train, "test": {"t": crop_for_test(ndim, sem, nuclei)}})


@dataclass
class Job:
    ndim: int
    data: Path
    out: Path
    code: int
    log: str

    @property
    def run_dir(self) -> Path:
        return self.out / NAME / "results" / f"{NAME}_1"

    @property
    def best(self) -> Path:
        return self.out / NAME / "checkpoints" / f"{NAME}_1-checkpoint-best.pth"

    def view(self, kind: str) -> np.ndarray:
        return tifffile.imread(self.run_dir / "MAE_checks" / f"t_{kind}.tif")


def _run_job(tmp: Path, ndim: int, sem: np.ndarray, nuclei: np.ndarray, config: Path | None = None,
             **values: object) -> Job:  # fmt: skip
    data = write_dataset(tmp / "data", ndim, sem, nuclei)
    config = config or _write(tmp / "cfg.yaml", biapy_yaml(data, ndim, **values))
    ran = run_cli("--config", config, "--result_dir", tmp / "out", "--name", NAME, "--run_id", 1)
    return Job(ndim, data, tmp / "out", ran.code, ran.out + ran.err)


@pytest.fixture(scope="module")
def job2d(tmp_path_factory, sem_2d, nuclei_3d) -> Job:
    return _run_job(tmp_path_factory.mktemp("mae2d"), 2, sem_2d, nuclei_3d, mask_type="random")


@pytest.fixture(scope="module")
def job3d(tmp_path_factory, sem_2d, nuclei_3d) -> Job:
    return _run_job(tmp_path_factory.mktemp("mae3d"), 3, sem_2d, nuclei_3d, mask_type="grid")


def token_hidden(job: Job) -> np.ndarray:
    """Per pixel: True where its token was hidden (reconstruction_and_visible != original
    somewhere in the token; visible tokens hold the image's own values exactly)."""
    differs = job.view("reconstruction_and_visible") != job.view("original")
    grid = tuple(math.ceil(s / TOKEN) for s in differs.shape)
    padded = np.zeros(tuple(g * TOKEN for g in grid), dtype=bool)
    padded[tuple(slice(0, s) for s in differs.shape)] = differs
    split = [x for g in grid for x in (g, TOKEN)]
    tokens = padded.reshape(split).any(axis=tuple(range(1, 2 * len(grid), 2)))
    for axis in range(len(grid)):
        tokens = tokens.repeat(TOKEN, axis=axis)
    return tokens[tuple(slice(0, s) for s in differs.shape)]


@pytest.mark.parametrize("which", ["job2d", "job3d"])
def test_cli_job_writes_biapys_tree_and_full_size_mae_checks(
    which: str, request: pytest.FixtureRequest, sem_2d: np.ndarray, nuclei_3d: np.ndarray
) -> None:
    job: Job = request.getfixturevalue(which)
    assert job.code == 0, job.log
    assert job.log.startswith("training mae (") and "test mean: " in job.log
    assert (job.out / NAME / "config_files" / f"{NAME}.yaml").is_file()
    assert job.best.is_file() and job.best.with_name(f"{NAME}_1-checkpoint-last.pth").is_file()
    for sub in ("per_image", "MAE_checks", "charts", "aug", "train_logs"):
        assert (job.run_dir / sub).is_dir(), sub
    pair = tifffile.imread(job.run_dir / "aug" / "pair0_input.tif")  # what the network sees
    target = tifffile.imread(job.run_dir / "aug" / "pair0_target.tif")
    hidden = ~np.isclose(pair, target, atol=1e-3)  # hidden tokens: each at its patch's minimum
    assert hidden.any() and np.allclose(pair[hidden], target.min(), atol=1e-3)
    shape = TEST_SHAPE[job.ndim]
    assert sorted(p.name for p in (job.run_dir / "MAE_checks").iterdir()) == sorted(
        f"t_{v}.tif" for v in VIEWS
    )
    views = {v: job.view(v) for v in VIEWS}
    assert all(a.shape == shape and np.isfinite(a).all() for a in views.values())
    original = crop_for_test(job.ndim, sem_2d, nuclei_3d)
    assert np.array_equal(views["original"], original)  # the image's own values
    hidden = token_hidden(job)
    visible = ~hidden
    both = views["reconstruction_and_visible"]
    assert np.array_equal(both[visible], original[visible])
    assert np.array_equal(both[hidden], views["reconstruction"][hidden])
    assert np.array_equal(views["masked"][visible], original[visible])
    assert np.all(views["masked"][hidden] == original.min())  # one grey for the whole image
    # the reconstruction is in the image's units (not normalised ones)
    assert abs(views["reconstruction"].mean() - original.mean()) < original.std()
    per_image = tifffile.imread(job.run_dir / "per_image" / "t.tif")
    assert np.array_equal(per_image, views["reconstruction_and_visible"])
    with open(job.run_dir / "test_results_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["t", "mean"]
    for key in ("masked_mse", "psnr", "ssim"):
        assert np.isfinite(float(rows[0][key])) and float(rows[0][key]) > 0, key
    # the stitched pixel mask scores what the tokens hidden in the written views give
    expected = masked_mse(views["reconstruction"], original, hidden)
    assert float(rows[0]["masked_mse"]) == pytest.approx(expected, rel=1e-6)
    data_range = float(original.max() - original.min())  # PSNR of the hidden pixels only
    masked_psnr = 10 * math.log10(data_range**2 / expected)
    assert float(rows[0]["masked_psnr"]) == pytest.approx(masked_psnr, rel=1e-6)
    ckpt = torch.load(job.best, map_location="cpu", weights_only=True)
    assert ckpt["cfg"]["PROBLEM"]["SELF_SUPERVISED"]["PRETEXT_TASK"] == "masking"
    assert ckpt["cfg"]["PROBLEM"]["NDIM"] == f"{job.ndim}D"


def test_mask_types_cover_the_stitched_image_as_configured(job2d: Job, job3d: Job) -> None:
    # 3D grid: tiles hold an even number of tokens per axis, so the stitched mask is one
    # checkerboard of 8^3 tokens over the whole stack (half hidden)
    z, y, x = np.indices(TEST_SHAPE[3]) // TOKEN
    assert np.array_equal(token_hidden(job3d), (z + y + x) % 2 == 0)
    # 2D random 0.75: in each whole 32x32 tile exactly 12 of the 16 tokens are hidden
    hidden = token_hidden(job2d)
    for ty in (0, 32):
        for tx in (0, 32):
            tile = hidden[ty : ty + 32 : TOKEN, tx : tx + 32 : TOKEN]
            assert tile.sum() == 12, (ty, tx)


def test_norm_pix_loss_via_our_yaml_key(tmp_path: Path, sem_2d, nuclei_3d) -> None:
    """BiaPy 3.7.1 has no key for it (its MAE is always built with norm_pix_loss False): it is
    our ``pretext.norm_pix_loss``; BiaPy's YAML naming one is warned about, not silently used."""
    cfg = load_yaml(_write(tmp_path / "biapy.yaml", biapy_yaml(tmp_path, 2)))
    cfg.pretext.norm_pix_loss = True
    cfg.data.train_path = str(tmp_path / "data" / "train" / "x")
    cfg.data.test_path = str(tmp_path / "data" / "test" / "x")
    job = _run_job(tmp_path, 2, sem_2d, nuclei_3d, config=save_yaml(cfg, tmp_path / "ours.yaml"))
    assert job.code == 0, job.log
    trained = load_trained(job.best)
    assert trained.cfg.pretext.norm_pix_loss
    original, recon = job.view("original"), job.view("reconstruction")
    assert recon.shape == TEST_SHAPE[2] and np.isfinite(recon).all()
    assert abs(recon.mean() - original.mean()) < original.std()  # de-normalised to image units

    text = biapy_yaml(tmp_path, 2).replace(
        "  MAE_MASK_TYPE", "  MAE_NORM_PIX_LOSS: True\n  MAE_MASK_TYPE"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_yaml(_write(tmp_path / "np.yaml", text))
    assert any("MODEL.MAE_NORM_PIX_LOSS" in str(w.message) for w in caught)
    assert not cfg.pretext.norm_pix_loss


def masking_config(ndim: int = 2, **train_values: object) -> Config:
    cfg = tiny_config(ndim, **train_values)
    cfg.data.patch_size = (PATCH[ndim],) * ndim
    cfg.pretext.task = "masking"
    cfg.pretext.mask_type, cfg.pretext.mask_ratio = "random", 0.75
    cfg.model.architecture = "mae"
    for key, value in MAE.items():
        setattr(cfg.model, key, value)
    return cfg


def test_stop_resume_and_reconstruct_with_the_configured_decoder(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    layout = ResultsLayout(tmp_path, "mae", 1)
    cfg = masking_config(epochs=3, patches_per_epoch=12)
    cfg.data.percentile_clip = (1.0, 99.0)  # not invertible: visible tokens must stay raw
    images = [as_image(sem_2d[i * 96 : (i + 1) * 96, :96].copy(), f"sem{i}", 2) for i in range(2)]
    control, events = TrainingControl(), []
    for event in train(cfg, images, layout=layout, control=control):
        events.append(event)
        if isinstance(event, ev.Step) and event.step == 5:
            control.stop()  # from inside the event loop, mid-epoch 2
    stopped = events[-1]
    assert isinstance(stopped, ev.Stopped) and (stopped.epoch, stopped.step) == (2, 5)
    resumed = run_events(cfg, images, layout, resume=stopped.last_checkpoint)
    assert resumed[0].start_epoch == 1 and of_type(resumed, ev.Step)[0].step == 4
    assert [e.epoch for e in of_type(resumed, ev.Epoch)] == [2, 3]
    assert isinstance(resumed[-1], ev.Finished) and resumed[-1].epochs_run == 3
    assert all(np.isfinite(e.val_loss) for e in of_type(resumed, ev.Epoch))

    data = read_checkpoint(layout.best_checkpoint)
    kwargs = data["model_build_kwargs"]
    assert (kwargs["decoder_embed_dim"], kwargs["decoder_depth"], kwargs["decoder_num_heads"]) == (
        32, 1, 2,
    )  # fmt: skip
    bare = tmp_path / "biapy_style.pth"  # no napari_ssl_config: rebuilt from cfg + kwargs
    torch.save({k: v for k, v in data.items() if k != "napari_ssl_config"}, bare)
    image = as_image(sem_2d[500:570, 700:790].copy(), "other", 2)
    for path in (layout.best_checkpoint, bare):
        trained = load_trained(path)
        model = trained.model
        assert len(model.decoder_blocks) == 1 and model.decoder_embed.out_features == 32
        assert model.decoder_blocks[0].attn.num_heads == 2
        assert model.decoder_blocks[0].mlp.fc1.out_features == 64
        out = reconstruct(trained, image, seed=1)
        assert {*VIEWS, HIDDEN} <= set(out)
        assert all(out[v].shape == (1, 70, 90) and np.isfinite(out[v]).all() for v in VIEWS)
        visible = out[HIDDEN] < 0.5
        assert 0.2 < visible.mean() < 0.3  # mask ratio 0.75
        assert np.array_equal(out["reconstruction_and_visible"][visible], image.read()[visible])
    assert np.array_equal(out["original"], image.read())


def _hidden(trained, image: Image, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out = reconstruct(trained, image, seed=seed)
    return out, out[HIDDEN] > 0.5


def test_seeded_inference_is_deterministic(job2d: Job, job3d: Job, sem_2d, nuclei_3d) -> None:
    trained = load_trained(job2d.best)  # random mask, ratio 0.75
    image = as_image(crop_for_test(2, sem_2d, nuclei_3d).copy(), "t", 2)
    first, mask = _hidden(trained, image, 3)
    again, _ = _hidden(trained, image, 3)
    assert set(first) == set(again)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    _, other = _hidden(trained, image, 4)
    assert not np.array_equal(mask, other) and other.mean() == pytest.approx(mask.mean(), abs=0.1)
    grid = load_trained(job3d.best)  # grid: the same checkerboard whatever the seed
    stack = as_image(crop_for_test(3, sem_2d, nuclei_3d).copy(), "t", 3)
    assert np.array_equal(_hidden(grid, stack, 3)[1], _hidden(grid, stack, 4)[1])


def test_predict_command_on_a_3d_masking_checkpoint(job3d: Job, tmp_path: Path) -> None:
    ran = run_cli("predict", "--checkpoint", job3d.best, "--input", job3d.data / "test" / "x",
                  "--output", tmp_path / "pred", "--overlap", "0.5")  # fmt: skip
    assert ran.code == 0, ran.err
    assert ran.out == (  # every file written is said, and the overlap left unused
        "note: masking tiles never overlap (each token is seen once): --overlap unused\n"
        f"t.tif -> {tmp_path / 'pred' / 't.tif'} (reconstruction + visible; beside it: "
        "t_original.tif, t_masked.tif, t_reconstruction.tif, t_reconstruction_and_visible.tif)\n"
    )
    pred = tifffile.imread(tmp_path / "pred" / "t.tif")
    assert pred.shape == TEST_SHAPE[3] and np.isfinite(pred).all()
    views = {v: tifffile.imread(tmp_path / "pred" / f"t_{v}.tif") for v in MAE_CHECK_KINDS}
    assert all(v.shape == TEST_SHAPE[3] for v in views.values())
    np.testing.assert_array_equal(views["reconstruction_and_visible"], pred)


def test_crappify_in_3d_still_works(tmp_path: Path, sem_2d, nuclei_3d) -> None:
    job = _run_job(tmp_path, 3, sem_2d, nuclei_3d, task="crappify", arch="unet",
                   patch="16, 32, 32, 1", epochs=1)  # fmt: skip
    assert job.code == 0, job.log
    assert job.log.startswith("training unet (")
    out = tifffile.imread(job.run_dir / "per_image" / "t.tif")
    assert out.shape == TEST_SHAPE[3] and np.isfinite(out).all()
    assert not (job.run_dir / "MAE_checks").exists()
    with open(job.run_dir / "test_results_metrics.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert np.isfinite(float(row["psnr"])) and "masked_mse" not in row


BAD = [
    ({"task": "crappify"}, r"'MODEL\.ARCHITECTURE' can not be 'mae'.*PRETEXT_TASK' is 'crappify'"),
    ({"arch": "unet"}, r"'MODEL\.ARCHITECTURE' needs to be 'mae'.*PRETEXT_TASK' is 'masking'"),
    ({"vit_token_size": 12},
     r"MODEL\.VIT_TOKEN_SIZE.*use model\.vit_token_size in \[2, 4, 8, 16\] or a patch side in"),
    ({"vit_num_heads": 3},
     r"\(32\) must be divisible by.*MODEL\.VIT_NUM_HEADS.*use model\.vit_num_heads in \[1, 2, 4"),
    ({"mae_dec_num_heads": 5}, r"MODEL\.MAE_DEC_NUM_HEADS.*use model\.mae_dec_num_heads in \[1, 2"),
    ({"ratio": 0.0}, r"MODEL\.MAE_MASK_RATIO\) must be in \(0, 1\); got 0\.0"),
    ({"ratio": 1.5}, r"MODEL\.MAE_MASK_RATIO\) must be in \(0, 1\); got 1\.5"),
    ({"problem_ndim": "3D"},
     r"DATA\.PATCH_SIZE: with PROBLEM\.NDIM 3D BiaPy expects 4 values \(z, y, x, c\)"),
    ({"patch": "32, 16, 1"},
     r"DATA\.PATCH_SIZE\) must be square.*use e\.g\. \(16, 16\) or \(32, 32\)"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "expected"), BAD)
def test_bad_masking_input_is_refused_with_the_key_and_a_fix(
    values: dict, expected: str, tmp_path: Path
) -> None:
    config = _write(tmp_path / "cfg.yaml", biapy_yaml(tmp_path / "data", 2, **values))
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out", "--name", "bad")
    assert ran.code != 0
    err = ran.err.strip()
    assert err.startswith("napari-ssl: ") and "\n" not in err, err
    assert re.search(expected, err), err
    assert files_under(tmp_path / "out") == []


def test_a_model_too_big_for_the_memory_is_refused_before_allocating(
    job3d: Job, tmp_path: Path
) -> None:
    """ViT-B (BiaPy's default encoder and decoder) on 128^3 patches, batch 64: some 30 GiB."""
    from napari_ssl.engine.device import host_memory_available
    from napari_ssl.models.mae import estimate_mae_memory

    free = host_memory_available()
    if free is None:
        pytest.skip("the available memory of this system is unknown")
    big = {"vit_embed_dim": 768, "vit_num_layers": 12, "vit_num_heads": 12, "vit_mlp_ratio": 4.0,
           "mae_dec_hidden_size": 512, "mae_dec_num_layers": 8, "mae_dec_num_heads": 16,
           "mae_dec_mlp_dims": 2048, "vit_token_size": 16, "patch": "128, 128, 128, 1"}  # fmt: skip
    cfg = load_yaml(_write(tmp_path / "probe.yaml", biapy_yaml(job3d.data, 3, **big, batch=64)))
    need_64 = estimate_mae_memory(cfg.model, 3, (128,) * 3, 64, 1, 0.75)
    batch = 64 if need_64 > 1.5 * free else math.ceil(64 * 2 * free / need_64)  # big machines
    config = _write(tmp_path / "cfg.yaml", biapy_yaml(job3d.data, 3, **big, batch=batch))
    peak, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    ran = run_cli("--config", config, "--result_dir", tmp_path / "out", "--name", "big")
    assert ran.code == 1
    assert time.perf_counter() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 512 * 1024  # KiB: < 0.5 GiB
    err = ran.err.strip()
    assert "\n" not in err, err
    match = re.search(r"needs about ([\d.]+) GiB but ([\d.]+) GiB are free on \S+: lower the "
                      r"batch size \(TRAIN\.BATCH_SIZE\) or the patch size", err)  # fmt: skip
    assert match, err
    assert float(match[1]) > float(match[2]) > 0
    assert files_under(tmp_path / "out") == []
    # the same refusal reaches a GUI / API user as one Failed event
    cfg = load_yaml(config)
    cfg.system.device = "cpu"
    image = as_image(np.zeros((24, 64, 64), np.uint16), "z", 3)
    events = list(train(cfg, [image], layout=ResultsLayout(tmp_path, "api", 1)))
    assert len(events) == 1 and isinstance(events[0], ev.Failed)
    assert "GiB are free on cpu: lower" in events[0].message
    assert files_under(tmp_path / "api") == []
