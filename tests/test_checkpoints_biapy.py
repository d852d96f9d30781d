"""Our checkpoint files in BiaPy 3.7.1, and BiaPy's checkpoint files in napari-ssl.

One BiaPy subprocess (its own interpreter and torch) does, per model (unet; mae when ready):
(a) BiaPy's self-supervised workflow with ``MODEL.LOAD_CHECKPOINT`` on our trained ``.pth``: it
    reads the file, merges the checkpoint's ``cfg`` into its defaults (``ITEMS_TO_LOAD_FROM_
    CHECKPOINT``), re-checks the config, builds the model and loads the weights strictly, all with
    BiaPy's own functions; then predicts a real, normalised SEM tile;
(b) a model built by the same workflow from a BiaPy self-supervised config, stepped once by an
    optimizer and saved with BiaPy's ``save_model``; it predicts the same tile.
Tensors are exchanged as ``.npy`` files.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch

from biapy_peer import run_biapy
from napari_ssl.config import Config
from napari_ssl.data.images import Image, as_image
from napari_ssl.data.normalization import compute_stats
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import load_trained
from napari_ssl.engine.trainer import train
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import ResultsLayout

pytestmark = pytest.mark.biapy


def _mae_ready() -> str:
    """Empty when the masking modules import, else why not."""
    try:
        importlib.import_module("napari_ssl.models.mae")
        importlib.import_module("napari_ssl.pretext.masking")
    except Exception as err:
        return f"napari_ssl.models.mae / pretext.masking not importable yet: {err!r}"
    return ""


MAE_NOT_READY = _mae_ready()
SKIP_MAE = pytest.mark.skipif(bool(MAE_NOT_READY), reason=MAE_NOT_READY or "mae is ready")
MODELS = ["unet", pytest.param("mae", marks=SKIP_MAE)]
TILE = {"unet": (slice(512, 576), slice(700, 764)), "mae": (slice(600, 632), slice(900, 932))}


def _our_config(name: str) -> Config:
    """BiaPy-valid settings that train in seconds (BiaPy's mae decoder is always 512/8/16)."""
    cfg = Config()
    cfg.train.patches_per_epoch, cfg.train.batch_size, cfg.train.epochs = 8, 4, 1
    cfg.system.device = "cpu"
    m = cfg.model
    if name == "unet":
        cfg.data.patch_size = (64, 64)
        m.feature_maps, m.dropout, m.z_down = (16, 32, 64), (0.0,) * 3, (2, 2)
    else:
        cfg.pretext.task, cfg.pretext.mask_type, cfg.data.patch_size = "masking", "random", (32, 32)
        m.architecture, m.dropout, m.vit_token_size = "mae", (0.0,), 8
        m.vit_embed_dim, m.vit_num_layers, m.vit_num_heads = 32, 2, 2
        m.vit_mlp_ratio, m.mae_dec_mlp_dims = 1.0, 512  # BiaPy: decoder MLP = 512 * mlp_ratio
    return cfg


# BiaPy MODEL settings of the models BiaPy builds and saves itself, in (b)
BIAPY_MODELS = {
    "unet": {"FEATURE_MAPS": [16, 32, 64], "NORMALIZATION": "bn"},  # bn: running stats too
    "mae": {"ARCHITECTURE": "mae", "VIT_TOKEN_SIZE": 8, "VIT_EMBED_DIM": 32, "VIT_NUM_LAYERS": 2,
            "VIT_NUM_HEADS": 2, "VIT_MLP_RATIO": 1.0, "DROPOUT_VALUES": [0.0],
            "MAE_MASK_TYPE": "random"},
}  # fmt: skip

_BIAPY_SCRIPT = r"""
import argparse, contextlib, io, json, sys
from pathlib import Path
import numpy as np, torch

work = Path(sys.argv[1])
cases = json.loads((work / "cases.json").read_text())
report = {"torch": torch.__version__}
for case in cases:  # a plain safe load, before BiaPy registers any extra safe globals
    data = torch.load(case["ours"], map_location="cpu", weights_only=True)
    report[case["name"]] = {"keys": sorted(data)}

import biapy
from biapy.config.config import Config
from biapy.engine.check_configuration import check_configuration
from biapy.engine.self_supervised import Self_supervised_Workflow
from biapy.utils.misc import save_model

SYSTEM = {"cpu_budget": 1, "cpu_per_rank": 1, "main_threads": 1, "num_workers_hint": 0}


def workflow(case, job, model_keys, checkpoint=""):
    cfg = Config(str(work / job), job).get_cfg_defaults()
    cfg.PROBLEM.TYPE = "SELF_SUPERVISED"
    cfg.PROBLEM.NDIM = "2D"
    cfg.PROBLEM.SELF_SUPERVISED.PRETEXT_TASK = case["pretext"]
    cfg.DATA.PATCH_SIZE = tuple(case["patch"]) + (1,)
    # loading a checkpoint: a test run; building a new model: a training run (same data)
    cfg.TRAIN.ENABLE, cfg.TEST.ENABLE = not checkpoint, bool(checkpoint)
    for part in (cfg.DATA.TRAIN, cfg.DATA.TEST):
        part.PATH, part.SSL_SOURCE_DIR = str(work / "images"), str(work / job / "ssl_source")
    for key, value in model_keys.items():
        setattr(cfg.MODEL, key, value)
    if checkpoint:
        cfg.MODEL.LOAD_CHECKPOINT = True
        cfg.PATHS.CHECKPOINT_FILE = checkpoint
    check_configuration(cfg, job, check_data_paths=False)  # as BiaPy's entry point does first
    args = argparse.Namespace(distributed=False, gpu=None)
    wf = Self_supervised_Workflow(cfg, job + "_1", torch.device("cpu"), SYSTEM, args)
    wf.prepare_model()  # builds the model; with LOAD_CHECKPOINT, load_model_checkpoint (strict)
    return wf, wf.model_without_ddp.eval()


def fixed_masking(mask):
    # BiaPy's masking_func contract with our mask: visible tokens first, shuffled
    def masking(tokens):
        n, length, dim = tokens.shape
        order = torch.argsort(torch.rand(n, length) + 2.0 * mask.float(), dim=1)
        keep = order[:, : length - int(mask[0].sum())]
        kept = torch.gather(tokens, 1, keep.unsqueeze(-1).repeat(1, 1, dim))
        return kept, mask.float(), torch.argsort(order, dim=1)
    return masking


@torch.no_grad()
def predict(model, case):
    x = torch.from_numpy(np.load(case["x"]))
    if case["name"] != "mae":
        return model(x).numpy()
    model.masking_func = fixed_masking(torch.from_numpy(np.load(case["mask"])))
    latent, _, restore = model.forward_encoder(x)
    return model.forward_decoder(latent, restore).numpy()


for case in cases:
    name, out = case["name"], report[case["name"]]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        wf, model = workflow(case, "ours_" + name, {}, case["ours"])
    out["log"] = log.getvalue()
    out["checkpoint_path"] = str(wf.checkpoint_path)
    out["merged"] = {k: wf.cfg.MODEL[k] for k in ("ARCHITECTURE", "FEATURE_MAPS", "VIT_EMBED_DIM")}
    out["merged"]["NORMALIZATION_TYPE"] = wf.cfg.DATA.NORMALIZATION.TYPE
    out["build_kwargs"] = wf.model_build_kwargs
    np.save(work / f"{name}_biapy_on_ours.npy", predict(model, case))

    with contextlib.redirect_stdout(io.StringIO()):
        wf, model = workflow(case, "biapy_" + name, case["biapy_model"])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    batch = torch.randn(2, 1, *case["patch"])
    loss = model(batch)["loss"] if name == "mae" else (model(batch) - batch).abs().mean()
    loss.backward()
    opt.step()
    model.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        folder = Path(wf.cfg.PATHS.CHECKPOINT)  # BiaPy's own checkpoints/ folder
        folder.mkdir(parents=True, exist_ok=True)
        path = save_model(folder, wf.cfg, biapy.__version__, wf.job_identifier, "best", model,
                          [opt], wf.model_build_kwargs)
    out["biapy_checkpoint"] = str(path)
    np.save(work / f"{name}_biapy_own.npy", predict(model, case))
print(json.dumps(report, default=str))
"""


def _train(cfg: Config, image: np.ndarray, root: Path) -> Path:
    events = list(train(cfg, [as_image(image, "sem", 2)], layout=ResultsLayout(root, "job", "1")))
    assert isinstance(events[-1], ev.Finished), events[-1]
    return Path(events[-1].best_checkpoint)


def _normalised_tile(sem_2d: np.ndarray, name: str) -> np.ndarray:
    """A real SEM tile (1, 1, *patch), normalised as our reconstruction normalises it."""
    raw = sem_2d[TILE[name]][None]
    return compute_stats(Image(raw, "tile"), "zero_mean_unit_variance").normalize(raw)[None]


@pytest.fixture(scope="module")
def exchange(biapy_python: Path, sem_2d: np.ndarray, tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("ckpt_biapy")
    (work / "images").mkdir()
    tifffile.imwrite(work / "images" / "sem.tif", sem_2d[:96, :96])  # BiaPy's data folder
    cases = []
    for name in ["unet"] if MAE_NOT_READY else ["unet", "mae"]:
        cfg = _our_config(name)
        ours = _train(cfg, sem_2d[:192, :192], work / f"train_{name}")
        case = {"name": name, "ours": str(ours), "patch": list(cfg.data.patch_size),
                "pretext": cfg.pretext.task, "biapy_model": BIAPY_MODELS[name],
                "x": str(work / f"{name}_x.npy")}  # fmt: skip
        np.save(case["x"], _normalised_tile(sem_2d, name))
        if name == "mae":
            from napari_ssl.pretext.masking import make_mask

            mask = make_mask(1, (4, 4), "random", 0.5, torch.Generator().manual_seed(5))
            case["mask"] = str(work / "mae_mask.npy")
            np.save(case["mask"], mask.numpy())
        cases.append(case)
    (work / "cases.json").write_text(json.dumps(cases))
    out = run_biapy(biapy_python, _BIAPY_SCRIPT, str(work), timeout=300)
    report = json.loads(out.strip().splitlines()[-1])
    return {"work": work, "report": report, "cases": {c["name"]: c for c in cases}}


def _our_prediction(model: torch.nn.Module, case: dict[str, Any]) -> np.ndarray:
    x = torch.from_numpy(np.load(case["x"]))
    with torch.no_grad():
        if case["name"] == "mae":
            return model(x, torch.from_numpy(np.load(case["mask"]))).numpy()
        return model(x).numpy()


# ------------------------------------------------------------------ (a) ours, read by BiaPy


@pytest.mark.parametrize("name", MODELS)
def test_biapy_loads_our_file_with_its_own_checkpoint_code(exchange, name) -> None:
    case, out = exchange["cases"][name], exchange["report"][name]
    assert {"model", "model_build_kwargs", "epoch", "cfg", "normalization"} <= set(out["keys"])
    assert out["checkpoint_path"] == case["ours"]
    assert "Model weights loaded!" in out["log"]
    assert "weights_only=False" not in out["log"]  # BiaPy never fell back to full unpickling
    ours = load_trained(case["ours"])
    merged = out["merged"]
    assert merged["ARCHITECTURE"] == name
    assert merged["NORMALIZATION_TYPE"] == ours.cfg.data.normalization
    if name == "unet":
        assert merged["FEATURE_MAPS"] == [16, 32, 64]  # BiaPy's default has five levels
    else:
        assert merged["VIT_EMBED_DIM"] == 32
    stored = torch.load(case["ours"], weights_only=True)["model_build_kwargs"]
    built = out["build_kwargs"]
    shared = [k for k in stored if k not in ("device", "mask_ratio")]
    assert {k: json.loads(json.dumps(built[k])) for k in shared} == {
        k: json.loads(json.dumps(stored[k])) for k in shared
    }


@pytest.mark.parametrize("name", MODELS)
def test_biapy_model_from_our_file_predicts_like_ours(exchange, name) -> None:
    case = exchange["cases"][name]
    ours = _our_prediction(load_trained(case["ours"]).model, case)
    theirs = np.load(exchange["work"] / f"{name}_biapy_on_ours.npy")
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ (b) BiaPy's, read by us


@pytest.mark.parametrize("name", MODELS)
def test_we_load_biapys_save_model_file(exchange, name) -> None:
    case = exchange["cases"][name]
    path = Path(exchange["report"][name]["biapy_checkpoint"])
    assert path.name == f"biapy_{name}_1-checkpoint-best.pth"
    data = torch.load(path, weights_only=True)
    assert "napari_ssl_config" not in data and data["epoch"] == "best"
    trained = load_trained(path)  # our Config rebuilt from BiaPy's cfg
    assert trained.cfg.model.architecture == name and trained.epoch == 0
    if name == "unet":
        assert trained.cfg.model.norm == "bn" and trained.cfg.model.feature_maps == (16, 32, 64)
    theirs = np.load(exchange["work"] / f"{name}_biapy_own.npy")
    np.testing.assert_allclose(_our_prediction(trained.model, case), theirs, atol=1e-4, rtol=1e-4)


def test_reconstruct_with_biapys_unet_matches_biapy_on_a_tile(exchange, sem_2d) -> None:
    trained = load_trained(exchange["report"]["unet"]["biapy_checkpoint"])
    trained.cfg.train.mixed_precision = "off"  # fp32 like BiaPy: equal to 1e-3 (bf16: ~0.3)
    raw = sem_2d[TILE["unet"]]
    image = as_image(raw, "tile", 2)
    out = reconstruct(trained, image, overlap=0.0, padding=(0, 0), device="cpu")["reconstruction"]
    stats = compute_stats(Image(raw[None], "tile"), "zero_mean_unit_variance")
    expected = stats.denormalize(np.load(exchange["work"] / "unet_biapy_own.npy")[0])
    np.testing.assert_allclose(out, expected, atol=1e-3, rtol=1e-4)
    big = reconstruct(trained, as_image(sem_2d[100:230, 300:470], "crop", 2), device="cpu")
    assert big["reconstruction"].shape == (1, 130, 170)
    assert np.isfinite(big["reconstruction"]).all()


@SKIP_MAE
def test_reconstruct_with_biapys_mae_runs_on_a_real_crop(exchange, sem_2d) -> None:
    trained = load_trained(exchange["report"]["mae"]["biapy_checkpoint"])
    raw = sem_2d[200:264, 400:496]
    out = reconstruct(trained, as_image(raw, "crop", 2), device="cpu")
    assert {"masked", "reconstruction", "reconstruction_and_visible", "original"} <= set(out)
    for key in ("masked", "reconstruction", "reconstruction_and_visible"):
        assert out[key].shape == (1, 64, 96) and np.isfinite(out[key]).all(), key
    mixed = out["reconstruction_and_visible"]
    visible = np.isclose(mixed, raw[None], atol=1e-3)  # normalised and back
    assert np.all(visible | (mixed == out["reconstruction"]))  # else the prediction
    assert 0.3 < visible.mean() < 0.7  # BiaPy's cfg: MAE_MASK_RATIO 0.5
