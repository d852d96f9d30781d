"""BiaPy-style results folder: layout, per-epoch CSV log, metrics CSV, atomic writes.

::

    <result_dir>/<name>/
      config_files/<name>.yaml
      checkpoints/<name>_<run_id>-checkpoint-{best,last}.pth
      checkpoints/normalization_{mean,std}_value.npy     (fixed normalisation values only)
      results/<name>_<run_id>/
        per_image/  MAE_checks/  charts/  aug/  train_logs/  tensorboard/
        test_results_metrics.csv

Charts (loss / metric curves, the model picture) are drawn by :mod:`napari_ssl.charts`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RESULT_DIR",
    "MAE_CHECK_KINDS",
    "ResultsLayout",
    "TrainLog",
    "append_train_log",
    "atomic_write",
    "check_plain_name",
    "make_tensorboard_writer",
    "next_run_id",
    "remove_empty",
    "safe_filename",
    "save_normalization_values",
    "write_metrics_csv",
]

DEFAULT_RESULT_DIR = Path.home() / "napari_ssl_results"  # the CLI's and the Train dock's
MAE_CHECK_KINDS = ("original", "masked", "reconstruction", "reconstruction_and_visible")
_FORBIDDEN = re.compile(r'[/\\:\x00-\x1f<>"|?*]')


def check_plain_name(value: str, what: str) -> str:
    """Return ``value`` if it is a plain file name (no separators, not ``..``), else raise."""
    text = str(value)
    plain = text.strip() and text not in (".", "..") and not _FORBIDDEN.search(text)
    if not plain or Path(text).is_absolute():
        raise ValueError(
            f"{what} {value!r} is not a plain name: use a name such as 'my_run' without path "
            "separators, '..', control characters or any of : < > \" | ? *"
        )
    return text


def next_run_id(result_dir: str | Path, name: str) -> int:
    """1 + the highest numeric run id of ``name`` with a checkpoint or a results folder."""
    root = Path(result_dir) / name
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)(?:-checkpoint-|$)")
    paths = [*(root / "checkpoints").glob("*"), *(root / "results").glob("*")]
    ids = [int(m.group(1)) for p in paths if (m := pattern.match(p.name))]
    return max(ids, default=0) + 1


def run_of_last_checkpoint(checkpoint: str | Path) -> ResultsLayout | None:
    """The run a ``<result_dir>/<name>/checkpoints/<name>_<run_id>-checkpoint-last.pth`` file is
    the last checkpoint of (continuing it goes on in that run), or None for another file."""
    path = Path(checkpoint)
    name = path.parent.parent.name
    found = re.fullmatch(rf"{re.escape(name)}_(.+)-checkpoint-last\.pth", path.name)
    if path.parent.name != "checkpoints" or found is None:
        return None
    try:
        return ResultsLayout(path.parent.parent.parent, name, found.group(1))
    except ValueError:  # not a plain run id
        return None


def safe_filename(text: str) -> str:
    """A file-name-safe version of a free-form label (layer names may hold '/', ':' ...)."""
    cleaned = _FORBIDDEN.sub("_", str(text)).strip(" .")
    return cleaned or "image"


@dataclass(frozen=True)
class ResultsLayout:
    """All paths of one run. ``name`` and ``run_id`` must be plain names (checked)."""

    result_dir: Path
    name: str
    run_id: str | int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "result_dir", Path(self.result_dir))
        object.__setattr__(self, "name", check_plain_name(self.name, "name"))
        object.__setattr__(self, "run_id", check_plain_name(str(self.run_id), "run_id"))
        base = self.result_dir.resolve()
        for path in (self.root, self.run_dir, self.best_checkpoint):
            if not path.resolve().is_relative_to(base):
                raise ValueError(f"{path} would be outside the result folder {base}")

    @property
    def tag(self) -> str:
        return f"{self.name}_{self.run_id}"

    @property
    def root(self) -> Path:
        return self.result_dir / self.name

    @property
    def config_dir(self) -> Path:
        return self.root / "config_files"

    @property
    def config_file(self) -> Path:
        return self.config_dir / f"{self.name}.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / f"{self.tag}-checkpoint-best.pth"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / f"{self.tag}-checkpoint-last.pth"

    def normalization_values(self, stat: str) -> Path:
        """BiaPy's ``checkpoints/normalization_{mean,std}_value.npy``."""
        return self.checkpoints_dir / f"normalization_{stat}_value.npy"

    @property
    def run_dir(self) -> Path:
        return self.root / "results" / self.tag

    @property
    def per_image_dir(self) -> Path:
        return self.run_dir / "per_image"

    @property
    def mae_checks_dir(self) -> Path:
        return self.run_dir / "MAE_checks"

    @property
    def charts_dir(self) -> Path:
        return self.run_dir / "charts"

    @property
    def aug_dir(self) -> Path:
        return self.run_dir / "aug"

    @property
    def train_logs_dir(self) -> Path:
        return self.run_dir / "train_logs"

    @property
    def train_log(self) -> Path:
        return self.train_logs_dir / f"{self.tag}_log.csv"

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "test_results_metrics.csv"

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard"

    @property
    def loss_chart(self) -> Path:
        return self.charts_dir / f"{self.tag}_loss.png"

    def metric_chart(self, metric: str) -> Path:
        return self.charts_dir / f"{self.tag}_{safe_filename(metric)}.png"

    @property
    def model_plot(self) -> Path:
        return self.charts_dir / f"model_plot_{self.tag}.png"

    def per_image(self, image_name: str) -> Path:
        return self.per_image_dir / f"{safe_filename(image_name)}.tif"

    def mae_check(self, image_name: str, kind: str) -> Path:
        if kind not in MAE_CHECK_KINDS:
            raise ValueError(f"MAE check kind must be one of {MAE_CHECK_KINDS}, got {kind!r}")
        return self.mae_checks_dir / f"{safe_filename(image_name)}_{kind}.tif"

    def aug(self, label: str) -> Path:
        return self.aug_dir / f"{safe_filename(label)}.tif"

    def make(self) -> ResultsLayout:
        """Create the folders every run uses (per_image/, MAE_checks/ and tensorboard/ appear
        when used)."""
        for d in (self.config_dir, self.checkpoints_dir, self.charts_dir, self.aug_dir,
                  self.train_logs_dir):  # fmt: skip
            d.mkdir(parents=True, exist_ok=True)
        return self

    def missing_folders(self) -> list[Path]:
        """The layout's folders that do not exist yet, the deepest first (for
        :func:`remove_empty` when a run fails)."""
        run = self.run_dir
        folders = [
            self.result_dir, self.root, self.config_dir, self.checkpoints_dir, run.parent, run,
            self.per_image_dir, self.mae_checks_dir, self.charts_dir, self.aug_dir,
            self.train_logs_dir, self.tensorboard_dir,
        ]  # fmt: skip
        return [folder for folder in reversed(folders) if not folder.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` that is (now) empty; keep the others as they are."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (after fsync),
    on failure it is removed, so ``path`` is either the old file or the complete new one.

    The new file has the mode a plain ``open()`` gives under the current umask, also when the
    writer makes its file private (safetensors' ``save_file`` writes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        with open(tmp, "xb") as probe:  # reading os.umask would change it for every thread
            mode = os.fstat(probe.fileno()).st_mode & 0o777
        tmp.unlink()
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TrainLog:
    """Per-epoch CSV log: ``epoch, train_loss, val_loss, <metrics...>, lr, seconds``.

    Opening an existing log keeps its rows. Appending epoch ``e`` first drops any rows of epochs
    ``>= e``: a new run (epoch 1) replaces an old log of the same run id, and a resumed run
    drops the epochs logged after the checkpoint it resumes from. New metric columns widen the
    header. Each row is flushed as it is written.
    """

    HEAD = ("epoch", "train_loss", "val_loss")
    TAIL = ("lr", "seconds")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fields: list[str] = []
        self.rows: list[dict[str, float]] = []
        if self.path.exists():
            self.fields, self.rows = _read_log(self.path)

    def append(self, row: Mapping[str, float | None]) -> None:
        """Write one epoch's row (``None`` values become empty cells)."""
        values = {k: _number(k, v) for k, v in row.items() if v is not None}
        if "epoch" not in values:
            raise ValueError(f"{self.path.name}: a log row needs an 'epoch', got {sorted(row)}")
        kept = [r for r in self.rows if r.get("epoch", 0) < values["epoch"]]
        fields = self._merge_fields(self.fields if kept else [], values)
        if kept != self.rows or fields != self.fields or not self.path.exists():
            self.rows, self.fields = kept, fields
            self._rewrite()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(values)
            f.flush()
        self.rows.append(values)

    def _merge_fields(self, fields: list[str], row: Mapping[str, float]) -> list[str]:
        fixed = self.HEAD + self.TAIL
        middle = [f for f in fields if f not in fixed]
        middle += sorted(k for k in row if k not in fixed and k not in middle)
        return [*self.HEAD, *middle, *self.TAIL]

    def _rewrite(self) -> None:
        with atomic_write(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(self.rows)


def save_normalization_values(
    layout: ResultsLayout, mean: Sequence[float] | None, std: Sequence[float] | None
) -> None:
    """Fixed normalisation values beside the checkpoints, as earlier BiaPy versions wrote them
    (``DATA.NORMALIZATION.TYPE: custom``; 3.7.1 neither writes nor reads them): ``np.save`` of a
    float64 scalar for one value, else of one value per channel. Without fixed values, those of
    an earlier run under the same name (the checkpoints folder is shared) are removed."""
    for stat, values in (("mean", mean), ("std", std)):
        path = layout.normalization_values(stat)
        if not values:
            path.unlink(missing_ok=True)
            continue
        data = np.asarray(values[0] if len(values) == 1 else values, dtype=np.float64)
        with atomic_write(path) as tmp:
            np.save(tmp, data)


def append_train_log(layout: ResultsLayout, row: Mapping[str, float | None]) -> None:
    """Append one epoch's row to the run's ``train_logs/<name>_<run_id>_log.csv``."""
    TrainLog(layout.train_log).append(row)


def _read_log(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k: _number(k, v) for k, v in r.items() if v not in ("", None)} for r in reader]
        return list(reader.fieldnames or []), rows


def _number(key: str, value: Any) -> float:
    return int(float(value)) if key == "epoch" else float(value)


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Per-image rows (e.g. ``image, psnr, ssim, mae, mse``) plus a final ``mean`` row: numeric
    columns are averaged, the first text column holds ``"mean"``."""
    if not rows:
        raise ValueError("no metric rows to write")
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    numeric = [k for k in fields if all(_is_number(r.get(k, 0.0)) for r in rows)]
    mean: dict[str, Any] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in numeric}
    label = next((k for k in fields if k not in numeric), None)
    if label is not None:
        mean[label] = "mean"
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow(mean)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def make_tensorboard_writer(layout: ResultsLayout) -> Any | None:
    """A ``SummaryWriter`` logging to ``tensorboard/``, or None when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    layout.tensorboard_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(layout.tensorboard_dir))
