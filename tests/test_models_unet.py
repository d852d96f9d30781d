"""U-Net family and model registry: shapes, config checks, and BiaPy 3.7.1 interchangeability."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from biapy_peer import run_biapy
from napari_ssl.config import ConfigError, ModelConfig
from napari_ssl.models import (
    available_architectures,
    build_kwargs,
    build_model,
    check_model_config,
    count_parameters,
)
from napari_ssl.models.resunet import ResBlock
from napari_ssl.models.unet_config import UNetSpec

SMALL = (4, 8, 16)


def _norm(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return (a - a.mean()) / (a.std() + 1e-6)


def _crops_2d(img: np.ndarray, channels: int, shape: tuple[int, int]) -> torch.Tensor:
    """Two images of ``channels`` different real crops of the SEM image each, normalised."""
    h, w = shape
    crops = [_norm(img[200 + 90 * k :][:h, 300 : 300 + w]) for k in range(2 * channels)]
    return torch.from_numpy(np.stack(crops).reshape(2, channels, h, w))


def _crop_3d(vol: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    z, y, x = shape
    return torch.from_numpy(_norm(vol[20 : 20 + z, 64 : 64 + y, 96 : 96 + x]))[None, None]


# ------------------------------------------------------------------------------- shapes, basics


@pytest.mark.parametrize("arch", ["unet", "resunet"])
@pytest.mark.parametrize(
    ("ndim", "channels", "patch"), [(2, 1, (32, 48)), (2, 3, (32, 32)), (3, 2, (8, 16, 16))]
)
def test_output_shape_matches_input(arch, ndim, channels, patch, sem_2d, nuclei_3d):
    cfg = ModelConfig(architecture=arch, feature_maps=SMALL, z_down=(1, 2))
    model = build_model(cfg, ndim, channels, patch).eval()
    if ndim == 2:
        x = _crops_2d(sem_2d, channels, patch)
    else:
        x = _crop_3d(nuclei_3d, patch).repeat(1, channels, 1, 1, 1)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_default_unet_size_and_trainable_count():
    model = build_model(ModelConfig(), 2, 1, (256, 256))
    n = count_parameters(model)
    assert n == sum(p.numel() for p in model.parameters()) > 1_000_000
    model.heads.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == n - 16 - 1


@pytest.mark.parametrize("arch", ["unet", "resunet"])
def test_channels_last_autocast_and_backward(arch, sem_2d):
    cfg = ModelConfig(architecture=arch, feature_maps=SMALL)
    model = build_model(cfg, 2, 1, (32, 32)).eval()
    x = _crops_2d(sem_2d, 1, (32, 32))
    with torch.no_grad():
        ref = model(x)
        cl_model = build_model(cfg, 2, 1, (32, 32)).eval()
        cl_model.load_state_dict(model.state_dict())
        cl_model = cl_model.to(memory_format=torch.channels_last)
        cl = cl_model(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(half).all()
    assert (half.float() - ref).abs().mean() < 0.1 * ref.abs().mean()
    model.train()
    loss = (model(x) - x).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resblock_without_norm_leaves_its_input_untouched():
    block = ResBlock(UNetSpec(norm="none", feature_maps=SMALL), 4, 8, level=1, first=False)
    x = torch.randn(1, 4, 8, 8)
    before = x.clone()
    block(x)
    assert torch.equal(x, before)


# ------------------------------------------------------------------------------- config checks


def _message(cfg: ModelConfig, ndim: int, patch: tuple[int, ...]) -> str:
    with pytest.raises(ConfigError) as info:
        check_model_config(cfg, ndim, patch)
    return str(info.value)


def test_patch_not_divisible_2d_names_key_and_nearest_sizes():
    msg = _message(ModelConfig(), 2, (100, 128))
    assert "DATA.PATCH_SIZE" in msg and "MODEL.FEATURE_MAPS" in msg
    assert "Y = 100" in msg and "multiple of 16" in msg and "96 or 112" in msg
    assert "X = " not in msg  # 128 is fine
    with pytest.raises(ConfigError):
        build_model(ModelConfig(), 2, 1, (100, 128))


def test_patch_too_small_follows_biapy_rule():
    # BiaPy also wants every level larger than 2 pixels before pooling: 16 -> 8 -> 4 -> 2 fails
    msg = _message(ModelConfig(), 2, (16, 64))
    assert "Y = 16" in msg and "at least 32" in msg
    check_model_config(ModelConfig(), 2, (32, 64))


def test_patch_z_problem_suggests_z_down():
    msg = _message(ModelConfig(feature_maps=SMALL), 3, (6, 64, 64))
    assert "Z = 6" in msg and "MODEL.Z_DOWN" in msg and "at least 8 (nearest valid: 8)" in msg
    check_model_config(ModelConfig(feature_maps=SMALL, z_down=(1, 1)), 3, (6, 64, 64))
    assert "at least 3" in _message(ModelConfig(feature_maps=SMALL, z_down=(1, 1)), 3, (2, 64, 64))


@pytest.mark.parametrize(
    ("changes", "ndim", "expected"),
    [
        ({"architecture": "vit"}, 2, "available: ['unet', 'resunet', 'mae']"),
        ({"dropout": (0.1, 0.2)}, 2, "MODEL.DROPOUT_VALUES"),
        ({"dropout": (0.5,) * 4 + (1.0,)}, 2, "[0, 1)"),
        ({"feature_maps": (8, 16)}, 2, "at least 3"),
        ({"norm": "gn"}, 2, "BiaPy 3.7.1 cannot build"),
        ({"norm": "batch"}, 2, "MODEL.NORMALIZATION"),
        ({"activation": "swish"}, 2, "MODEL.ACTIVATION"),
        ({"upsample_layer": "pixelshuffle"}, 2, "MODEL.UPSAMPLE_LAYER"),
        ({"kernel_size": 0}, 2, "MODEL.KERNEL_SIZE"),
        ({"z_down": (1, 2, 1)}, 3, "MODEL.Z_DOWN"),
        ({"z_down": (3, 3, 3, 3)}, 3, "1 or 2"),
    ],
)
def test_config_errors_name_the_key(changes, ndim, expected):
    cfg = dataclasses.replace(ModelConfig(), **changes)
    assert expected in _message(cfg, ndim, (64,) * ndim)


def test_patch_must_match_ndim():
    assert "3 positive spatial sizes" in _message(ModelConfig(), 3, (64, 64))


def test_defaults_spread_over_fewer_levels():
    cfg = ModelConfig(feature_maps=SMALL)  # dropout and z_down keep their 5/4 default values
    check_model_config(cfg, 3, (16, 32, 32))
    kwargs = build_kwargs(cfg, 3, 1, (16, 32, 32))
    assert kwargs["drop_values"] == [0.0, 0.0, 0.0] and kwargs["z_down"] == [2, 2]


def test_registry_lists_architectures_and_rejects_bad_channels():
    assert set(available_architectures()) >= {"unet", "resunet", "mae"}
    with pytest.raises(ConfigError, match="channel"):
        build_model(ModelConfig(), 2, 0, (64, 64))


def test_build_kwargs_are_plain_and_load_weights_only(tmp_path):
    kwargs = build_kwargs(ModelConfig(architecture="resunet"), 2, 2, (64, 64))
    torch.save(kwargs, tmp_path / "k.pt")
    assert torch.load(tmp_path / "k.pt", weights_only=True) == kwargs
    assert kwargs["image_shape"] == (64, 64, 2) and kwargs["output_channels"] == [2]
    json.dumps(kwargs)


# ----------------------------------------------------------------------- BiaPy 3.7.1 cross-checks

_BIAPY_SCRIPT = r"""
import contextlib, io, json, sys
from pathlib import Path
import torch
from biapy.config.config import Config
from biapy.engine.check_configuration import check_configuration
from biapy.models import build_model
from biapy.models.resunet import ResUNet
from biapy.models.unet import U_Net

work = Path(sys.argv[1])
for case in json.loads((work / "cases.json").read_text()):
    d = work / case["name"]
    c = case["channels"]
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # BiaPy prints summaries
        if case["mode"] == "cfg":
            cfg = Config(str(d / "job"), "job").get_cfg_defaults()
            cfg.PROBLEM.TYPE = "SELF_SUPERVISED"
            cfg.TRAIN.ENABLE = True
            cfg.PROBLEM.NDIM = f"{case['ndim']}D"
            cfg.DATA.PATCH_SIZE = tuple(case["patch"]) + (c,)
            for key, value in case["model"].items():
                setattr(cfg.MODEL, key, value)
            check_configuration(cfg, "job", check_data_paths=False)
            out = build_model(cfg, [c], ["pred0"], ["linear"] * c, torch.device("cpu"))
            model, args = out[0], out[5]
        else:  # BiaPy's config rejects some settings its classes build: use our kwargs
            args = torch.load(d / "kwargs.pt", weights_only=True)
            model = {"unet": U_Net, "resunet": ResUNet}[case["model"]["ARCHITECTURE"]](**args)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    x = torch.load(d / "x.pt", weights_only=True)
    with torch.no_grad():
        own_out = model(x)
        own_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(torch.load(d / "ours.pt", weights_only=True), strict=True)
        ours_out = model(x)
    torch.save({"state": own_state, "out": own_out, "ours_out": ours_out, "args": args},
               d / "biapy.pt")
print("done")
"""

_BIAPY_CASES: dict[str, dict[str, Any]] = {
    "unet2d_default": {"arch": "unet", "ndim": 2, "channels": 1, "patch": (64, 64), "cfg": {}},
    "unet2d_rgb": {"arch": "unet", "ndim": 2, "channels": 3, "patch": (32, 48),
                   "cfg": {"feature_maps": SMALL}},
    "unet2d_variant": {"arch": "unet", "ndim": 2, "channels": 1, "patch": (32, 32),
                       "cfg": {"feature_maps": SMALL, "norm": "bn", "activation": "relu",
                               "upsample_layer": "upsampling", "dropout": (0.1, 0.1, 0.2)}},
    "unet3d": {"arch": "unet", "ndim": 3, "channels": 1, "patch": (8, 32, 32),
               "cfg": {"feature_maps": SMALL, "z_down": (1, 2)}},
    "resunet2d": {"arch": "resunet", "ndim": 2, "channels": 1, "patch": (32, 32),
                  "cfg": {"feature_maps": SMALL}},
    "resunet3d": {"arch": "resunet", "ndim": 3, "channels": 1, "patch": (16, 32, 32),
                  "cfg": {"feature_maps": SMALL}},
    # norm "none" is built by BiaPy's classes but refused by its config check
    "resunet2d_no_norm": {"arch": "resunet", "ndim": 2, "channels": 2, "patch": (32, 32),
                          "cfg": {"feature_maps": SMALL, "norm": "none",
                                  "upsample_layer": "upsampling"}, "mode": "kwargs"},
}  # fmt: skip


def _biapy_model_keys(cfg: ModelConfig, ndim: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """BiaPy MODEL.* values for ``cfg`` (lengths already resolved, as our kwargs hold them)."""
    keys = {
        "ARCHITECTURE": cfg.architecture,
        "FEATURE_MAPS": list(cfg.feature_maps),
        "DROPOUT_VALUES": kwargs["drop_values"],
        "NORMALIZATION": cfg.norm,
        "ACTIVATION": cfg.activation,
        "UPSAMPLE_LAYER": cfg.upsample_layer,
        "KERNEL_SIZE": cfg.kernel_size,
    }
    if ndim == 3:
        keys["Z_DOWN"] = kwargs["z_down"]
    return keys


@pytest.fixture(scope="module")
def biapy_runs(biapy_python, tmp_path_factory, sem_2d, nuclei_3d) -> dict[str, dict[str, Any]]:
    """Build every case here and in BiaPy (one subprocess); exchange weights and outputs."""
    work = tmp_path_factory.mktemp("biapy_unet")
    requests, runs = [], {}
    for name, case in _BIAPY_CASES.items():
        cfg = ModelConfig(architecture=case["arch"], **case["cfg"])
        ndim, c, patch = case["ndim"], case["channels"], case["patch"]
        torch.manual_seed(2)
        model = build_model(cfg, ndim, c, patch).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = _crops_2d(sem_2d, c, patch) if ndim == 2 else _crop_3d(nuclei_3d, patch)
        d = work / name
        d.mkdir()
        torch.save(x, d / "x.pt")
        torch.save(model.state_dict(), d / "ours.pt")
        kwargs = build_kwargs(cfg, ndim, c, patch)
        torch.save(kwargs, d / "kwargs.pt")
        requests.append({"name": name, "mode": case.get("mode", "cfg"), "ndim": ndim,
                         "channels": c, "patch": list(patch),
                         "model": _biapy_model_keys(cfg, ndim, kwargs)})  # fmt: skip
        runs[name] = {"cfg": cfg, "model": model, "x": x, "dir": d}
    (work / "cases.json").write_text(json.dumps(requests))
    assert "done" in run_biapy(biapy_python, _BIAPY_SCRIPT, str(work), timeout=600)
    for run in runs.values():
        run["biapy"] = torch.load(Path(run["dir"]) / "biapy.pt", weights_only=True)
    return runs


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.biapy
@pytest.mark.parametrize("name", list(_BIAPY_CASES))
def test_same_state_dict_layout_as_biapy(biapy_runs, name):
    run = biapy_runs[name]
    ours = {k: tuple(v.shape) for k, v in run["model"].state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in run["biapy"]["state"].items()}
    assert ours == theirs


@pytest.mark.biapy
@pytest.mark.parametrize("name", list(_BIAPY_CASES))
def test_our_weights_in_biapy_give_our_output(biapy_runs, name):
    run = biapy_runs[name]
    with torch.no_grad():
        ours = run["model"](run["x"])
    assert _max_diff(run["biapy"]["ours_out"], ours) < 1e-4


@pytest.mark.biapy
@pytest.mark.parametrize("name", list(_BIAPY_CASES))
def test_biapy_weights_in_ours_give_biapy_output(biapy_runs, name):
    run = biapy_runs[name]
    case = _BIAPY_CASES[name]
    model = build_model(run["cfg"], case["ndim"], case["channels"], case["patch"]).eval()
    model.load_state_dict(run["biapy"]["state"], strict=True)
    with torch.no_grad():
        ours = model(run["x"])
    assert _max_diff(ours, run["biapy"]["out"]) < 1e-4


@pytest.mark.biapy
@pytest.mark.parametrize("name", [n for n, c in _BIAPY_CASES.items() if c.get("mode") != "kwargs"])
def test_build_kwargs_equal_biapy_model_build_kwargs(biapy_runs, name):
    run = biapy_runs[name]
    case = _BIAPY_CASES[name]
    ours = build_kwargs(run["cfg"], case["ndim"], case["channels"], case["patch"])
    assert ours == run["biapy"]["args"]
    assert list(ours) == list(run["biapy"]["args"])
