"""The Data dock's previews, computed off the GUI thread on crops read once.

A preview job reads a crop of a layer (around where the viewer looks, :func:`view_centre`) and,
for crappify, the whole image's range, then degrades or masks the crop. Both reads are kept per
layer (weakly: they go with the layer) under what they are of (the layer's data, its axes, the
crop or the clipping), so a parameter change only redoes the pretext on the kept crop. One job
runs at a time, in a worker thread that never touches Qt (a timer polls it); a new request
replaces the waiting jobs, and the running one's output is dropped (its reads are kept). A small
crop needing no read of a lazy array is done at once on the GUI thread (once torch, which the
pretexts use, has been imported: its import is left to the worker thread).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
from napari.layers import Image as ImageLayer
from qtpy.QtCore import QObject, QTimer

from napari_ssl.config import Config
from napari_ssl.data.images import Image
from napari_ssl.pretext import preview
from napari_ssl.widgets import _layers
from napari_ssl.widgets.gui_collection import holding

INLINE_MAX = 1 << 20  # values of a crop at hand previewed on the GUI thread (~0.1 s at most)
POLL_MS = 50  # how often the GUI looks whether the running job is done
Region = tuple[slice, ...]


@dataclass(frozen=True)
class PreviewJob:
    """One layer's preview as asked for (made on the GUI thread; ``image`` is not read)."""

    layer: ImageLayer
    image: Image
    region: Region
    cfg: Config
    data_key: tuple[Any, ...]  # what the image is of: (id of the layer's data, ndim, channel axis)
    live: bool  # after a parameter change (not the Preview button)

    @property
    def channel_axis(self) -> int | None:
        return self.data_key[2]

    @property
    def crop_key(self) -> tuple[Any, ...]:
        return (*self.data_key, self.region)

    @property
    def range_key(self) -> tuple[Any, ...] | None:
        """What the whole image's range depends on; None: the pretext does not use it."""
        crappify = self.cfg.pretext.task == "crappify"
        return (*self.data_key, self.cfg.data.percentile_clip) if crappify else None

    @property
    def size(self) -> int:
        return self.image.channels * math.prod(r.stop - r.start for r in self.region)


Outcome = tuple[np.ndarray, tuple[float, float] | None, np.ndarray | Exception]


def _compute(
    job: PreviewJob, crop: np.ndarray | None, whole: tuple[float, float] | None
) -> Outcome:
    """The crop and range (read unless given), and the preview or why the pretext refused."""
    if crop is None:
        crop = job.image.read(job.region)
    if whole is None and job.range_key is not None:
        whole = preview.data_range(job.image, job.cfg.data.percentile_clip)
    try:
        return crop, whole, preview.apply_pretext(crop, job.cfg, whole)
    except ValueError as err:  # e.g. a crop smaller than a token: the reads are still kept
        return crop, whole, err


class PreviewRunner(QObject):
    """Runs :class:`PreviewJob` s one at a time: ``deliver(job, out)`` or ``fail(job, error)``
    on the GUI thread, for the latest request only."""

    def __init__(
        self,
        parent: QObject,
        deliver: Callable[[PreviewJob, np.ndarray], None],
        fail: Callable[[PreviewJob, BaseException], None],
    ) -> None:
        super().__init__(parent)
        self._deliver, self._fail = deliver, fail
        self._crops: WeakKeyDictionary = WeakKeyDictionary()  # layer: (crop key, crop)
        self._ranges: WeakKeyDictionary = WeakKeyDictionary()  # layer: (range key, range)
        self._waiting: list[PreviewJob] = []
        self._running: tuple[PreviewJob, Future] | None = None
        self._stale = False  # the running job's output is not wanted any more
        executor = self._executor = ThreadPoolExecutor(1, thread_name_prefix="napari-ssl-preview")
        self.destroyed.connect(lambda *_: executor.shutdown(wait=False))
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def busy(self) -> bool:
        """Whether a job of the latest request is waiting or running."""
        return bool(self._waiting) or (self._running is not None and not self._stale)

    def kept_region(self, layer: ImageLayer, data_key: tuple[Any, ...]) -> Region | None:
        """The crop kept for ``layer`` when it is of ``data_key`` (same data and axes)."""
        kept = self._crops.get(layer)
        return kept[0][-1] if kept is not None and kept[0][:-1] == data_key else None

    def submit(self, jobs: list[PreviewJob]) -> None:
        """Run ``jobs`` in order instead of what was asked before."""
        self._waiting = list(jobs)
        self._stale = self._running is not None
        self._next()

    def _kept(self, cache: WeakKeyDictionary, layer: ImageLayer, key: Any) -> Any:
        kept = cache.get(layer)
        return kept[1] if kept is not None and key is not None and kept[0] == key else None

    def _next(self) -> None:
        while self._running is None and self._waiting:
            job = self._waiting.pop(0)
            crop = self._kept(self._crops, job.layer, job.crop_key)
            whole = self._kept(self._ranges, job.layer, job.range_key)
            in_memory = isinstance(_layers.layer_data(job.layer), np.ndarray)
            needs_range = whole is None and job.range_key is not None
            reads = job.image.channels * math.prod(job.image.spatial_shape) if needs_range else 0
            at_hand = (crop is not None or in_memory) and (not needs_range or in_memory)
            small = max(job.size, reads) <= INLINE_MAX  # the whole range is read too
            if at_hand and small and _torch_loaded():  # its import takes a second
                try:
                    outcome = _compute(job, crop, whole)
                except Exception as err:  # reported as from the thread
                    self._fail(job, err)
                else:
                    self._finish(job, outcome)
                continue
            with holding(_compute) as compute:
                self._running = (job, self._executor.submit(compute, job, crop, whole))
            self._stale = False
            self._timer.start()

    def _forget(self, event: Any) -> None:
        self._crops.pop(event.source, None)
        self._ranges.pop(event.source, None)

    def _poll(self) -> None:
        if self._running is None or not self._running[1].done():
            return
        self._timer.stop()
        (job, future), self._running = self._running, None
        stale, self._stale = self._stale, False
        try:
            outcome = future.result()
        except Exception as err:  # a failed read (or pretext): nothing kept
            if not stale:
                self._fail(job, err)
        else:
            self._finish(job, outcome, stale)
        finally:  # the waiting jobs run whatever the slots did
            self._next()

    def _finish(self, job: PreviewJob, outcome: Outcome, stale: bool = False) -> None:
        crop, whole, out = outcome
        if job.data_key[0] == id(_layers.layer_data(job.layer)):  # not replaced meanwhile
            job.layer.events.data.connect(self._forget)  # once: then what was read goes
            self._crops[job.layer] = (job.crop_key, crop)
            if whole is not None:
                self._ranges[job.layer] = (job.range_key, whole)
        if stale:
            return
        if isinstance(out, Exception):
            self._fail(job, out)
        else:
            self._deliver(job, out)


def _torch_loaded() -> bool:
    """Whether torch is imported, not being imported (by the Train dock's device probe: the
    GUI thread would wait for that import to end)."""
    torch = sys.modules.get("torch")
    return torch is not None and not getattr(torch.__spec__, "_initializing", False)


def view_centre(viewer: Any, layer: ImageLayer, channel_axis: int | None) -> tuple[float, ...]:
    """Where the viewer looks, in ``layer``'s pixels along its spatial axes: the current slice
    on the axes not displayed, the camera's centre on those displayed."""
    point = np.asarray(viewer.dims.point, dtype=float)
    displayed = list(viewer.dims.displayed)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari < 0.9
    point[displayed] = np.asarray(camera.center, dtype=float)[-len(displayed) :]
    return _layers.spatial(layer.world_to_data(point), layer, channel_axis)


def inside(region: Region, centre: tuple[float, ...]) -> bool:
    """Whether the pixel at ``centre`` lies in ``region``."""
    return all(r.start <= round(c) < r.stop for r, c in zip(region, centre, strict=True))


def where_text(name: str, region: Region, shape: tuple[int, ...], limits: tuple[int, ...]) -> str:
    """Where a cropped preview lies, for the dock ('' when it covers the whole image)."""
    if all(r.stop - r.start == s for r, s in zip(region, shape, strict=True)):
        return ""
    axes = "ZYX"[-len(shape) :]
    spans = ", ".join(f"{a} {r.start}–{r.stop - 1}" for a, r in zip(axes, region, strict=True))
    return (
        f"Preview of '{name}': {spans} of {' × '.join(map(str, shape))}, around the current view "
        f"(at most {' × '.join(map(str, limits))} are previewed)."
    )
