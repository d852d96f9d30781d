"""The ``napari-ssl`` command.

BiaPy's flags run a job from a YAML config (ours or BiaPy's)::

    napari-ssl --config cfg.yaml --result_dir DIR --name NAME --run_id 1 [--gpu 0]

Subcommands: ``demo`` (bundled sample, a few epochs), ``predict``, ``export``, ``gui``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from napari_ssl.results import DEFAULT_RESULT_DIR

if TYPE_CHECKING:
    from napari_ssl.config import Config
    from napari_ssl.results import ResultsLayout

SUBCOMMANDS = ("demo", "predict", "export", "gui")


def _job_parser() -> argparse.ArgumentParser:
    from napari_ssl import __version__

    p = argparse.ArgumentParser(
        prog="napari-ssl",
        description="Self-supervised pretraining (crappify / masked autoencoder). "
        f"Subcommands: {', '.join(SUBCOMMANDS)} (napari-ssl SUBCOMMAND -h).",
    )
    p.add_argument("--version", action="version", version=f"napari-ssl {__version__}")
    p.add_argument(
        "--config", required=True, help="YAML config (BiaPy's self-supervised layout or ours)"
    )
    p.add_argument(
        "--result_dir", default=str(DEFAULT_RESULT_DIR), help="output folder (default: %(default)s)"
    )
    p.add_argument("--name", default="ssl_job", help="job name (a plain name, no path separators)")
    p.add_argument("--run_id", default="1", help="run number/name within the job")
    p.add_argument(
        "--gpu",
        default=None,
        help="GPU index, e.g. 0 ('0,1' under torchrun); omit for auto "
        "(the first GPU, else the CPU)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue this run from its last checkpoint"
    )
    return p


def device_from_gpu(gpu: str | None) -> str | None:
    """BiaPy's ``--gpu``: '0' -> cuda:0; under torchrun each process takes its local rank."""
    if gpu is None or gpu == "":
        return None
    ids = [g.strip() for g in str(gpu).split(",") if g.strip()]
    if not all(g.isdigit() for g in ids):
        raise SystemExit(f"napari-ssl: --gpu expects GPU numbers like 0 or 0,1, got '{gpu}'")
    from napari_ssl.engine import distributed

    rank = distributed.local_rank()
    if len(ids) > 1 and rank is None:
        raise SystemExit(
            f"napari-ssl: --gpu {gpu} names {len(ids)} GPUs: start with "
            f"torchrun --nproc_per_node={len(ids)} -m napari_ssl ... to train on all of them."
        )
    if rank is not None and len(ids) > 1 and rank >= len(ids):
        raise SystemExit(f"napari-ssl: --gpu {gpu} names fewer GPUs than torchrun's processes.")
    if rank is not None and len(ids) == 1 and distributed.launched_by_torchrun():
        raise SystemExit(
            f"napari-ssl: --gpu {gpu} names one GPU for several torchrun processes: name one per "
            "process (e.g. --gpu 0,1) or leave --gpu out (each process takes its local GPU)."
        )
    index = int(ids[rank] if rank is not None and len(ids) > 1 else ids[0])
    _check_cuda(gpu, index)
    return f"cuda:{index}"


def _check_cuda(gpu: str, index: int) -> None:
    """Stop with a ``--gpu`` message when this machine has no CUDA GPU number ``index``."""
    import torch

    if not torch.cuda.is_available():
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        raise SystemExit(
            f"napari-ssl: --gpu {gpu}: no CUDA GPU is available on this machine; omit --gpu to "
            f"run on {'Apple MPS' if mps else 'the CPU'}."
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise SystemExit(
            f"napari-ssl: --gpu {gpu}: there is no GPU {index}; this machine has {count} "
            f"(--gpu 0{f' to {count - 1}' if count > 1 else ''})."
        )


def check_output_folder(path: str | Path, option: str) -> None:
    """Raise ``ValueError`` naming ``option`` when ``path`` cannot be a folder to write into:
    it, or the nearest part of it that exists, is a file, or that folder is not writable."""
    given = Path(path)
    existing = given
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        part = "" if existing == given else f" ({existing} is a file)"
        raise ValueError(
            f"{option} {path} is not a folder{part}. Nothing was written; give a folder "
            "(new or existing) to write into."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"{option} {path}: no permission to write in {existing}. Nothing was written; "
            "give a folder you can write to."
        )


def run_config(argv: list[str]) -> int:
    """The BiaPy-style job: ``--config`` with ``--result_dir/--name/--run_id``, exit code."""
    from napari_ssl.config import ConfigError, load_yaml
    from napari_ssl.job import exit_code, run_job
    from napari_ssl.results import ResultsLayout

    args = _job_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cfg = load_yaml(args.config)
            finally:  # also before an error they may explain (a typo, a key given twice)
                for w in caught:  # near-miss keys come first, each on a line of its own
                    print(f"warning: {w.message}", file=sys.stderr)
        device = device_from_gpu(args.gpu)
        if device is not None:
            cfg.system.device = device
        layout = ResultsLayout(args.result_dir, args.name, str(args.run_id))
        check_output_folder(args.result_dir, "--result_dir")
        check_output_folder(layout.root, "the job folder (--result_dir/--name)")
    except (ConfigError, ValueError) as err:
        print(f"napari-ssl: {err}", file=sys.stderr)
        return 2
    resume = str(layout.last_checkpoint) if args.resume else None
    if resume and not Path(resume).is_file():
        print(f"napari-ssl: --resume: no last checkpoint at {resume}", file=sys.stderr)
        return 2
    note = replaced_run_note(cfg, layout, resume=bool(resume))
    if note:
        print(note, file=sys.stderr)
    return exit_code(run_job(cfg, layout, resume=resume, config_dir=Path(args.config).parent))


def replaced_run_note(cfg: Config, layout: ResultsLayout, *, resume: bool) -> str | None:
    """A note when training will replace an existing run's checkpoints (BiaPy does so
    silently): not for ``--resume``, a test-only job, or a continue / fine-tune of this run."""
    from napari_ssl.engine import distributed

    if resume or not cfg.train.enable or not distributed.is_main_process():
        return None
    own = {layout.best_checkpoint.resolve(), layout.last_checkpoint.resolve()}
    m = cfg.model
    continues = m.load_checkpoint and (
        not m.checkpoint_file or Path(m.checkpoint_file).resolve() in own
    )
    if continues or not _has_run(layout):
        return None
    return (
        f"note: run {layout.tag} exists in {layout.root}: this run writes over its checkpoints "
        f"and results as it trains; use --run_id {_free_run_id(layout)} for a new run or "
        "--resume to continue it"
    )


def _has_run(layout: ResultsLayout) -> bool:
    """Whether the run has a checkpoint already."""
    return layout.best_checkpoint.exists() or layout.last_checkpoint.exists()


def _free_run_id(layout: ResultsLayout) -> str:
    """The next numeric ``--run_id`` with no checkpoints or results (``N`` for a named run)."""
    from napari_ssl.results import next_run_id

    return str(next_run_id(layout.result_dir, layout.name)) if layout.run_id.isdigit() else "N"


def main(argv: list[str] | None = None) -> int:
    """``napari-ssl``: a subcommand, else a BiaPy-style job; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            from napari_ssl import cli_commands

            return getattr(cli_commands, argv[0])(argv[1:])
        return run_config(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while training, or one outside it
        print("napari-ssl: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
