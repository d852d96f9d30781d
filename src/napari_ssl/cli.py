"""The ``napari-ssl`` command.

BiaPy's flags run a job from a YAML config (ours or BiaPy's)::

    napari-ssl --config cfg.yaml --result_dir DIR --name NAME --run_id 1 [--gpu 0]

Subcommands: ``demo`` (bundled sample, a few epochs), ``predict``, ``export``, ``gui``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

SUBCOMMANDS = ("demo", "predict", "export", "gui")


def _job_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-ssl",
        description="Self-supervised pretraining (crappify / masked autoencoder). "
        f"Subcommands: {', '.join(SUBCOMMANDS)} (napari-ssl SUBCOMMAND -h).",
    )
    p.add_argument(
        "--config", required=True, help="YAML config (BiaPy's self-supervised layout or ours)"
    )
    p.add_argument(
        "--result_dir", default=str(Path.home() / "napari_ssl_results"), help="output folder"
    )
    p.add_argument("--name", default="ssl_job", help="job name (a plain name, no path separators)")
    p.add_argument("--run_id", default="1", help="run number/name within the job")
    p.add_argument(
        "--gpu", default=None, help="GPU index, e.g. 0 ('0,1' under torchrun); omit for auto"
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
    return f"cuda:{ids[rank] if rank is not None and len(ids) > 1 else ids[0]}"


def run_config(argv: list[str]) -> int:
    from napari_ssl.config import ConfigError, load_yaml
    from napari_ssl.job import exit_code, run_job
    from napari_ssl.results import ResultsLayout

    args = _job_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = load_yaml(args.config)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        device = device_from_gpu(args.gpu)
        if device is not None:
            cfg.system.device = device
        layout = ResultsLayout(args.result_dir, args.name, str(args.run_id))
    except (ConfigError, ValueError) as err:
        print(f"napari-ssl: {err}", file=sys.stderr)
        return 2
    resume = str(layout.last_checkpoint) if args.resume else None
    if resume and not Path(resume).is_file():
        print(f"napari-ssl: --resume: no last checkpoint at {resume}", file=sys.stderr)
        return 2
    return exit_code(run_job(cfg, layout, resume=resume))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        from napari_ssl import cli_commands

        return getattr(cli_commands, argv[0])(argv[1:])
    return run_config(argv)


if __name__ == "__main__":
    raise SystemExit(main())
