"""Training throughput of the napari-ssl engine vs a bare PyTorch loop over the same model.

    python benchmarks/train_throughput.py --task crappify --data DATASET --batch 6 --patch 256
    python benchmarks/train_throughput.py --task masking --preset base --batch 64 --lr-rule sqrt

The engine run goes through ``napari_ssl.engine.trainer.train`` (sampling, augmentation and
degradation or masking on the device, AMP, validation and checkpoints included) on the images of
DATASET/train/x; the steady-state rate is the median of the Step events after the first epoch.
The bare loop times forward/backward/step of the same model on random data already on the device
(the ceiling). Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_ssl.config import Config
from napari_ssl.data.folders import load_folder, resolve_dataset
from napari_ssl.engine import events as ev
from napari_ssl.engine.trainer import train
from napari_ssl.models import build_model
from napari_ssl.results import ResultsLayout


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    cfg.data.patch_size = (args.patch, args.patch)
    cfg.train.batch_size = args.batch
    cfg.train.epochs = args.epochs
    cfg.train.patience = 0
    cfg.train.patches_per_epoch = args.patches_per_epoch
    cfg.train.lr = lr_for_batch(args.lr, args.batch, args.lr_rule)
    cfg.train.compile = args.compile
    cfg.train.log_every = 10
    cfg.system.device = args.device
    if args.task == "masking":
        cfg.pretext.task, cfg.model.architecture = "masking", "mae"
        cfg.model.vit_preset = args.preset
    return cfg


def lr_for_batch(lr: float, batch: int, rule: str, reference: int = 6) -> float:
    """Learning rate for ``batch`` from the one tuned at ``reference`` (BiaPy's template)."""
    factor = batch / reference
    return lr * {"none": 1.0, "sqrt": factor**0.5, "linear": factor}[rule]


def engine_rate(cfg: Config, data: Path) -> dict:
    images = load_folder(resolve_dataset(data, "train"), 2)
    rates, epochs = [], []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for event in train(cfg, images, layout=ResultsLayout(tmp, "bench", "1")):
            if isinstance(event, ev.Step) and event.epoch > 1:
                rates.append(event.patches_per_s)
            elif isinstance(event, ev.Epoch):
                epochs.append(event)
            elif isinstance(event, ev.Failed):
                raise SystemExit(event.message)
    last = epochs[-1]
    return {
        "steady_patches_per_s": statistics.median(rates) if rates else last.patches_per_s,
        "epoch_patches_per_s": last.patches_per_s,
        "val_psnr": last.metrics.get("val_psnr"),
        "wall_s": time.perf_counter() - t0,
    }


def bare_rate(cfg: Config, steps: int = 40, warmup: int = 10) -> dict:
    device = torch.device(cfg.system.device if cfg.system.device != "auto" else "cuda")
    model = build_model(cfg.model, 2, 1, cfg.data.patch_size).to(device)
    cnn = cfg.model.architecture != "mae"
    if cnn and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, fused=True)
    fwd = torch.compile(model) if cfg.train.compile else model
    x = torch.randn(cfg.train.batch_size, 1, *cfg.data.patch_size, device=device)
    if cnn and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    mask, n_hidden = None, None
    if not cnn:
        from napari_ssl.pretext.masking import hidden_count, make_mask, masked_loss, token_grid

        grid = token_grid(cfg.data.patch_size, cfg.model.vit_token_size)
        mask = make_mask(x.shape[0], grid, "grid", 0.5, None, device)  # on the device (engine too)
        n_hidden = hidden_count(grid, "grid", 0.5)  # given: no count read back from the GPU
    amp = torch.bfloat16 if device.type == "cuda" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            if cnn:
                loss = torch.nn.functional.l1_loss(fwd(x).float(), x)
            else:
                loss = masked_loss(fwd, x, mask, False, n_hidden)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"bare_patches_per_s": steps * cfg.train.batch_size / (time.perf_counter() - t)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", choices=("crappify", "masking"), default="crappify")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patches-per-epoch", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-rule", choices=("none", "sqrt", "linear"), default="sqrt")
    p.add_argument("--preset", default="base")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--skip-bare", action="store_true")
    args = p.parse_args(argv)
    cfg = make_config(args)
    row = {"task": args.task, "batch": args.batch, "lr": cfg.train.lr, "compile": args.compile}
    row.update(engine_rate(cfg, args.data))
    if not args.skip_bare:
        row.update(bare_rate(cfg))
        row["engine_over_bare"] = row["steady_patches_per_s"] / row["bare_patches_per_s"]
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
