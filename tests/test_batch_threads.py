"""BatchThreads: a batch split into contiguous chunks, run on a thread pool, errors not lost."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embodied.sim.batch_threads import BatchThreads


@given(n=st.integers(0, 5000), threads=st.integers(1, 8), min_per_thread=st.integers(1, 16))
def test_chunks_tile_the_batch_in_order(n: int, threads: int, min_per_thread: int) -> None:
    pool = BatchThreads(threads, min_per_thread)
    chunks = pool.chunks(n)
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    assert len(chunks) <= threads and (len(chunks) == 1 or all(b - a >= min_per_thread for a, b in chunks))


def test_run_covers_every_item_once_and_uses_the_pool() -> None:
    pool = BatchThreads(3, 1)
    seen: list[tuple[int, int, int, str]] = []
    lock = threading.Lock()

    def work(k: int, a: int, b: int) -> None:
        with lock:
            seen.append((k, a, b, threading.current_thread().name))

    pool.run(10, work)
    assert sorted((k, a, b) for k, a, b, _ in seen) == [(0, 0, 3), (1, 3, 7), (2, 7, 10)]
    caller = [name for k, *_, name in seen if k == 0]
    assert caller == [threading.current_thread().name]  # chunk 0 on the calling thread
    pool.run(1, work)  # one item: one chunk, no hand-off
    assert seen[-1][:3] == (0, 0, 1)


def test_a_failing_chunk_raises_after_every_chunk_finished() -> None:
    pool = BatchThreads(2, 1)
    done: list[int] = []

    def work(k: int, a: int, b: int) -> None:
        if k == 1:
            raise RuntimeError("chunk 1 broke")
        done.append(k)

    with pytest.raises(RuntimeError, match="chunk 1 broke"):
        pool.run(4, work)
    assert done == [0]


def test_cuda_runs_one_chunk_and_bad_settings_raise() -> None:
    assert BatchThreads(8, 1, device="cuda").chunks(100) == [(0, 100)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an int >= 1"):
            BatchThreads(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_per_thread must be an int >= 1"):
        BatchThreads(2, 0)
