"""A whole headless job: train on a folder (or arrays), then test, printing progress.

The CLI and ``napari-ssl demo`` call :func:`run_job`; it consumes the trainer's events and prints
one line per epoch with losses, throughput and ETA. An error is not printed there: it comes back
in the :class:`JobResult`, and :func:`exit_code` prints it once, on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_ssl.config import Config
from napari_ssl.data.folders import dataset_folder, list_images, load_folder, split_key
from napari_ssl.data.images import Image
from napari_ssl.engine import events as ev
from napari_ssl.results import ResultsLayout, remove_empty

if TYPE_CHECKING:
    from napari_ssl.engine.trainer import TrainingControl

Log = Callable[[str], None]


def _default_log(message: str) -> None:
    print(message, flush=True)


def _quiet(message: str) -> None:
    """Log of the non-main processes under torchrun."""


@dataclass
class JobResult:
    ok: bool
    message: str = ""
    best_checkpoint: str = ""
    last_checkpoint: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def format_rate(per_s: float) -> str:
    """Two significant digits below 10 (0.39, 4.2), whole numbers above (250)."""
    return f"{per_s:.2g}" if per_s < 10 else f"{per_s:.0f}"


def count_of(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe(event: ev.Event) -> str | None:
    """One terminal line per event worth printing."""
    if isinstance(event, ev.Started):
        notes = "".join(f"\n  note: {n}" for n in event.notes)
        epochs = count_of(event.epochs, "epoch")
        return (
            f"training {event.model} ({event.parameters:,} parameters) on {event.device} "
            f"[{event.precision}]: {epochs} x {event.steps_per_epoch} steps "
            f"({event.train_patches} patches/epoch){notes}"
        )
    if isinstance(event, ev.Epoch):
        metrics = "".join(f", {k} {v:.4g}" for k, v in event.metrics.items())
        star = " (best: saved)" if event.best else ""
        if event.skipped_nonfinite:
            star += f" ({event.skipped_nonfinite} non-finite losses skipped so far)"
        return (
            f"epoch {event.epoch}: train loss {event.train_loss:.5g}, val loss "
            f"{event.val_loss:.5g}{metrics}, {format_rate(event.patches_per_s)} patches/s, "
            f"{event.seconds:.1f}s, ETA {format_seconds(event.eta_s)}{star}"
        )
    if isinstance(event, ev.Stopped):
        return f"stopped at epoch {event.epoch}; resume from {event.last_checkpoint}"
    if isinstance(event, ev.Finished):
        early = " (early stopping)" if event.early_stopped else ""
        epochs = count_of(event.epochs_run, "epoch")
        return (
            f"finished {epochs} in {format_seconds(event.seconds)}{early}; "
            f"best val loss {event.best_val_loss:.5g}"
        )
    return None


def folder_images(cfg: Config, split: str, config_dir: str | Path | None = None) -> list[Image]:
    """The images of DATA.TRAIN.PATH (``split="train"``) or DATA.TEST.PATH (``"test"``); test
    images must have names of their own (their outputs are named after them)."""
    path = cfg.data.train_path if split == "train" else cfg.data.test_path
    folder = dataset_folder(path, split, config_dir)
    return _split_images(folder, cfg.data.ndim, cfg.data.channels, split)


def _split_images(folder: Path, ndim: int, channels: int | None, split: str) -> list[Image]:
    """The images of one split's folder; test images need names of their own."""
    images = load_folder(folder, ndim, channels, split_key(split))
    if split == "test":
        _check_output_names(folder, images)
    return images


def dataset_test_images(dataset: str, ndim: int, channels: int) -> tuple[Path, list[Image]] | None:
    """The folder ``dataset/test/x`` and its images, read and checked as the test step reads
    them (None when the dataset folder has no test/x)."""
    folder = Path(dataset) / "test" / "x"
    if not dataset.strip() or not folder.is_dir():
        return None
    return folder, _split_images(folder, ndim, channels, "test")


def _check_output_names(folder: Path, images: list[Image]) -> None:
    """Raise :class:`DataError` when two test images (``t.tif``, ``t.png``) would write the same
    ``per_image/<name>.tif`` and metrics row."""
    from napari_ssl.data.images import DataError
    from napari_ssl.results import safe_filename

    names: dict[str, list[str]] = {}
    for path, image in zip(list_images(folder), images, strict=True):
        names.setdefault(safe_filename(image.name), []).append(path.name)
    shared = {name: files for name, files in names.items() if len(files) > 1}
    if shared:
        name, files = next(iter(shared.items()))
        raise DataError(
            f"test images {', '.join(files)} in '{folder}' share the name '{name}': their "
            f"reconstructions would overwrite each other (per_image/{name}.tif) and the metrics "
            "could not be told apart. Rename or move all but one (DATA.TEST.PATH)."
        )


def check_folders(cfg: Config, *, train: bool, test: bool, config_dir: str | Path | None) -> None:
    """Raise :class:`DataError` for the first missing data folder the job will read (train,
    validation, test), before anything is loaded or written."""
    if train:
        dataset_folder(cfg.data.train_path, "train", config_dir)
    if cfg.train.enable and cfg.data.val_path:
        dataset_folder(cfg.data.val_path, "val", config_dir)
    if test:
        dataset_folder(cfg.data.test_path, "test", config_dir)


def absolute_data_paths(cfg: Config) -> Config:
    """``cfg`` with its data folders from the root, as they are read now (a relative path is
    read from the current folder, as in BiaPy)."""
    data = cfg.data
    paths = {
        key: os.path.abspath(value)
        for key in ("train_path", "val_path", "test_path")
        if (value := getattr(data, key).strip())
    }
    return replace(cfg, data=replace(data, **paths))


def run_job(
    cfg: Config,
    layout: ResultsLayout,
    *,
    images: list[Image] | None = None,
    test: list[Image] | None = None,
    resume: str | None = None,
    config_dir: str | Path | None = None,
    log: Log = _default_log,
) -> JobResult:
    """Train (when TRAIN.ENABLE) and test (when TEST.ENABLE); print progress; never raise on
    user errors (the message comes back in the result, unprinted). ``config_dir``: the YAML's
    folder, named in the error when a relative data path is found there but not here. A job
    that fails removes the run folders it made and left empty."""
    new = layout.missing_folders()
    result = _run_job(cfg, layout, images, test, resume, config_dir, log)
    if not result.ok:
        remove_empty(new)
    return result


def _run_job(
    cfg: Config,
    layout: ResultsLayout,
    images: list[Image] | None,
    test: list[Image] | None,
    resume: str | None,
    config_dir: str | Path | None,
    log: Log,
) -> JobResult:
    """:func:`run_job` itself."""
    from napari_ssl.data.images import DataError
    from napari_ssl.engine import distributed
    from napari_ssl.engine.checkpoints import CheckpointError, load_trained
    from napari_ssl.engine.resume import write_config_yamls
    from napari_ssl.engine.trainer import TrainingControl, train
    from napari_ssl.inference.evaluate import score_trained

    main = distributed.is_main_process()  # under torchrun only rank 0 prints and tests
    if not main:
        log = _quiet
    result = JobResult(ok=True)
    try:
        cfg.validate()
        read_train, read_test = (
            cfg.train.enable and images is None,
            cfg.test.enable and test is None,
        )
        check_folders(cfg, train=read_train, test=read_test, config_dir=config_dir)
        cfg = absolute_data_paths(cfg)  # checkpoints and exports then work from any folder
        if read_test:
            test = folder_images(cfg, "test", config_dir)  # fail early, before hours of training
        if cfg.train.enable:
            images = images if images is not None else folder_images(cfg, "train", config_dir)
            control = TrainingControl()
            with _stop_on_ctrl_c(control, alone=not distributed.launched_by_torchrun()):
                for event in train(cfg, images, layout=layout, resume=resume, control=control):
                    if isinstance(event, ev.Failed):
                        return JobResult(False, event.message)
                    line = describe(event)
                    if line:
                        log(line)
                    if isinstance(event, ev.Stopped):
                        return JobResult(False, INTERRUPTED)
                    if isinstance(event, ev.Finished):
                        result.best_checkpoint = event.best_checkpoint
                        result.last_checkpoint = event.last_checkpoint
        distributed.shutdown()  # the other processes leave now; rank 0 tests alone
        if cfg.test.enable and test and main:
            path = _checkpoint_for_test(cfg, layout, result)
            log(f"testing {len(test)} image(s) with {Path(path).name}")
            trained = load_trained(path)
            if not cfg.train.enable:  # a training run wrote them as it started
                write_config_yamls(cfg, layout)
            result.metrics = score_trained(trained, cfg, layout, test, log)
            log("test mean: " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
    except (DataError, CheckpointError, ValueError) as err:
        return JobResult(False, str(err))
    finally:
        distributed.shutdown()
    log(f"results in {layout.root}")
    return result


INTERRUPTED = "interrupted (Ctrl-C): training stopped and saved, no test step"
STOPPING = "\nstopping after this step (Ctrl-C again to quit at once)\n"


@contextlib.contextmanager
def _stop_on_ctrl_c(control: TrainingControl, alone: bool) -> Iterator[None]:
    """The first Ctrl-C stops training after its step (the last checkpoint saved, resumable);
    a second one quits at once. Only for a single process run from the main thread (under
    torchrun every process gets the signal, and they must stop at the same step)."""
    if not alone or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        control.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.write(sys.stderr.fileno(), STOPPING.encode())  # no print: not safe in a handler

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _checkpoint_for_test(cfg: Config, layout: ResultsLayout, result: JobResult) -> str:
    """This job's best (else last) checkpoint; without training, PATHS.CHECKPOINT_FILE first."""
    if not cfg.train.enable and cfg.model.checkpoint_file:
        return cfg.model.checkpoint_file
    saved = (layout.best_checkpoint, layout.last_checkpoint)
    for candidate in (result.best_checkpoint, result.last_checkpoint, *map(str, saved)):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ValueError(
        f"TEST.ENABLE is set but there is no checkpoint to test: this run has none "
        f"({layout.best_checkpoint.name} or -last.pth in {layout.checkpoints_dir}; give the "
        "--name and --run_id of the run that trained). Or enable TRAIN.ENABLE, or set "
        "MODEL.LOAD_CHECKPOINT: True and PATHS.CHECKPOINT_FILE to the checkpoint to test."
    )


def exit_code(result: JobResult) -> int:
    """0 for a job that went through; else 1, with its error printed once, on stderr."""
    if not result.ok:
        print(f"napari-ssl: {result.message}", file=sys.stderr)
    return 0 if result.ok else 1
