"""Background work for the docks: worker sessions (training), a progress relay, the device probe.

Training runs the engine's event generator in a napari ``GeneratorWorker``; only the small
events cross threads. Pause / resume / stop go through the engine's ``TrainingControl`` (honoured
at step boundaries), not through the worker, so a stop always ends with the engine's own
``Stopped`` event and a complete last checkpoint. When napari closes its window it cancels its
registered tasks by calling ``worker.quit()``: a :class:`StoppableWorker` turns that into a clean
stop (the Train dock's) or a cancel (the Reconstruct dock's) and waits for its thread to end.
:meth:`WorkerSession.shutdown` does the same for a dock: removed, it stops its work without
waiting; with the viewer closing, it stops and waits. torch is imported only inside the worker
thread or at Start.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from napari_ssl.engine import events as ev
from napari_ssl.results import remove_empty
from napari_ssl.widgets.gui_collection import held, holding

STOP_TIMEOUT_S = 120.0  # longest wait for the engine to reach a step boundary and save
RELAY_MIN_S = 0.25  # shortest time between two progress signals
PROBE_POLL_MS = 100  # how often the GUI looks whether the device probe is done


def plain_error(err: BaseException) -> str:
    """A user-facing message for an unexpected exception (out of memory gets its fix)."""
    text = str(err) or type(err).__name__
    if isinstance(err, ValueError):  # our DataError / ConfigError / CheckpointError: plain already
        return text
    if "out of memory" in text.lower():
        return (
            "Out of GPU memory: lower the batch size or the patch size, or choose a smaller model "
            "(or the CPU), then start again."
        )
    return f"{type(err).__name__}: {text}"


def _events(
    kwargs: dict[str, Any], control: Any, done: threading.Event, release: Callable[[], None]
) -> Iterator[ev.Event]:
    """The engine's events; on any end (also an abandoned worker) the engine is stopped cleanly.
    A run that fails removes the run folders it made and left empty (as the CLI's).

    ``release`` gives garbage collection back (:mod:`~napari_ssl.widgets.gui_collection`): the
    GUI thread then collects the engine's garbage and empties the GPU cache.
    """
    new, failed, last = [], False, None
    kwargs = dict(kwargs)
    test = kwargs.pop("test", None)  # a dataset folder's test images: scored after training
    try:
        new = kwargs["layout"].missing_folders()
        from napari_ssl.engine.trainer import train

        events = train(control=control, **kwargs)
        try:
            for event in events:  # not `yield from`: it would close `events` on exit
                failed = failed or isinstance(event, ev.Failed)
                last = event
                yield event
        finally:  # closed early: let the engine reach its step boundary and write its checkpoint
            control.stop()
            for _ in events:
                pass
        if test and isinstance(last, ev.Finished):
            from napari_ssl.inference.evaluate import score_test_images

            best = last.best_checkpoint or last.last_checkpoint
            yield from score_test_images(kwargs["cfg"], kwargs["layout"], test, best)
    except Exception as err:  # the engine reports its own errors as Failed; this is the rest
        failed = True
        yield ev.Failed(plain_error(err))
    finally:
        if failed:
            remove_empty(new)
        release()
        done.set()


_RETIRED: dict[int, Any] = {}  # shut-down workers whose threads may still run, by id


class StoppableWorker:
    """Mixin of a napari worker class: :meth:`quit` asks its work to end and waits for it.

    ``stop_work`` (set before the worker starts) tells the work to end soon: the engine's stop at
    the next step boundary, a reconstruction's cancel before the next tile. ``quit`` (napari calls
    it on its running tasks when its window closes) then waits, at most :data:`STOP_TIMEOUT_S`,
    until the thread has left ``run``: it emits nothing any more, and the process may exit.
    """

    stop_work: Callable[[], None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.began = threading.Event()  # the thread entered run()
        self.ended = threading.Event()  # ... and left it (every signal emitted)

    def run(self) -> None:
        self.began.set()
        try:
            super().run()
        finally:
            self.ended.set()

    def quit(self) -> None:
        self.stop_work()
        if self.began.is_set():  # not yet (queued to the pool): it ends at once when it runs
            self.ended.wait(STOP_TIMEOUT_S)


Slot = tuple[Any, Callable[..., Any]]  # (a signal of the worker, a slot connected to it)


class WorkerSession:
    """One worker at a time, whose connections to a dock can be cut at once (:meth:`shutdown`).

    A dock's removal (napari takes the widget out without deleting it) and the viewer's closing
    call :meth:`shutdown`: the work is told to stop, no signal reaches the dock any more, and the
    worker object stays alive until its thread has ended.
    """

    def __init__(self) -> None:
        self.worker: Any = None
        self._slots: tuple[Slot, ...] = ()
        self._ending: Any = None  # the worker last shut down (its thread may still run)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def launch(self, worker: StoppableWorker, *slots: Slot) -> None:
        """Connect ``slots`` (after the session's own ``finished``) and start ``worker``."""
        self._slots = ((worker.finished, self._finished), *slots)
        for signal, slot in self._slots:
            signal.connect(slot)
        self.worker = worker
        worker.start()

    def _finished(self) -> None:
        self.worker, self._slots = None, ()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the work; no signal reaches the dock any more. ``wait``: until its thread has
        ended (the viewer closing: napari's own close waits too); else the work ends on its
        own (a removed dock: the GUI goes on at once)."""
        worker, slots = self.worker, self._slots
        self._finished()
        if worker is not None:
            for signal, slot in slots:  # napari's own connections (its task list) stay
                with contextlib.suppress(TypeError, RuntimeError):  # a deleted dock's: gone
                    signal.disconnect(slot)
            _retire(worker)
            self._ending = worker
        ending = self._ending
        if ending is not None and not ending.ended.is_set():
            ending.quit() if wait else ending.stop_work()


def _retire(worker: StoppableWorker) -> None:
    """Keep ``worker`` alive until its thread has really ended: collecting its signals object
    while the runnable still emits aborts the process (the slot holds its id, not the worker: no
    reference cycle through Qt, which Python could not collect)."""
    for key in [key for key, old in _RETIRED.items() if old.ended.is_set()]:
        del _RETIRED[key]
    _RETIRED[id(worker)] = worker
    worker.finished.connect(partial(_RETIRED.pop, id(worker), None))


class TrainingWorker(StoppableWorker, GeneratorWorker):
    """The engine's event generator; ``quit`` stops the engine cleanly and waits for it."""

    control: Any
    done: threading.Event  # the engine stopped, wrote its checkpoint and gave collection back


class TrainingSession(WorkerSession):
    """One training at a time: start, pause, resume, stop, shut down (:meth:`shutdown`)."""

    def __init__(
        self,
        on_event: Callable[[ev.Event], None],
        on_done: Callable[[], None],
        on_ended: Callable[[], None],
    ) -> None:
        """``on_event``, ``on_done``: the dock's (cut by :meth:`shutdown`); ``on_ended``: called
        when the worker has finished, also after a shutdown (it must not use the dock)."""
        super().__init__()
        self._on_event = on_event
        self._on_done = on_done
        self._on_ended = on_ended

    @property
    def paused(self) -> bool:
        return self.worker is not None and self.worker.control.paused

    def start(self, **kwargs: Any) -> None:
        """Run ``train(**kwargs)`` in a worker (cfg, images, layout, resume, preview)."""
        if self.worker is not None:
            raise RuntimeError("a training is already running")
        from napari_ssl.engine.trainer import TrainingControl

        done = threading.Event()
        control = TrainingControl()
        with held() as release:
            worker = create_worker(
                _events,
                kwargs,
                control,
                done,
                release,
                _worker_class=TrainingWorker,
                _ignore_errors=True,
            )
            worker.control, worker.done, worker.stop_work = control, done, control.stop
            worker.finished.connect(self._on_ended)
            self.launch(
                worker,
                (worker.yielded, self._on_event),
                (worker.errored, self._on_error),
                (worker.finished, self._on_done),
            )

    def _on_error(self, err: Exception) -> None:
        self._on_event(ev.Failed(plain_error(err)))

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.control.pause()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.control.resume()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.control.stop()


class ProgressRelay(QObject):
    """Carries ``progress(done, total)`` calls from a worker thread to the GUI thread.

    At most one emit every :data:`RELAY_MIN_S` (the last call, ``done == total``, always goes).
    """

    progressed = Signal(int, int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._last = -math.inf

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done >= total or now - self._last >= RELAY_MIN_S:
            self._last = now
            self.progressed.emit(int(done), int(total))


def probe_devices() -> list[tuple[str, str]]:
    """Device choices, loading torch and the engine (run it in a worker)."""
    import napari_ssl.engine.trainer  # noqa: F401 - load torch and the engine before Start
    from napari_ssl.engine.device import available_devices

    return available_devices()


def start_device_probe(parent: QObject, on_done: Callable[[list[tuple[str, str]]], None]) -> None:
    """Run :func:`probe_devices` in a plain thread; ``on_done(choices)`` runs on the GUI thread.

    Not a napari worker: Python joins a plain thread before it exits, whereas a QThreadPool worker
    that ends after its signals object was collected aborts the exiting process. The thread never
    touches Qt; a timer owned by ``parent`` polls its result (and dies with ``parent``).
    """
    future: Future = Future()

    def probe() -> None:
        try:
            future.set_result(probe_devices())
        except Exception as err:  # torch failing to load: keep 'auto', say why
            future.set_exception(err)

    with holding(probe) as run:
        threading.Thread(target=run, name="napari-ssl-device-probe").start()
    timer = QTimer(parent, interval=PROBE_POLL_MS)

    def poll() -> None:
        if not future.done():
            return
        timer.stop()
        timer.deleteLater()
        if future.exception() is None:
            on_done(future.result())
        else:
            from napari.utils.notifications import show_warning

            show_warning(f"Could not list the devices ({plain_error(future.exception())}).")

    timer.timeout.connect(poll)
    timer.start()
