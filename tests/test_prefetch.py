"""Reader threads for lazy images (``SYSTEM.NUM_WORKERS``): the same batches whatever their
number, resumable, a bounded read-ahead, read errors raised in the training thread, no thread
left behind and a note for large images only, on real SEM crops stored as zarr, memory-mapped
``.npy`` and dask."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_ssl.config import Config
from napari_ssl.data import sampling
from napari_ssl.data.folders import load_image
from napari_ssl.data.images import Image, as_image
from napari_ssl.data.prefetch import PREFETCH_DEPTH
from napari_ssl.data.sampling import PatchSampler, split_regions
from napari_ssl.engine import events as ev
from napari_ssl.engine.trainer import TrainingControl, train
from napari_ssl.results import ResultsLayout
from test_data import CountingArray
from test_training import (  # shared helpers and fixtures
    no_charts,  # noqa: F401
    of_type,
    one_thread,  # noqa: F401
    run_events,
    sem_crops,
    step_losses,
    tiny_config,
)

zarr = pytest.importorskip("zarr")
CPU = torch.device("cpu")
PATCH = (32, 32)


def zarr_sem(sem_2d: np.ndarray, path: Path) -> Image:
    """A 160x160 crop of the SEM image as a compressed, chunked zarr array, opened lazily."""
    zarr.create_array(str(path), data=sem_2d[:160, :160], chunks=(48, 48))
    return load_image(path, ndim=2)


def npy_sem(sem_2d: np.ndarray, path: Path) -> Image:
    """The same crop as a memory-mapped ``.npy`` file."""
    np.save(path, sem_2d[:160, :160])
    return load_image(path, ndim=2)


def config(workers: int, **train_values: object) -> Config:
    cfg = tiny_config(**train_values)
    cfg.system.num_workers = workers
    return cfg


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("napari-ssl-reader")]


def sampled(sampler: PatchSampler, sizes: list[int]) -> list[tuple[Any, ...]]:
    """(batch, image indices, sampler state after it) for each batch size."""
    out = []
    for n in sizes:
        batch, index = sampler.sample(n)
        out.append((batch, index, sampler.rng_state()))
    return out


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_and_sampler_state_do_not_depend_on_reader_threads(
    sem_2d: np.ndarray, tmp_path: Path, threads: int
) -> None:
    image = zarr_sem(sem_2d, tmp_path / "sem.zarr")
    regions = split_regions([image], 0.1, PATCH)[0]
    sizes = [3, 4, 4, 4, 2, 4]  # a new batch size drops the batches read ahead
    plain = PatchSampler([image], regions, PATCH, CPU, seed=3)
    assert not plain.on_device
    expected = sampled(plain, sizes)
    before = set(threading.enumerate())
    sampler = PatchSampler([image], regions, PATCH, CPU, seed=3)
    with sampler.prefetching(threads):
        got = sampled(sampler, sizes)
        assert 1 <= len(readers()) <= threads
    assert set(threading.enumerate()) <= before  # no dask thread pool left per reader either
    for (batch, index, state), (want, want_index, want_state) in zip(got, expected, strict=True):
        assert torch.equal(batch, want) and torch.equal(index, want_index)
        assert state == want_state  # as of the batches handed out, not those read ahead
    assert sampler.rng.bit_generator.state == plain.rng.bit_generator.state  # rewound on close


def test_reading_ahead_is_bounded(sem_2d: np.ndarray, tmp_path: Path) -> None:
    counting = CountingArray(npy_sem(sem_2d, tmp_path / "sem.npy").array)
    image = Image(counting, "sem")
    sampler = PatchSampler([image], split_regions([image], 0.1, PATCH)[0], PATCH, CPU)
    with sampler.prefetching(2):
        for _ in range(3):
            sampler.sample(4)
        expected = (3 + PREFETCH_DEPTH) * 4  # the batches used and PREFETCH_DEPTH more
        deadline = time.monotonic() + 30
        while len(counting.reads) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(counting.reads) == expected
    assert counting.reads == [32 * 32] * expected  # one patch per read


@pytest.mark.parametrize("workers", [-1, 2])
def test_training_on_lazy_data_is_the_same_with_reader_threads(
    sem_2d: np.ndarray, tmp_path: Path, workers: int
) -> None:
    image = zarr_sem(sem_2d, tmp_path / "sem.zarr")
    plain = run_events(config(0), [image], ResultsLayout(tmp_path, "plain", 1))
    threaded = run_events(config(workers), [image], ResultsLayout(tmp_path, "threaded", 1))
    assert len(step_losses(plain)) == 4 and step_losses(threaded) == step_losses(plain)
    assert isinstance(threaded[-1], ev.Finished) and not readers()
    assert of_type(threaded, ev.Epoch)[-1].val_loss == of_type(plain, ev.Epoch)[-1].val_loss
    assert Config().system.num_workers == -1  # automatic by default, as in BiaPy


@pytest.mark.parametrize("workers", [-1, 2])
def test_reader_threads_are_noted_for_large_images_only(
    sem_2d: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    da = pytest.importorskip("dask.array")
    image = as_image(da.from_array(sem_2d[:512, :512]), "dask", 2)  # lazy, small, in memory

    def started(name: str) -> ev.Started:
        events = train(config(workers), [image], layout=ResultsLayout(tmp_path, name, 1))
        first = next(events)
        events.close()
        return first

    assert not any("read ahead" in note for note in started("small").notes)
    monkeypatch.setattr(sampling, "IN_MEMORY_LIMIT", 512 * 4)  # the same image counts as large
    threads = min(4, os.cpu_count() or 1) if workers < 0 else workers
    note = f"large images: patches read ahead by {threads} threads (SYSTEM.NUM_WORKERS)"
    assert note in started("large").notes
    assert not readers()


def test_images_on_the_device_start_no_reader_threads(sem_2d: np.ndarray, tmp_path: Path) -> None:
    events = train(config(2), sem_crops(sem_2d), layout=ResultsLayout(tmp_path, "j", 1))
    started = next(events)
    assert not any("read ahead" in note for note in started.notes)
    seen = []
    for event in events:
        seen.append(event)
        assert not readers()
    assert isinstance(seen[-1], ev.Finished)


def test_resume_with_reader_threads_matches_an_uninterrupted_run(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    image = zarr_sem(sem_2d, tmp_path / "sem.zarr")
    whole = run_events(config(0, epochs=3), [image], ResultsLayout(tmp_path, "whole", 1))
    part = ResultsLayout(tmp_path, "part", 1)
    first = run_events(config(2, epochs=2), [image], part)
    rest = run_events(config(2, epochs=3), [image], part, resume=part.last_checkpoint)
    assert step_losses(first) + step_losses(rest) == step_losses(whole)
    assert of_type(rest, ev.Epoch)[-1].val_loss == of_type(whole, ev.Epoch)[-1].val_loss


def test_a_stopped_run_saves_the_sampler_state_of_the_batches_used_and_ends_its_threads(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    image = npy_sem(sem_2d, tmp_path / "sem.npy")
    run_events(config(2), [image], ResultsLayout(tmp_path, "warm", 1))
    before = set(threading.enumerate())
    saved = {}
    for workers in (0, 2):
        control = TrainingControl()
        layout = ResultsLayout(tmp_path, f"w{workers}", 1)
        for event in train(config(workers, epochs=3), [image], layout=layout, control=control):
            if isinstance(event, ev.Step) and event.step == 3:
                assert (1 <= len(readers()) <= 2) if workers else not readers()
                control.stop()  # mid-epoch 2
            if isinstance(event, ev.Stopped):
                assert not readers()  # ended before the run says it stopped
        assert isinstance(event, ev.Stopped) and event.step == 3
        saved[workers] = torch.load(event.last_checkpoint, weights_only=True)["train_state"]
        assert set(threading.enumerate()) <= before
    assert saved[2]["sampler_rng"] == saved[0]["sampler_rng"]


def test_closing_the_training_generator_ends_the_reader_threads(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    events = train(config(2), [npy_sem(sem_2d, tmp_path / "sem.npy")],
                   layout=ResultsLayout(tmp_path, "j", 1))  # fmt: skip
    for event in events:
        if isinstance(event, ev.Step):
            break
    assert readers()
    events.close()  # as the GUI does when its dock or the viewer closes
    assert not readers()


def test_a_read_error_in_a_reader_thread_is_raised_as_without_threads(
    sem_2d: np.ndarray, tmp_path: Path
) -> None:
    errors = {}
    for workers in (0, 2):
        path = tmp_path / f"w{workers}.zarr"
        events = train(config(workers), [zarr_sem(sem_2d, path)],
                       layout=ResultsLayout(tmp_path, f"w{workers}", 1))  # fmt: skip
        assert isinstance(next(events), ev.Started)
        for chunk in (path / "c").rglob("*"):  # the files go bad during training
            if chunk.is_file():
                chunk.write_bytes(b"not a compressed chunk")
        with pytest.raises(Exception) as info:
            list(events)
        errors[workers] = (type(info.value), str(info.value))
        assert not readers()
    assert errors[2] == errors[0]
