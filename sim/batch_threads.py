"""Several CPU cores for one batched Warp kernel: contiguous chunks of the batch on a thread pool.

Warp runs a CPU kernel on one thread, but its CPU launches release the GIL, so the same kernel
launched on disjoint slices of a batch from several Python threads runs on several cores at
once. The tactile imager and the navigation ray caster split their batches this way::

    threads = BatchThreads(threads=None, min_per_thread=2, device="cpu")   # None: every usable core
    threads.run(num_images, lambda k, start, stop: launch_on(start, stop))  # chunk 0 on this thread

Handing a chunk to a pool thread and waiting for it costs about 0.2 ms on the 2-core CI machine
(a virtual one), so a batch is split only where every thread gets ``min_per_thread`` items.
On CUDA one launch already fills the device: everything runs as one chunk on the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells, else the CPU count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class BatchThreads:
    """Runs ``fn(k, start, stop)`` on contiguous chunks ``[start, stop)`` of a batch, one per thread."""

    def __init__(self, threads: int | None = None, min_per_thread: int = 1, device: str | torch.device = "cpu") -> None:
        if threads is not None and not _is_count(threads):
            raise ValueError(f"BatchThreads: threads must be an int >= 1 or None, got {threads!r}")
        if not _is_count(min_per_thread):
            raise ValueError(f"BatchThreads: min_per_thread must be an int >= 1, got {min_per_thread!r}")
        if torch.device(device).type != "cpu":
            threads = 1
        self.max_threads = usable_cores() if threads is None else threads
        self.min_per_thread = min_per_thread
        self._pool = ThreadPoolExecutor(self.max_threads - 1) if self.max_threads > 1 else None

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """The chunks a batch of ``n`` items is split into: as equal as integers allow."""
        count = max(1, min(self.max_threads, n // self.min_per_thread))
        bounds = [round(i * n / count) for i in range(count + 1)]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def run(self, n: int, fn: Callable[[int, int, int], None]) -> None:
        """``fn(k, start, stop)`` for every chunk ``k`` of ``n`` items; the first on the calling
        thread, the others on the pool; returns when all are done and re-raises the first error."""
        chunks = self.chunks(n)
        pending = [self._pool.submit(fn, k, a, b) for k, (a, b) in enumerate(chunks) if k] if self._pool else []
        try:
            fn(0, *chunks[0])
        finally:
            for job in pending:
                job.exception()  # wait for every chunk before anything can touch their outputs
        for job in pending:
            job.result()
