"""``napari-ssl demo | predict | export | gui``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from napari_ssl.cli import check_output_folder, device_from_gpu
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
    from napari_ssl.job import count_of, exit_code, run_job
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
        f"demo: SEM sample (skan, BSD-3-Clause), {args.task}, {count_of(args.epochs, 'epoch')}; "
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
    p.add_argument(
        "--output", required=True,
        help="output folder: <name>.tif per input image (masking: and <name>_<view>.tif for the "
        "four MAE views); files there from an earlier run are replaced (a line says how many); "
        "refused, with nothing written, when an output would overwrite an input image or two "
        "inputs would write the same file",
    )  # fmt: skip
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

    from napari_ssl.data.folders import check_image_file, list_images, load_image
    from napari_ssl.data.images import DataError
    from napari_ssl.engine.checkpoints import CheckpointError, load_trained
    from napari_ssl.inference.reconstruct import reconstruct
    from napari_ssl.results import MAE_CHECK_KINDS
    from napari_ssl.tiffs import save_tif

    try:
        _must_exist("--checkpoint", args.checkpoint, "file")
        for path in args.input:
            _must_exist("--input", path, "file or folder")
        check_output_folder(args.output, "--output")
        trained = load_trained(args.checkpoint)
        files = _unique_files(
            f
            for i in args.input
            for f in (list_images(i, "--input") if _is_folder(i) else [Path(i)])
        )
        masking = trained.cfg.pretext.task == "masking"
        if masking and args.overlap:
            print("note: masking tiles never overlap (each token is seen once): --overlap unused")
        plan = {f: _outputs_of(f, Path(args.output), masking) for f in files}
        replaced = _check_outputs(plan, args.output)
        for path in plan:  # all refused before anything is written
            check_image_file(path, trained.cfg.data.ndim, trained.in_channels, by_checkpoint=True)
        if replaced:
            print(f"replacing {replaced} existing file(s) in {args.output}")
        for path, planned in plan.items():
            image = load_image(path, trained.cfg.data.ndim, trained.in_channels, by_checkpoint=True)
            outputs = reconstruct(
                trained, image, device=device, overlap=args.overlap, batch_size=args.batch
            )
            for key, out in planned:
                save_tif(out, outputs[key], image.scale)  # the input's pixel size, if it has one
            out = planned[0][1]
            if not masking:  # crappify: the restored image
                print(f"{path.name} -> {out}")
                continue
            # masking: the reconstruction with the visible pixels, and the four views beside it
            views = ", ".join(f"{path.stem}_{view}.tif" for view in MAE_CHECK_KINDS)
            print(f"{path.name} -> {out} (reconstruction + visible; beside it: {views})")
    except (CheckpointError, DataError, ValueError) as err:
        print(f"napari-ssl predict: {err}", file=sys.stderr)
        return 1
    return 0


def _unique_files(files: Iterable[Path]) -> list[Path]:
    """``files`` in order, each file once (an image named twice, e.g. as a file and through its
    folder, is predicted once)."""
    seen: set[tuple[int, int]] = set()
    unique = []
    for path in files:
        key = _file_id(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _file_id(path: Path) -> tuple[int, int]:
    """What ``os.path.samefile`` compares: the device and inode of an existing file."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _outputs_of(path: Path, output: Path, masking: bool) -> list[tuple[str, Path]]:
    """What predict writes for the input ``path``, as (output key, file), the main file first:
    <stem>.tif; masking: the reconstruction with the visible pixels there and the four MAE views
    in <stem>_<view>.tif."""
    from napari_ssl.results import MAE_CHECK_KINDS

    if not masking:
        return [("reconstruction", output / f"{path.stem}.tif")]
    views = [(view, output / f"{path.stem}_{view}.tif") for view in MAE_CHECK_KINDS]
    return [("reconstruction_and_visible", output / f"{path.stem}.tif"), *views]


def _check_outputs(plan: dict[Path, list[tuple[str, Path]]], output: str) -> int:
    """Raise ``ValueError`` (nothing written yet) when a planned output is an input image or two
    inputs would write the same file; else the number of existing files that will be replaced."""
    inputs = {_file_id(path): path for path in plan}
    writers: dict[str, Path] = {}  # resolved output -> the input writing it
    shared: dict[tuple[Path, Path], Path] = {}  # (first input, second input) -> a shared file
    overwritten: list[str] = []
    existing = 0
    for path, planned in plan.items():
        for _, out in planned:
            key = os.path.normcase(out.resolve())
            if key in writers:
                if writers[key] != path:
                    shared.setdefault((writers[key], path), out)
                continue
            writers[key] = path
            if out.exists():
                hit = inputs.get(_file_id(out))
                if hit is not None:
                    overwritten.append(str(hit))
                else:
                    existing += 1
    if overwritten:
        raise ValueError(
            f"--output {output} would overwrite input image(s) {_few(overwritten)} with "
            f"predictions. Nothing was written; give an --output folder that holds no input "
            f"images (e.g. {Path(output) / 'predicted'})."
        )
    if shared:
        pairs = [f"{first} and {second} -> {out}" for (first, second), out in shared.items()]
        raise ValueError(
            f"two inputs would write the same output file: {_few(pairs)}. Nothing was written; "
            "predict them into separate --output folders, or rename one of them."
        )
    return existing


def _few(names: list[str], most: int = 4) -> str:
    """``names`` joined, the first ``most`` of them and how many more."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


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

    from napari_ssl.engine.checkpoints import (
        CheckpointError,
        export_checkpoint,
        export_paths,
        load_trained,
    )

    try:
        _must_exist("--checkpoint", args.checkpoint, "file")
        check_output_folder(args.output, "--output")
        name = args.name or Path(args.checkpoint).stem
        replaced = _check_export(export_paths(args.output, name), Path(args.checkpoint))
        trained = load_trained(args.checkpoint)
        if replaced:
            print(f"replacing {replaced} existing file(s) in {args.output}")
        paths = export_checkpoint(trained, args.output, name)
    except (CheckpointError, ValueError) as err:
        print(f"napari-ssl export: {err}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _check_export(targets: dict[str, Path], checkpoint: Path) -> int:
    """Raise ``ValueError`` (nothing written) when an export would overwrite the checkpoint it
    reads (an export keeps no optimizer state: a -last.pth could no longer be resumed); else
    the number of existing files that will be replaced."""
    existing = [path for path in targets.values() if path.exists()]
    source = _file_id(checkpoint)
    if any(_file_id(path) == source for path in existing):
        raise ValueError(
            f"exporting to {targets['pth']} would overwrite the checkpoint being exported "
            f"({checkpoint}). Nothing was written; give another --output folder or a --name."
        )
    return len(existing)


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
