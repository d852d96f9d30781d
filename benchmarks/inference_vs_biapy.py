"""Whole-image reconstruction throughput, napari-ssl vs BiaPy 3.7.1, side by side on this machine.

One crappify U-Net checkpoint (trained here by napari-ssl, or ``--checkpoint``; BiaPy loads our
``.pth`` with ``strict=True``) and the same test image(s) (``--size``² mirror-tiled from the
bundled SEM sample) go through each tool's self-supervised test phase, on the same BiaPy YAML
(BiaPy's 2D template: patch 256, ``DATA.TEST.PADDING (32, 32)``, ``DATA.TEST.OVERLAP`` left at
its default, batch 6) with ``TRAIN.ENABLE False``, ``TEST.ENABLE True``, ``MODEL.LOAD_CHECKPOINT
True`` and ``PATHS.CHECKPOINT_FILE``. Both jobs crappify the test image, reconstruct it tile by
tile, score it against the original and write it. One thread each (``OMP_NUM_THREADS=1`` for both,
``SYSTEM.NUM_CPUS 1`` for BiaPy), the runs interleaved, ``--rounds`` times.

Times per run: the whole command (wall, and CPU time of the process tree); the inference proper
from the logs: BiaPy from "Processing image" to "Releasing memory" (its own timestamps: crop,
predict, merge, undo normalisation, write, metrics; its crappify of the test data comes before and
is left out), of which the tile loop alone is "END OV-CROP" to "MERGE-OV-CROP"; napari-ssl from
"testing N image(s)" to "test mean" (arrival times of the lines: checkpoint load, crappify,
reconstruction, metrics, write). ``napari-ssl predict`` on BiaPy's own crappified input (the
reconstruction alone) is timed too, and its output compared with BiaPy's (same model, same input).

    PYTHONPATH=src .venv/bin/python benchmarks/inference_vs_biapy.py [--size 2048] [--rounds 2]
        [--gpu 0]   (on the GPU machine: both tools on GPU 0, the same CPU settings otherwise)

Needs BiaPy's venv (``bash ../shared/tools/biapy_peer.sh setup``; ``--biapy`` or ``$BIAPY_VENV``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
SEM = ROOT / "src" / "napari_ssl" / "sample_data" / "sem_retic_2d.tif"
STAMP = re.compile(r"\[(\d\d):(\d\d):(\d\d\.\d+)\]")


def make_dataset(out: Path, size: int, n_test: int, n_train: int = 8) -> None:
    """``n_train`` random 512² crops for training; ``n_test`` images of ``size``² mirror-tiled."""
    img = tifffile.imread(SEM)
    rng = np.random.default_rng(0)
    train = out / "train" / "x"
    train.mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        y = rng.integers(0, img.shape[0] - 512 + 1)
        x = rng.integers(0, img.shape[1] - 512 + 1)
        tifffile.imwrite(
            train / f"train-{i:02d}.tif", np.ascontiguousarray(img[y : y + 512, x : x + 512])
        )
    row = np.concatenate([img, img[:, ::-1]], axis=1)
    tile = np.concatenate([row, row[::-1]], axis=0)  # seamless mirror tile
    test = out / "test" / "x"
    test.mkdir(parents=True, exist_ok=True)
    for i in range(n_test):
        reps = [-(-(size + 97 * i) // s) for s in tile.shape]
        big = np.tile(tile, reps)[97 * i : 97 * i + size, 97 * i : 97 * i + size]
        tifffile.imwrite(test / f"sem_{size}_{i}.tif", np.ascontiguousarray(big))


def biapy_yaml(
    train: str, test: str, *, train_enable: bool, ckpt: str = "", epochs: int = 1
) -> str:
    """BiaPy's 2D self-supervised template (crappify, unet, patch 256, test padding 32)."""
    lr = "1.E-3" if train_enable else "1.E-4"
    text = f"""SYSTEM:
  NUM_CPUS: 1
  NUM_WORKERS: 0
  SEED: 0
PROBLEM:
  TYPE: SELF_SUPERVISED
  NDIM: 2D
  SELF_SUPERVISED:
    PRETEXT_TASK: crappify
    RESIZING_FACTOR: 4
    NOISE: 0.2
DATA:
  PATCH_SIZE: (256, 256, 1)
  TRAIN:
    PATH: {train}
    IN_MEMORY: True
  VAL:
    FROM_TRAIN: True
    SPLIT_TRAIN: 0.1
  TEST:
    PATH: {test}
    GT_PATH: {test}
    LOAD_GT: True
    IN_MEMORY: True
    PADDING: (32, 32)
AUGMENTOR:
  ENABLE: True
  DA_PROB: 0.5
  RANDOM_ROT: True
  VFLIP: True
  HFLIP: True
MODEL:
  ARCHITECTURE: unet
  LOAD_CHECKPOINT: {not train_enable}
TRAIN:
  ENABLE: {train_enable}
  OPTIMIZER: ADAMW
  LR: {lr}
  BATCH_SIZE: 6
  EPOCHS: {epochs}
  PATIENCE: -1
TEST:
  ENABLE: {not train_enable}
  AUGMENTATION: False
  FULL_IMG: False
"""
    if ckpt:
        text += f"PATHS:\n  CHECKPOINT_FILE: {ckpt}\n"
    return text


def run(cmd: list[str], log: Path, env: dict[str, str]) -> dict:
    """Run ``cmd``; keep its output with the arrival time of each line (``\\r`` splits lines)."""
    load = Path("/proc/loadavg").read_text().split()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    assert p.stdout is not None
    lines, buf = [], b""
    while chunk := p.stdout.read1(65536):
        buf += chunk
        *done, buf = buf.replace(b"\r", b"\n").split(b"\n")
        now = time.perf_counter() - t0
        lines += [(now, b.decode(errors="replace")) for b in done]
    lines.append((time.perf_counter() - t0, buf.decode(errors="replace")))
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    log.write_text("".join(f"{t:9.3f} {s}\n" for t, s in lines))
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed, see {log}:\n" + "\n".join(s for _, s in lines[-25:]))
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "load_before": float(load),
        "lines": lines,
    }


GPU: list[str] = []  # ["--gpu", "0"] with --gpu: both tools on that GPU


def job(cfg: Path, result: Path, name: str) -> list[str]:
    """BiaPy's (and our) job flags."""
    flags = ["--config", str(cfg), "--result_dir", str(result), "--name", name, "--run_id", "1"]
    return [*flags, *GPU]


def _clock(line: str) -> float | None:
    m = STAMP.search(line)
    return None if m is None else int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


def _span(a: float, b: float) -> float:
    return (b - a) % 86400  # across midnight too


def parse_biapy(lines: list[tuple[float, str]]) -> dict:
    """Inference proper and tile loop, from BiaPy's own timestamps."""
    stamped = [(_clock(s), s) for _, s in lines]
    stamped = [(c, s) for c, s in stamped if c is not None]

    def first(text: str) -> float:
        return next(c for c, s in stamped if text in s)

    loop = 0.0
    start = None
    for c, s in stamped:
        if "### END OV-CROP ###" in s:
            start = c
        elif "### MERGE-OV-CROP ###" in s and start is not None:
            loop, start = loop + _span(start, c), None
    if not any("Model weights loaded!" in s for _, s in stamped):
        sys.exit("BiaPy did not report loading the checkpoint's weights")
    metrics = {
        m[1].lower(): float(m[2])
        for _, s in stamped
        if (m := re.search(r"Test (\w+) \(merge patches\): ([\d.eE+-]+)", s))
    }
    return {
        "inference_s": round(_span(first("Processing image:"), first("Releasing memory")), 2),
        "tile_loop_s": round(loop, 2),
        "crappify_test_s": round(
            _span(first("Crappifying file"), first("DATA.TEST.PATH changed")), 2
        ),
        "metrics": metrics,
    }


def parse_ours(lines: list[tuple[float, str]]) -> dict:
    """Inference proper from the arrival times of our (flushed) log lines."""
    start = next(t for t, s in lines if re.match(r"testing \d+ image", s))
    end = next(t for t, s in lines if s.startswith("test mean:"))
    mean = next(s for _, s in lines if s.startswith("test mean:"))
    metrics = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.eE+-]+)", mean.split(":", 1)[1])}
    return {"inference_s": round(end - start, 2), "metrics": metrics}


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    err = np.mean((np.squeeze(a).astype(np.float64) - np.squeeze(b).astype(np.float64)) ** 2)
    return round(float(10 * np.log10(data_range**2 / err)), 2)


def untiled(ckpt: str, degraded: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The same model on the whole image in one forward pass (per-image z-score, as both tools),
    in fp32 (no TF32 on a GPU)."""
    import torch

    from napari_ssl.engine.checkpoints import load_trained

    torch.set_num_threads(1)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = load_trained(ckpt, device).model.eval()
    x = degraded.astype(np.float32)
    mean, std = x.mean(), x.std()
    with torch.inference_mode():
        y = model(torch.from_numpy((x - mean) / std)[None, None].to(device))[0, 0]
    return y.float().cpu().numpy() * std + mean


def quality(work: Path, ckpt: str, names: list[str], device: str) -> dict:
    """PSNR (data range 255, uint8 data) of the outputs of round 1, first test image."""
    name = names[0]
    clean = tifffile.imread(work / "ds" / "test" / "x" / name)
    degraded = tifffile.imread(work / "biapy_r1" / "data" / "test" / "x_ssl_source" / name)
    biapy = tifffile.imread(next((work / "biapy_r1" / "res").glob(f"**/per_image/{name}")))
    ours = tifffile.imread(next((work / "ours_r1").glob(f"**/per_image/{name}")))
    pred = tifffile.imread(work / "predict_r1" / name)
    full = untiled(ckpt, degraded, device)
    return {
        "image": name,
        "biapy_degraded_vs_original": psnr(degraded, clean),
        "biapy_job_vs_original": psnr(biapy, clean),
        "ours_job_vs_original": psnr(ours, clean),
        "ours_predict_on_biapy_degraded_vs_original": psnr(pred, clean),
        "ours_job_vs_biapy_job": psnr(ours, biapy),
        "ours_predict_vs_biapy_job_same_input": psnr(pred, biapy),
        "biapy_job_vs_untiled_forward": psnr(biapy, full),
        "ours_predict_vs_untiled_forward": psnr(pred, full),
        "dtypes": {"biapy": str(biapy.dtype), "ours": str(ours.dtype)},
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=2048, help="test image side (pixels)")
    p.add_argument("--images", type=int, default=1, help="number of test images")
    p.add_argument("--rounds", type=int, default=2, help="interleaved runs of each tool")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the checkpoint we train")
    p.add_argument("--checkpoint", default="", help="use this crappify unet .pth instead")
    p.add_argument("--work", default="", help="work folder (default: a new one in /tmp)")
    venv = os.environ.get("BIAPY_VENV", "/tmp/biapy/v")
    p.add_argument("--biapy", default=f"{venv}/bin/biapy", help="BiaPy's command")
    p.add_argument("--gpu", default="", help="run both tools on this GPU (e.g. 0)")
    args = p.parse_args()
    if args.gpu:
        GPU.extend(["--gpu", args.gpu])

    work = Path(args.work or tempfile.mkdtemp(prefix="infer_vs_biapy_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
    base |= {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ours_env = base | {"PYTHONPATH": str(ROOT / "src")}
    ours = [sys.executable, "-m", "napari_ssl"]
    print(f"work folder {work}; uptime: {os.popen('uptime').read().strip()}")

    make_dataset(work / "ds", args.size, args.images)
    names = sorted(f.name for f in (work / "ds" / "test" / "x").glob("*.tif"))
    mpix = args.images * args.size**2 / 1e6
    train_x, test_x = str(work / "ds" / "train" / "x"), str(work / "ds" / "test" / "x")
    ckpt = args.checkpoint
    if not ckpt:
        (work / "train.yaml").write_text(
            biapy_yaml(train_x, test_x, train_enable=True, epochs=args.epochs)
        )
        r = run(
            [*ours, *job(work / "train.yaml", work / "train", "ck")], work / "train.log", ours_env
        )
        ckpt = str(work / "train" / "ck" / "checkpoints" / "ck_1-checkpoint-best.pth")
        print(f"trained {ckpt} in {r['wall_s']} s ({args.epochs} epochs)")
    (work / "ours.yaml").write_text(biapy_yaml(train_x, test_x, train_enable=False, ckpt=ckpt))

    def biapy_run(k: int) -> dict:
        d = work / f"biapy_r{k}"
        (d / "data" / "test").mkdir(parents=True)
        (d / "data" / "test" / "x").symlink_to(test_x)  # BiaPy crappifies into x_ssl_source here
        test = str(d / "data" / "test" / "x")
        (d / "biapy.yaml").write_text(biapy_yaml(train_x, test, train_enable=False, ckpt=ckpt))
        r = run([args.biapy, *job(d / "biapy.yaml", d / "res", "inf")], d / "biapy.log", base)
        return {"tool": "BiaPy 3.7.1 test job", **r, **parse_biapy(r["lines"])}

    def ours_run(k: int) -> dict:
        cmd = [*ours, *job(work / "ours.yaml", work / f"ours_r{k}", "inf")]
        r = run(cmd, work / f"ours_r{k}.log", ours_env)
        return {"tool": "napari-ssl test job", **r, **parse_ours(r["lines"])}

    def predict_run(k: int) -> dict:
        inputs = [str(work / "biapy_r1" / "data" / "test" / "x_ssl_source" / n) for n in names]
        cmd = [*ours, "predict", *GPU, "--checkpoint", ckpt, "--input", *inputs, "--output"]
        r = run([*cmd, str(work / f"predict_r{k}")], work / f"predict_r{k}.log", ours_env)
        return {"tool": "napari-ssl predict", **r}

    runs = []
    for k in range(1, args.rounds + 1):  # alternate who goes first
        order = (biapy_run, ours_run, predict_run) if k % 2 else (ours_run, predict_run, biapy_run)
        for fn in order:
            res = fn(k)
            res.pop("lines")
            res["round"] = k
            if "inference_s" in res:
                res["mpix_per_s"] = round(mpix / res["inference_s"], 3)
            res["mpix_per_s_wall"] = round(mpix / res["wall_s"], 3)
            runs.append(res)
            print(json.dumps(res), flush=True)

    def mean(tool: str, key: str) -> float:
        return round(statistics.mean(r[key] for r in runs if r["tool"] == tool and key in r), 3)

    b, o = "BiaPy 3.7.1 test job", "napari-ssl test job"
    summary = {
        "megapixels": mpix,
        "images": names,
        "load_after": float(Path("/proc/loadavg").read_text().split()[0]),
        "mean": {
            t: {
                k: mean(t, k)
                for k in ("wall_s", "cpu_s", "inference_s", "mpix_per_s", "mpix_per_s_wall")
                if any(k in r for r in runs if r["tool"] == t)
            }
            for t in (b, o, "napari-ssl predict")
        },
        "ratio_ours_over_biapy": {
            "inference_mpix_per_s": round(mean(o, "mpix_per_s") / mean(b, "mpix_per_s"), 2),
            "whole_command_wall": round(mean(b, "wall_s") / mean(o, "wall_s"), 2),
            "predict_wall_vs_biapy_inference": round(
                mean(b, "inference_s") / mean("napari-ssl predict", "wall_s"), 2
            ),
        },
        "quality_psnr_db": quality(work, ckpt, names, f"cuda:{args.gpu}" if args.gpu else "cpu"),
    }
    (work / "summary.json").write_text(json.dumps({"runs": runs, **summary}, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"uptime: {os.popen('uptime').read().strip()}; logs in {work}")


if __name__ == "__main__":
    main()
