"""Checkpoint files of a real (tiny) training: BiaPy's keys, safe loading, export, atomic saves."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_ssl.config import Config, load_yaml
from napari_ssl.data.images import as_image
from napari_ssl.engine import checkpoints as ckpt
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import CheckpointError, load_trained, load_weights
from napari_ssl.engine.trainer import train
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.models import build_model
from napari_ssl.results import ResultsLayout

BIAPY_KEYS = {"model", "model_build_kwargs", "epoch", "cfg", "normalization", "napari_ssl_version"}


def tiny_config(**model: Any) -> Config:
    cfg = Config()
    cfg.data.patch_size = (32, 32)
    cfg.model.feature_maps, cfg.model.dropout, cfg.model.z_down = (4, 8, 16), (0.0,) * 3, (2, 2)
    for key, value in model.items():
        setattr(cfg.model, key, value)
    cfg.train.patches_per_epoch, cfg.train.batch_size, cfg.train.epochs = 12, 4, 1
    cfg.system.device = "cpu"
    return cfg


def run_training(cfg: Config, image: np.ndarray, root: Path) -> list[ev.Event]:
    layout = ResultsLayout(root, "job", "1")
    return list(train(cfg, [as_image(image, "sem", 2)], layout=layout))


@pytest.fixture(scope="module")
def trained_run(sem_2d: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ckpt_run")
    events = run_training(tiny_config(), sem_2d[:128, :128], root)
    assert isinstance(events[-1], ev.Finished), events[-1]
    return {"best": Path(events[-1].best_checkpoint), "last": Path(events[-1].last_checkpoint),
            "root": root}  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- file layout


@pytest.mark.parametrize("which", ["best", "last"])
def test_files_load_weights_only_with_biapys_keys(trained_run: dict, which: str) -> None:
    path = trained_run[which]
    assert path.name == f"job_1-checkpoint-{which}.pth"
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert set(data) >= BIAPY_KEYS
    assert ("optimizer" in data) == (which == "last")
    if which == "last":
        assert isinstance(data["optimizer"], list) and len(data["optimizer"]) == 1
        assert {"state", "param_groups"} <= set(data["optimizer"][0])
    assert data["epoch"] == 1
    weights = data["model"]
    assert weights and all(torch.is_tensor(v) and v.device.type == "cpu" for v in weights.values())
    assert not [k for k in weights if k.startswith(("module.", "_orig_mod."))]
    model = data["cfg"]["MODEL"]
    assert data["cfg"]["PROBLEM"]["TYPE"] == "SELF_SUPERVISED"
    assert model["FEATURE_MAPS"] == [4, 8, 16]
    # resolved like a cfg BiaPy saves, so BiaPy's fine-tuning merge keeps consistent lengths
    assert model["YX_DOWN"] == [2, 2] and model["DROPOUT_VALUES"] == [0.0] * 3
    assert data["model_build_kwargs"]["feature_maps"] == [4, 8, 16]
    assert data["normalization"]["type"] == "zero_mean_unit_variance"
    assert isinstance(data["napari_ssl_version"], str)


def test_ddp_style_wrapper_prefix_is_not_saved() -> None:
    cfg = tiny_config()
    model = build_model(cfg.model, 2, 1, (32, 32))
    wrapped = torch.nn.DataParallel(model)  # its state dict says "module.<name>"
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    payload = ckpt.make_payload(wrapped, cfg, 1, 0)
    assert set(payload["model"]) == set(model.state_dict())


# ------------------------------------------------------------------------------- loading


def test_load_trained_reconstructs_an_image_of_another_size(trained_run, sem_2d) -> None:
    trained = load_trained(trained_run["best"])
    saved = torch.load(trained_run["best"], weights_only=True)["model"]
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not trained.model.training and trained.in_channels == 1 and trained.epoch == 1
    image = as_image(sem_2d[300:345, 500:577], "other", 2)  # 45 x 77: not a tile multiple
    out = reconstruct(trained, image, device="cpu")["reconstruction"]
    assert out.shape == (1, 45, 77) and out.dtype == np.float32 and np.isfinite(out).all()
    # outputs are in the input's units: the same order of magnitude as the uint8 image
    assert abs(float(out.mean()) - float(sem_2d[300:345, 500:577].mean())) < 128


class _Marker:
    """Unpickling this would create a directory: proof of code running on load."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.path),))


@dataclasses.dataclass
class _Settings:
    lr: float = 1e-4


@pytest.mark.parametrize("kind", ["dataclass", "code"])
def test_checkpoint_with_pickled_object_is_refused(trained_run, tmp_path, kind) -> None:
    weights = torch.load(trained_run["best"], weights_only=True)["model"]
    marker = tmp_path / "code_ran"
    extra = _Settings() if kind == "dataclass" else _Marker(marker)
    path = tmp_path / "evil.pth"
    torch.save({"model": weights, "cfg": extra}, path)
    with pytest.raises(CheckpointError) as info:
        load_trained(path)
    message = str(info.value)
    assert "evil.pth" in message and "pickled Python object" in message and "refused" in message
    assert ("_Settings" if kind == "dataclass" else "mkdir") in message  # names the object
    assert not marker.exists()


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nothing\.pth"):
        load_trained(tmp_path / "nothing.pth")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (torch.zeros(3), "not a model checkpoint: it holds a Tensor"),
        ({"model": torch.zeros(3)}, "its 'model' entry is not a state dict"),
        ({"epoch": 3, "lr": 0.1}, "not a model checkpoint: it holds a dict"),
    ],
    ids=["plain_tensor", "model_not_a_dict", "no_weights"],
)
def test_non_checkpoint_pth_is_a_clear_error(tmp_path, content, expected) -> None:
    path = tmp_path / "thing.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=expected):
        load_trained(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_damaged_files_are_clear_errors(trained_run, tmp_path, suffix) -> None:
    data = trained_run["best"].read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2] if suffix == ".pth" else b"not safetensors")
    with pytest.raises(CheckpointError, match=f"cannot read 'cut{suffix}'.* damaged"):
        load_trained(path)


def test_weights_without_config_cannot_be_rebuilt(trained_run, tmp_path) -> None:
    weights = torch.load(trained_run["best"], weights_only=True)["model"]
    torch.save(weights, tmp_path / "bare.pth")  # a bare state dict, which BiaPy also accepts
    assert set(ckpt.read_checkpoint(tmp_path / "bare.pth")["model"]) == set(weights)
    with pytest.raises(CheckpointError, match="no configuration"):
        load_trained(tmp_path / "bare.pth")


def test_biapy_conventions_are_accepted(trained_run, tmp_path) -> None:
    """BiaPy writes epoch "best"; other tools nest weights under state_dict with prefixes."""
    data = torch.load(trained_run["best"], weights_only=True)
    weights = {f"_orig_mod.{k}": v for k, v in data.pop("model").items()}
    torch.save({**data, "epoch": "best", "state_dict": weights}, tmp_path / "other.pth")
    trained = load_trained(tmp_path / "other.pth")
    assert trained.epoch == 0
    reference = load_trained(trained_run["best"]).model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in trained.model.state_dict().items())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"feature_maps": (8, 16, 32)}, r"does not fit this model \(shape differs: \S+"),
        ({"architecture": "resunet"}, r"does not fit this model \((missing|unexpected): \S+"),
    ],
    ids=["feature_maps", "architecture"],
)
def test_weights_of_another_model_do_not_fit(trained_run, change, expected) -> None:
    weights = ckpt.read_checkpoint(trained_run["best"])["model"]
    other = build_model(tiny_config(**change).model, 2, 1, (32, 32))
    with pytest.raises(CheckpointError, match=expected) as info:
        load_weights(other, weights, "'job_1-checkpoint-best.pth'")
    assert "job_1-checkpoint-best.pth" in str(info.value)
    named = [k for k in {**weights, **other.state_dict()} if k in str(info.value)]
    assert named  # the message names the mismatching keys


def test_finetuning_from_a_checkpoint_that_does_not_fit_fails_clearly(
    trained_run, sem_2d, tmp_path
) -> None:
    cfg = tiny_config(feature_maps=(8, 16, 32))
    cfg.model.load_checkpoint, cfg.model.checkpoint_file = True, str(trained_run["best"])
    events = run_training(cfg, sem_2d[:128, :128], tmp_path)
    assert isinstance(events[-1], ev.Failed)
    assert "does not fit this model" in events[-1].message


# ------------------------------------------------------------------------------- export


def test_export_writes_pth_safetensors_yaml_that_reload_identically(
    trained_run, sem_2d, tmp_path
) -> None:
    from safetensors import safe_open

    trained = load_trained(trained_run["best"])
    paths = ckpt.export_checkpoint(trained, tmp_path / "out", "exported")
    assert {k: p.name for k, p in paths.items()} == {
        "pth": "exported.pth", "safetensors": "exported.safetensors", "yaml": "exported.yaml",
    }  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths.values()
    )
    with safe_open(str(paths["safetensors"]), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(trained.model.state_dict())
    assert Config.from_dict(json.loads(meta["napari_ssl_config"])).to_dict() == (
        trained.cfg.to_dict()
    )
    assert json.loads(meta["cfg"])["MODEL"]["FEATURE_MAPS"] == [4, 8, 16]
    assert json.loads(meta["model_build_kwargs"])["feature_maps"] == [4, 8, 16]
    assert json.loads(meta["normalization"]) == trained.normalization
    assert load_yaml(paths["yaml"]).to_dict() == trained.cfg.to_dict()
    exported_pth = torch.load(paths["pth"], weights_only=True)
    assert set(exported_pth) >= BIAPY_KEYS and "optimizer" not in exported_pth

    image = as_image(sem_2d[400:470, 600:650], "tile", 2)
    outputs = [
        reconstruct(load_trained(p), image, device="cpu")["reconstruction"]
        for p in (trained_run["best"], paths["pth"], paths["safetensors"])
    ]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    np.testing.assert_array_equal(outputs[2], outputs[0])


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_exported_files_get_the_mode_of_a_plain_open(trained_run, tmp_path) -> None:
    old_umask = os.umask(0o027)
    try:
        paths = ckpt.export_checkpoint(load_trained(trained_run["best"]), tmp_path, "shared")
    finally:
        os.umask(old_umask)
    modes = {kind: stat.S_IMODE(path.stat().st_mode) for kind, path in paths.items()}
    assert modes == {"pth": 0o640, "safetensors": 0o640, "yaml": 0o640}  # 0o666 less the umask


# ------------------------------------------------------------------------------- atomic saves


def test_crash_while_saving_keeps_the_previous_file(trained_run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "job_1-checkpoint-last.pth"
    target.write_bytes(trained_run["last"].read_bytes())
    before = _digest(target)
    payload = torch.load(target, weights_only=True)
    payload["epoch"] = 2

    def crash(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="no space left"):
        ckpt.save_checkpoint(payload, target)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left
    assert _digest(target) == before
    assert torch.load(target, weights_only=True)["epoch"] == 1
    ckpt.save_checkpoint(payload, target)  # and a save that completes replaces it
    assert torch.load(target, weights_only=True)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
