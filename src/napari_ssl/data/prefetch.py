"""Background reading of lazy patches: the next batches are read while the model trains.

``SYSTEM.NUM_WORKERS`` reader threads (not processes: waiting on storage and decompressing release
the interpreter, and lazy images are costly to pickle) read the patches of a batch in parallel, at
most :data:`PREFETCH_DEPTH` batches ahead. The random positions are still drawn in the training
thread, in the same order, so the batches do not depend on the number of threads.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from napari_ssl.data.sampling import PatchSampler

PREFETCH_DEPTH = 2  # batches read ahead of the one in use
AUTO_THREADS = 4  # the most threads SYSTEM.NUM_WORKERS -1 (automatic) starts


def reader_threads(num_workers: int) -> int:
    """Reader threads for ``SYSTEM.NUM_WORKERS``: -1 (automatic) is min(4, CPUs), 0 none."""
    if num_workers < 0:
        return min(AUTO_THREADS, os.cpu_count() or 1)
    return num_workers


@dataclass(frozen=True)
class Draw:
    """One batch's random choices (drawn in the training thread) and the RNG state before them."""

    regions: tuple[int, ...]  # index into the sampler's regions, per patch
    starts: tuple[tuple[int, ...], ...]  # patch corner relative to its region, per patch
    rng_state: dict[str, Any]


@dataclass
class _Pending:
    draw: Draw
    out: torch.Tensor
    reads: list[Future[None]]


class Prefetcher:
    """Reads ``sampler``'s upcoming batches in ``threads`` threads; :meth:`close` ends them."""

    def __init__(self, sampler: PatchSampler, threads: int, depth: int = PREFETCH_DEPTH) -> None:
        self.sampler = sampler
        self.depth = depth
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="napari-ssl-reader")
        self.queue: deque[_Pending] = deque()

    def next(self, n: int) -> tuple[torch.Tensor, Draw]:
        """The next batch of ``n`` patches (host float32) and its draw.

        A reader's exception is raised here, in the training thread, when its batch is due.
        """
        if self.queue and len(self.queue[0].draw.regions) != n:
            self._rewind()  # another batch size: draw again from the first unused state
        while len(self.queue) <= self.depth:
            self.queue.append(self._submit(n))
        batch = self.queue.popleft()
        for read in batch.reads:
            read.result()
        return batch.out, batch.draw

    def rng_state(self) -> dict[str, Any]:
        """The sampler's RNG state as of the batches handed out (before those read ahead)."""
        return self.queue[0].draw.rng_state if self.queue else self.sampler.rng.bit_generator.state

    def close(self) -> None:
        """Drop the batches read ahead (the RNG goes back to before them) and end the threads."""
        self._rewind()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, n: int) -> _Pending:
        """Draw the next batch here and queue the reading of its patches."""
        draw = self.sampler.draw(n)
        out = self.sampler.empty_batch(n)
        view = out.numpy()
        reads = [self.pool.submit(self.sampler.read_into, view, i, draw) for i in range(n)]
        return _Pending(draw, out, reads)

    def _rewind(self) -> None:
        """Forget the batches read ahead and put the RNG back to before them."""
        if not self.queue:
            return
        for pending in self.queue:
            for read in pending.reads:
                read.cancel()
        self.sampler.rng.bit_generator.state = self.queue[0].draw.rng_state
        self.queue.clear()
