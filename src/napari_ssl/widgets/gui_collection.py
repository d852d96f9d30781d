"""Python's garbage collection kept on the GUI thread while napari-ssl's threads run.

The cyclic collector runs in whichever thread happens to allocate. In a training or reconstruction
thread it can destroy Qt objects that belong to the GUI thread (Qt aborts or crashes), and on
napari's heap (~0.5 M objects) one full collection holds the GIL for ~0.2 s, a frozen viewer.

So while any of our threads runs (:func:`held`, :func:`holding`): the objects alive at the start
are frozen (:func:`gc.freeze`: collections skip them, so a full one stays cheap), automatic
collection is off, and a timer on the GUI thread collects the generation that is due by the
interpreter's own thresholds. When the last holder has released, the timer collects once more
(the threads' garbage, GPU memory with it), unfreezes and gives collection back as it found it.
A layer removed meanwhile asks for one full collection (:func:`collect_everything_soon`).
``torch.compile`` calls ``gc.collect`` itself while it compiles, in the training thread.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from functools import wraps
from typing import ParamSpec, TypeVar

from qtpy.QtCore import QTimer

COLLECT_MS = 250  # how often the GUI thread collects while held
P = ParamSpec("P")
T = TypeVar("T")


class _Collection:
    """The process-wide state: how many holders, and the GUI-thread timer."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # a finalizer run by a collection may release
        self.holders = 0
        self.timer: QTimer | None = None
        self.was_enabled = True
        self.froze = False
        self.everything = False  # a full collection asked for (e.g. a layer was removed)

    def hold(self) -> Callable[[], None]:
        """GUI thread only. The returned ``release`` may be called from any thread, once."""
        with self.lock:
            self.holders += 1
            if self.timer is None:
                self.was_enabled = gc.isenabled()
                self.froze = gc.get_freeze_count() == 0  # someone else's freeze: leave it
                if self.froze:
                    gc.freeze()
                gc.disable()
                self.timer = QTimer(interval=COLLECT_MS)
                self.timer.timeout.connect(self.tick)
                self.timer.start()
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self.lock:
                self.holders -= 1

        return release

    def tick(self) -> None:
        """Collect what is due; after the last release, finish and restore."""
        with self.lock:
            finished = self.holders == 0
            timer = self.timer if finished else None
            if finished:
                self.timer = None
            everything, self.everything = self.everything, False
        if not finished:
            if everything and self.froze:  # objects alive at the start may be garbage now
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                return
            counts, thresholds = gc.get_count(), gc.get_threshold()
            due = [g for g in (2, 1, 0) if counts[g] > thresholds[g]]
            if due:
                gc.collect(due[0])
            return
        if timer is None:  # a late timeout after the restore
            return
        timer.stop()
        timer.deleteLater()
        try:
            gc.collect()  # only what was made while held: the rest is still frozen
        finally:
            if self.froze:
                gc.unfreeze()
            if self.was_enabled:
                gc.enable()
        torch = sys.modules.get("torch")
        with contextlib.suppress(Exception):  # e.g. a CUDA error that ended the run
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()

    def collect_everything_soon(self) -> None:
        """On the next tick, collect the frozen objects too (one full collection)."""
        self.everything = True

    @property
    def active(self) -> bool:
        return self.timer is not None


_COLLECTION = _Collection()


def hold() -> Callable[[], None]:
    """Keep collection on the GUI thread until the returned ``release()`` (call it from the GUI
    thread, when starting a thread of ours; ``release`` may run in that thread)."""
    return _COLLECTION.hold()


@contextlib.contextmanager
def held() -> Iterator[Callable[[], None]]:
    """:func:`hold` for a thread started inside the block, which calls the yielded ``release``
    when it ends; if the block raises (the thread did not start), released here."""
    release = hold()
    try:
        yield release
    except BaseException:
        release()
        raise


@contextlib.contextmanager
def holding(fn: Callable[P, T]) -> Iterator[Callable[P, T]]:
    """``fn`` wrapped to hold collection until it returns, for a thread started inside the block
    (released at once if the block raises)."""
    with held() as release:

        @wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        yield run


def collect_everything_soon() -> None:
    """While held: on the next tick, collect the objects frozen at the start too (one full
    collection, ~0.2 s on napari's heap). For a napari layer removed during a run: its data
    would otherwise stay in memory until the run ends."""
    _COLLECTION.collect_everything_soon()


def active() -> bool:
    """Whether collection is held on the GUI thread now (until the next tick after release)."""
    return _COLLECTION.active
