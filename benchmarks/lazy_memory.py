"""Peak memory of training from data larger than what the process may hold (issue #5).

    python benchmarks/lazy_memory.py [--side 40000] [--files 36] [--file-side 6000]
                                     [--num-workers 0 2] [--feature-maps 16 32 64 128 256]
                                     [--patches 64] [--latency-ms 0] [--keep]

Builds, chunk by chunk from tiles of the bundled real SEM sample, (1) a 2D zarr v3 array
(``side`` x ``side`` uint16, 512 x 512 chunks, uncompressed: 3.2 GB at 40000) and (2) a folder of
``files`` memory-mapped ``.npy`` images (uint16, ``file-side`` squared each); nothing is ever
materialised whole. Each case then trains a U-Net (``--feature-maps``; a smaller one makes reading
weigh more) with the real trainer in a fresh subprocess (patch 128, batch 4, ``--patches`` per
epoch, 2 epochs, val_fraction 0.1, one torch thread), once per ``--num-workers`` value
(SYSTEM.NUM_WORKERS: the threads that read patches ahead), while a sampler records the
process's peak RSS from ``/proc/self/status``: ``VmRSS``
(all resident pages), ``RssAnon`` (the process's own memory) and ``RssFile`` (mapped file pages,
which for memory-mapped ``.npy`` files are page cache the kernel can drop at any time). The cases:
the zarr array as it is (read through a store that waits ``--latency-ms`` per chunk read when
given, like network storage), the same wrapped by ``dask.array.from_zarr``, and the ``.npy``
folder through ``load_folder``. Statistics and the validation split are also timed; ``train s``
is the whole ``train()`` call, ``patches/s`` the training rate of the last epoch, and ``sampler
alone`` the rate at which 32 batches are read without a model (the most a fast GPU could be fed).
Prints a markdown table and one JSON line; the big files are removed at the end.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "napari_ssl" / "sample_data"
SEM = SAMPLES / "sem_retic_2d.tif"
CHUNK = 512
GIB = 2**30


# ----- data, written band by band -------------------------------------------------------------
def band(sem: np.ndarray, y0: int, height: int, width: int) -> np.ndarray:
    """Rows ``y0 : y0 + height`` of an endless mosaic of the SEM sample (uint16, varied tiles)."""
    th, tw = sem.shape
    rows = (np.arange(y0, y0 + height) % th)[:, None]
    cols = np.arange(width) % tw
    tile_id = ((np.arange(y0, y0 + height) // th)[:, None] * 7 + np.arange(width) // tw) % 13
    return (sem[rows, cols].astype(np.uint16) * 200 + tile_id * 900).astype(np.uint16)


def write_zarr(path: Path, side: int, sem: np.ndarray) -> Any:
    import zarr

    arr = zarr.create_array(str(path), shape=(side, side), dtype="uint16",
                            chunks=(CHUNK, CHUNK), compressors=None)  # fmt: skip
    for y0 in range(0, side, CHUNK):
        h = min(CHUNK, side - y0)
        arr[y0 : y0 + h] = band(sem, y0, h, side)
    return arr


def write_npy_folder(folder: Path, files: int, side: int, sem: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for k in range(files):
        out = np.lib.format.open_memmap(folder / f"img{k:03d}.npy", "w+", np.uint16, (side, side))
        for y0 in range(0, side, CHUNK):
            h = min(CHUNK, side - y0)
            out[y0 : y0 + h] = band(sem, y0 + k * 37, h, side)
        out.flush()
        del out


# ----- one case, in a fresh process -----------------------------------------------------------
class RssSampler(threading.Thread):
    """Peak VmRSS / RssAnon / RssFile of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.stopped = threading.Event()

    @staticmethod
    def now() -> dict[str, int]:
        values = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
        return values

    def run(self) -> None:
        while not self.stopped.is_set():
            for key, value in self.now().items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.02)


def slow_store(path: Path, latency: float) -> Any:
    """The zarr folder as a store that answers each read after ``latency`` s (network storage)."""
    import asyncio

    from zarr.storage import LocalStore, WrapperStore

    class SlowStore(WrapperStore):
        def _with_store(self, store: Any) -> SlowStore:
            return type(self)(store)

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            await asyncio.sleep(latency)
            return await self._store.get(key, prototype, byte_range)

    return SlowStore(LocalStore(path, read_only=True))


def load_case(case: str, path: Path, latency: float) -> list[Any]:
    from napari_ssl.data.folders import load_folder
    from napari_ssl.data.images import as_image

    if case == "npy-folder":
        return load_folder(path, 2)
    import zarr

    arr = zarr.open_array(slow_store(path, latency) if latency else str(path), mode="r")
    if case == "dask-from-zarr":
        import dask.array as da

        arr = da.from_zarr(arr)
    return [as_image(arr, "big", 2)]


def read_rate(images: list[Any], cfg: Any, batches: int = 32) -> float:
    """Patches/s the sampler delivers without a model (what a fast GPU could be fed)."""
    import torch

    from napari_ssl.data.sampling import PatchSampler, split_regions

    regions, _ = split_regions(images, cfg.data.val_fraction, cfg.data.patch_size)
    patches = PatchSampler(images, regions, cfg.data.patch_size, torch.device("cpu"), seed=1)
    with patches.prefetching(cfg.system.num_workers):
        t = time.perf_counter()
        for _ in range(batches):
            patches.sample(cfg.train.batch_size)
        return batches * cfg.train.batch_size / (time.perf_counter() - t)


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from napari_ssl.config import Config
    from napari_ssl.data.normalization import compute_stats
    from napari_ssl.data.sampling import split_regions, validation_patches
    from napari_ssl.engine import events as ev
    from napari_ssl.engine.trainer import train
    from napari_ssl.results import ResultsLayout

    torch.set_num_threads(1)
    sampler = RssSampler()
    base = sampler.now()
    sampler.start()
    images = load_case(args.case, args.path, args.latency_ms / 1000)
    data_bytes = sum(int(np.prod(img.array.shape)) * img.dtype.itemsize for img in images)
    cfg = Config()
    cfg.data.patch_size, cfg.data.val_fraction = (128, 128), 0.1
    cfg.train.batch_size, cfg.train.epochs, cfg.train.patience = 4, args.epochs, 0
    cfg.train.patches_per_epoch, cfg.system.device = args.patches, "cpu"
    cfg.system.num_workers = args.workers
    levels = len(args.feature_maps)
    cfg.model.feature_maps, cfg.model.dropout = tuple(args.feature_maps), (0.0,) * levels
    cfg.model.z_down = (2,) * (levels - 1)
    timings = {}
    t = time.perf_counter()
    for img in images:
        compute_stats(img, cfg.data.normalization)
    timings["stats_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _, val = split_regions(images, cfg.data.val_fraction, cfg.data.patch_size)
    validation_patches(images, val, cfg.data.patch_size)
    timings["val_patches_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lazy-mem-run-") as tmp:
        events = list(train(cfg, images, layout=ResultsLayout(tmp, "lazy", 1)))
    timings["train_s"] = time.perf_counter() - t
    sampler.stopped.set()
    sampler.join()
    timings["read_patches_per_s"] = read_rate(images, cfg)
    if not isinstance(events[-1], ev.Finished):
        raise SystemExit(f"{args.case}: training did not finish: {events[-1]}")
    rate = [e.patches_per_s for e in events if isinstance(e, ev.Epoch)]
    return {
        "case": args.case,
        "num_workers": args.workers,
        "feature_maps": args.feature_maps,
        "latency_ms": args.latency_ms,
        "images": len(images),
        "data_gib": data_bytes / GIB,
        "baseline_rss_gib": base["VmRSS"] / GIB,
        **{f"peak_{k}_gib": v / GIB for k, v in sampler.peak.items()},
        "ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "epoch_patches_per_s": rate,
        **timings,
    }


# ----- driver ---------------------------------------------------------------------------------
def report(rows: list[dict[str, Any]]) -> None:
    print("\n| case | num_workers | data GiB | baseline RSS | peak VmRSS | peak RssAnon | "
          "peak RssFile | RssAnon above baseline | stats s | val patches s | train s | "
          "patches/s | sampler alone patches/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")  # sizes in GiB
    for r in rows:
        print(f"| {r['case']} ({r['images']} image(s)) | {r['num_workers']} | "
              f"{r['data_gib']:.2f} | {r['baseline_rss_gib']:.2f} | {r['peak_VmRSS_gib']:.2f} | "
              f"{r['peak_RssAnon_gib']:.2f} | {r['peak_RssFile_gib']:.2f} | "
              f"{r['peak_RssAnon_gib'] - r['baseline_rss_gib']:.2f} | {r['stats_s']:.1f} | "
              f"{r['val_patches_s']:.1f} | {r['train_s']:.1f} | "
              f"{r['epoch_patches_per_s'][-1]:.1f} | {r['read_patches_per_s']:.0f} |")  # fmt: skip
    print("\n" + json.dumps(rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--side", type=int, default=40000, help="zarr image side (uint16)")
    p.add_argument("--files", type=int, default=36, help=".npy files in the folder case")
    p.add_argument("--file-side", type=int, default=6000, help="side of each .npy image")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--patches", type=int, default=64, help="training patches per epoch")
    p.add_argument("--feature-maps", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="zarr cases: wait this long per chunk read (network storage)")  # fmt: skip
    p.add_argument("--num-workers", type=int, nargs="+", default=[0, 2],
                   help="SYSTEM.NUM_WORKERS values to compare (-1: automatic)")  # fmt: skip
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--keep", action="store_true", help="keep the big files")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args)), flush=True)
        return
    sem = tifffile.imread(SEM)
    work = Path(tempfile.mkdtemp(prefix="lazy-memory-", dir=args.root))
    rows = []
    try:
        t = time.perf_counter()
        write_zarr(work / "big.zarr", args.side, sem)
        write_npy_folder(work / "train" / "x", args.files, args.file_side, sem)
        print(f"wrote the data in {time.perf_counter() - t:.1f} s under {work}", flush=True)
        cases = (("zarr", work / "big.zarr"), ("dask-from-zarr", work / "big.zarr"),
                 ("npy-folder", work / "train" / "x"))  # fmt: skip
        for (case, path), workers in itertools.product(cases, args.num_workers):
            cmd = [sys.executable, __file__, "--case", case, "--path", str(path),
                   "--epochs", str(args.epochs), "--workers", str(workers),
                   "--patches", str(args.patches), "--latency-ms", str(args.latency_ms),
                   "--feature-maps", *map(str, args.feature_maps)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"case {case} (num_workers {workers}) failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(rows)


if __name__ == "__main__":
    main()
