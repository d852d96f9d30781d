"""``napari-ssl demo | predict | export | gui``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from napari_ssl.cli import device_from_gpu
from napari_ssl.config import Config

SAMPLES = Path(__file__).parent / "sample_data"


def demo(argv: list[str]) -> int:
    """Pretrain on the bundled SEM image for a few epochs, test on a held-out strip, report."""
    p = argparse.ArgumentParser(prog="napari-ssl demo", description=demo.__doc__)
    p.add_argument(
        "--result_dir", default="napari_ssl_demo", help="output folder (default: %(default)s)"
    )
    p.add_argument(
        "--task", choices=("crappify", "masking"), default="crappify",
        help="pretext task: crappify (U-Net restores a noisy, downsampled copy) or masking "
        "(a small masked autoencoder); default: %(default)s",
    )  # fmt: skip
    p.add_argument(
        "--epochs", type=int, default=4, help="training epochs, >= 1 (default: %(default)s)"
    )
    p.add_argument("--gpu", default=None, help="GPU index, e.g. 0 (default: auto)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    device = device_from_gpu(args.gpu) or "auto"

    import tifffile

    from napari_ssl.config import save_yaml
    from napari_ssl.job import exit_code, run_job
    from napari_ssl.results import ResultsLayout

    name = f"demo_{args.task}"
    root = Path(args.result_dir)
    data_dir = root / "demo_data"
    cfg = _demo_config(args.task, args.epochs, device, data_dir)
    layout = ResultsLayout(str(root), name, "1")
    image = tifffile.imread(SAMPLES / "sem_retic_2d.tif")
    for split, rows in (("train", slice(0, 768)), ("test", slice(768, 1024))):
        (data_dir / split / "x").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            data_dir / split / "x" / "sem_retic.tif", np.ascontiguousarray(image[rows])
        )
    config_path = save_yaml(cfg, root / f"{name}.yaml")
    print(
        f"demo: SEM sample (skan, BSD-3-Clause), {args.task}, {args.epochs} epochs; "
        f"config {config_path}"
    )
    code = exit_code(run_job(cfg, layout))
    if code == 0:
        print(
            f"re-run headless with: napari-ssl --config {config_path} --result_dir {root} "
            f"--name {name} --run_id 2"
        )
    return code


def _demo_config(task: str, epochs: int, device: str, data_dir: Path) -> Config:
    """The demo's config, validated (before anything is written)."""
    cfg = Config()
    cfg.data.train_path = str(data_dir / "train" / "x")
    cfg.data.test_path = str(data_dir / "test" / "x")
    cfg.data.patch_size = (128, 128)
    cfg.train.epochs = epochs
    cfg.train.patches_per_epoch = 96
    cfg.train.patience = 0
    if task == "masking":
        cfg.pretext.task = "masking"
        cfg.model.architecture = "mae"
        cfg.model.vit_preset = "tiny"
        cfg.model.vit_num_layers = 4
        cfg.model.mae_dec_hidden_size = 128
        cfg.model.mae_dec_num_layers = 2
        cfg.model.mae_dec_num_heads = 4
        cfg.model.mae_dec_mlp_dims = 512
        cfg.pretext.mask_type = "random"
        cfg.pretext.mask_ratio = 0.5
        cfg.train.lr = 5e-4
    cfg.system.device = device
    return cfg.validate()


def predict(argv: list[str]) -> int:
    """Reconstruct images with a checkpoint: <output>/<name>.tif (masking: + the four MAE views)."""
    p = argparse.ArgumentParser(prog="napari-ssl predict", description=predict.__doc__)
    p.add_argument("--checkpoint", required=True, help="a .pth or .safetensors checkpoint")
    p.add_argument("--input", required=True, nargs="+", help="image files or folders")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--gpu", default=None, help="GPU index, e.g. 0 (default: auto)")
    p.add_argument(
        "--overlap", type=float, default=None,
        help="tile overlap, a fraction in [0, 1) (default: the checkpoint's DATA.TEST.OVERLAP; "
        "masking tiles never overlap)",
    )  # fmt: skip
    p.add_argument(
        "--batch", type=int, default=None, help="tiles per pass (default: the checkpoint's test)"
    )
    args = p.parse_args(argv)
    if args.batch is not None and args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        p.error(f"--overlap must be in [0, 1), got {args.overlap}")
    device = device_from_gpu(args.gpu) or "auto"

    from napari_ssl.data.folders import list_images, load_image
    from napari_ssl.data.images import DataError
    from napari_ssl.engine.checkpoints import CheckpointError, load_trained
    from napari_ssl.inference.reconstruct import reconstruct
    from napari_ssl.results import MAE_CHECK_KINDS, save_tif

    try:
        _must_exist("--checkpoint", args.checkpoint, "file")
        for path in args.input:
            _must_exist("--input", path, "file or folder")
        trained = load_trained(args.checkpoint)
        files = [
            f
            for i in args.input
            for f in (list_images(i, "--input") if _is_folder(i) else [Path(i)])
        ]
        for path in files:
            image = load_image(path, trained.cfg.data.ndim, trained.in_channels, by_checkpoint=True)
            outputs = reconstruct(
                trained, image, device=device, overlap=args.overlap, batch_size=args.batch
            )
            out = Path(args.output) / f"{path.stem}.tif"
            if "reconstruction_and_visible" not in outputs:  # crappify: the restored image
                save_tif(out, outputs["reconstruction"])
                print(f"{path.name} -> {out}")
                continue
            # masking: the stitched reconstruction and the four MAE views beside it
            save_tif(out, outputs["reconstruction_and_visible"])
            for view in MAE_CHECK_KINDS:
                save_tif(out.with_name(f"{path.stem}_{view}.tif"), outputs[view])
            views = ", ".join(f"_{view}" for view in MAE_CHECK_KINDS)
            print(f"{path.name} -> {out} (and {path.stem}{{{views}}}.tif beside it)")
    except (CheckpointError, DataError, ValueError) as err:
        print(f"napari-ssl predict: {err}", file=sys.stderr)
        return 1
    return 0


def _must_exist(option: str, value: str, kind: str) -> None:
    """Raise ``ValueError`` naming ``option`` when the path it gives does not exist."""
    path = Path(value)
    if not path.exists():
        where = "" if path.is_absolute() else f" (looked for {Path(os.path.abspath(path))})"
        raise ValueError(f"{option} {value}: {kind} not found{where}.")


def _is_folder(path: str) -> bool:
    """A folder of images (a .zarr store is a folder on disk but one image)."""
    return Path(path).is_dir() and Path(path).suffix.lower() != ".zarr"


def export(argv: list[str]) -> int:
    """Export a checkpoint as .pth (BiaPy layout), .safetensors and the YAML config."""
    p = argparse.ArgumentParser(prog="napari-ssl export", description=export.__doc__)
    p.add_argument("--checkpoint", required=True, help="a .pth or .safetensors checkpoint")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--name", default=None, help="file name stem (default: the checkpoint's)")
    args = p.parse_args(argv)

    from napari_ssl.engine.checkpoints import CheckpointError, export_checkpoint, load_trained

    try:
        _must_exist("--checkpoint", args.checkpoint, "file")
        trained = load_trained(args.checkpoint)
        paths = export_checkpoint(trained, args.output, args.name or Path(args.checkpoint).stem)
    except (CheckpointError, ValueError) as err:
        print(f"napari-ssl export: {err}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def gui(argv: list[str]) -> int:
    """Open napari with the napari-ssl docks and a bundled sample loaded."""
    p = argparse.ArgumentParser(prog="napari-ssl gui", description=gui.__doc__)
    p.add_argument("--sample", choices=("sem", "nuclei", "none"), default="sem")
    args = p.parse_args(argv)
    try:
        from napari_ssl.widgets.launch import open_gui
    except ImportError as err:
        print(
            f"napari-ssl gui needs napari and Qt: pip install 'napari-ssl[gui]' ({err})",
            file=sys.stderr,
        )
        return 1
    open_gui(None if args.sample == "none" else args.sample)
    return 0
