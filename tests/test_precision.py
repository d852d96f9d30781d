"""Which precision runs where: bf16 inference on CPUs with AMX, fp32 CPU training, user's choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ssl.config import Config
from napari_ssl.data.images import as_image
from napari_ssl.engine.checkpoints import TrainedModel
from napari_ssl.engine.device import autocast_dtype, cpu_has_bf16_units
from napari_ssl.inference.metrics import psnr
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.models import build_model

CPU = torch.device("cpu")


def test_cpu_precision_choices() -> None:
    amx = cpu_has_bf16_units()
    assert autocast_dtype(CPU, "auto", inference=True) == (torch.bfloat16 if amx else None)
    assert autocast_dtype(CPU, "auto") is None  # training on a CPU stays fp32
    assert autocast_dtype(CPU, "bf16") == autocast_dtype(CPU, "bf16", True) == torch.bfloat16
    assert autocast_dtype(CPU, "fp16", True) is None and autocast_dtype(CPU, "off", True) is None


@pytest.mark.skipif(not cpu_has_bf16_units(), reason="this CPU has no AMX: inference stays fp32")
def test_bf16_cpu_reconstruction_is_close_to_fp32(sem_2d: np.ndarray) -> None:
    """The default U-Net, random weights: bf16 rounding stays far below any restoration error."""
    torch.manual_seed(0)
    cfg = Config()
    cfg.data.patch_size = (128, 128)
    model = build_model(cfg.model, 2, 1, (128, 128))
    image = as_image(sem_2d[:300, :300], "sem", 2)
    out = {}
    for precision in ("auto", "off"):
        cfg.train.mixed_precision = precision
        trained = TrainedModel(model, cfg, 1)
        out[precision] = reconstruct(trained, image, device="cpu")["reconstruction"]
    fp32, bf16 = out["off"], out["auto"]
    assert not np.array_equal(fp32, bf16)  # bf16 did run
    assert psnr(bf16, fp32, float(fp32.max() - fp32.min())) > 40.0


def test_a_precision_the_device_cannot_run_is_said(sem_2d: np.ndarray, tmp_path) -> None:
    """fp16 asked for on a CPU trains in fp32, and the run's notes say so."""
    from napari_ssl.engine import events as ev
    from napari_ssl.engine.trainer import train
    from napari_ssl.results import ResultsLayout
    from test_training import tiny_config

    cfg = tiny_config(epochs=1, patches_per_epoch=4)
    cfg.train.mixed_precision = "fp16"
    image = as_image(sem_2d[:64, :64].copy(), "sem", 2)
    events = train(cfg, [image], layout=ResultsLayout(tmp_path, "fp16", 1))
    started = next(e for e in events if isinstance(e, ev.Started))
    assert started.precision == "fp32"
    assert "mixed precision fp16 needs a GPU here: fp32 instead" in started.notes
    events.close()
