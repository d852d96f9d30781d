"""Garbage collection held on the GUI thread: restored on every path, frozen garbage freed."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch

from napari_ssl.widgets import gui_collection

pytestmark = pytest.mark.gui


class _Cycle:
    """Garbage only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self
        self.data = bytearray(1 << 20)


@pytest.fixture(autouse=True)
def _settled(qtbot) -> None:
    """An earlier test's run may still be giving collection back: start once it has."""
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=10_000)


def _restored(enabled: bool) -> bool:
    return not gui_collection.active() and gc.isenabled() == enabled and gc.get_freeze_count() == 0


def test_collection_is_restored_even_when_the_gpu_cache_fails(qtbot, monkeypatch) -> None:
    def broken() -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", broken)
    enabled = gc.isenabled()
    release = gui_collection.hold()
    assert not gc.isenabled() and gc.get_freeze_count() > 0
    worker = threading.Thread(target=release)  # released from the worker thread, as runs do
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=5_000)
    assert _restored(enabled)


def test_a_full_collection_frees_what_was_frozen(qtbot) -> None:
    enabled = gc.isenabled()
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    release = gui_collection.hold()
    del cycle  # garbage now, but frozen: the held collections skip it
    qtbot.wait(600)
    assert alive() is not None
    gui_collection.collect_everything_soon()
    qtbot.waitUntil(lambda: alive() is None, timeout=5_000)
    assert gui_collection.active() and gc.get_freeze_count() > 0  # still held, frozen again
    release()
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=5_000)
    assert _restored(enabled)


def test_removing_a_layer_during_a_run_asks_for_a_full_collection(qtbot, viewer, docks) -> None:
    layer = viewer.add_image(torch.zeros(64, 64).numpy(), name="big")
    alive = weakref.ref(layer)
    release = gui_collection.hold()
    try:
        viewer.layers.remove(layer)
        del layer
        qtbot.waitUntil(lambda: alive() is None, timeout=5_000)
    finally:
        release()
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=5_000)


def test_a_thread_that_fails_to_start_gives_collection_back(qtbot) -> None:
    enabled = gc.isenabled()
    ran = []
    failed = pytest.raises(RuntimeError, match="can't start new thread")
    with failed, gui_collection.holding(lambda: ran.append(1)) as run:
        assert not gc.isenabled()
        raise RuntimeError("can't start new thread")  # as Thread.start says, out of threads
    qtbot.waitUntil(lambda: not gui_collection.active(), timeout=5_000)
    assert _restored(enabled) and not ran
    run()  # a late call of the wrapper does not release a second time
    assert gui_collection._COLLECTION.holders == 0
