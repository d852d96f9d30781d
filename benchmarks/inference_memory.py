"""Whole-image reconstruction in bounded memory: an 8192x8192 image (2D U-Net) and a 512^3 volume
(3D U-Net), both tiled from the bundled real samples. Prints device peak memory, host peak RSS
and megapixels (megavoxels) per second as JSON lines.

    python benchmarks/inference_memory.py [--device cuda] [--small]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_ssl.config import Config
from napari_ssl.data.images import Image
from napari_ssl.engine.checkpoints import TrainedModel
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.models import build_model

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "napari_ssl" / "sample_data"


def tiled(sample: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    reps = [-(-s // t) for s, t in zip(shape, sample.shape, strict=True)]
    return np.tile(sample, reps)[tuple(slice(0, s) for s in shape)]


def run(ndim: int, shape: tuple[int, ...], patch: tuple[int, ...], device: str) -> dict:
    cfg = Config()
    cfg.data.ndim, cfg.data.patch_size = ndim, patch
    model = build_model(cfg.model, ndim, 1, patch)
    trained = TrainedModel(model, cfg, in_channels=1)
    name = "sem_retic_2d.tif" if ndim == 2 else "nuclei_cells3d_3d.tif"
    data = tiled(tifffile.imread(SAMPLES / name), shape)[None]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = reconstruct(trained, Image(data, name), device=device, batch_size=8)
    seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {
        "shape": list(shape),
        "seconds": round(seconds, 2),
        "mpix_per_s": round(data.size / seconds / 1e6, 2),
        "device_peak_gib": None if peak is None else round(peak, 3),
        "host_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "output_gib": round(out["reconstruction"].nbytes / 2**30, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="1024^2 and 64x256x256 (a CPU check)")
    args = p.parse_args()
    cases = [(2, (8192, 8192), (256, 256)), (3, (512, 512, 512), (64, 128, 128))]
    if args.small:
        cases = [(2, (1024, 1024), (256, 256)), (3, (64, 256, 256), (64, 128, 128))]
    for ndim, shape, patch in cases:
        print(json.dumps({"ndim": ndim, **run(ndim, shape, patch, args.device)}), flush=True)


if __name__ == "__main__":
    main()
