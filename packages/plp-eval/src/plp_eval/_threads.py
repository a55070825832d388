"""The process's thread pools (BLAS, OpenMP), and blocks of queries ranked one worker per core."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["BLOCK", "map_blocks", "num_workers", "single_threaded_blas", "thread_controller"]

Buffers = TypeVar("Buffers")
# Query rows in flight (all workers together): extra memory is about BLOCK x gallery x 5 bytes
# (float32 scores and a candidate mask).
BLOCK = 256


def num_workers() -> int:
    """Cores this process may use (at most 8: each worker holds a block of scores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


@functools.cache
def thread_controller() -> Any:
    """Return threadpoolctl's controller of the loaded BLAS and OpenMP libraries (cached).

    Looking the libraries up takes milliseconds; limiting them (``.limit(limits=1)``) keeps
    memory-bound numpy work from spinning threads on a busy machine.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_BLAS_LOCK = threading.Lock()
_blas_users: list[Any] = []  # [the limiter] while any call holds BLAS to one thread


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Hold BLAS to one thread while any caller is inside (the limit is process-wide).

    Counted, so that two threads ranking at once do not undo each other's limit, and the
    last one out restores the user's setting.
    """
    with _BLAS_LOCK:
        if not _blas_users:
            limiter = thread_controller().limit(limits=1, user_api="blas")
            _blas_users.append(limiter)
        else:
            _blas_users.append(_blas_users[0])
    try:
        yield
    finally:
        with _BLAS_LOCK:
            limiter = _blas_users.pop()
            if not _blas_users:
                limiter.restore_original_limits()


def map_blocks(
    rows: range,
    make_buffers: Callable[[int], Buffers],
    rank: Callable[[int, int, Buffers], np.ndarray],
) -> np.ndarray:
    """Return the per-query values of query ``rows``, block by block on the worker threads.

    ``rank(start, stop, buffers)`` returns the ``(stop - start, VALUES)`` values of queries
    ``start:stop``; ``buffers`` come from ``make_buffers(block_rows)`` (scores of up to
    ``block_rows`` queries, say), one set per worker, reused: memory does not grow with the
    number of queries.
    """
    workers = num_workers()
    block_rows = max(BLOCK // workers, 32)
    starts = range(rows.start, rows.stop, block_rows)
    if len(starts) == 0:
        from plp_eval._match_ranks import VALUES  # (it imports this module's users)

        return np.zeros((0, VALUES))
    sets: queue.SimpleQueue[Buffers] = queue.SimpleQueue()
    for _ in range(min(workers, len(starts))):
        sets.put(make_buffers(min(block_rows, len(rows))))

    def run(start: int) -> np.ndarray:
        buffers = sets.get()
        try:
            return rank(start, min(start + block_rows, rows.stop), buffers)
        finally:
            sets.put(buffers)

    if len(starts) == 1:  # one block: no thread to start, BLAS keeps its threads
        return run(starts[0])
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(run, starts)))
