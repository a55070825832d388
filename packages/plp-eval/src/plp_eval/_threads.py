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

__all__ = [
    "MEMORY",
    "ROWS",
    "even_rows",
    "in_chunks",
    "map_blocks",
    "num_workers",
    "rows_per_worker",
    "single_threaded_blas",
    "thread_controller",
]

Buffers = TypeVar("Buffers")
# Query rows of a worker's block. BLAS packs the whole gallery once per block, so smaller
# blocks read it more often: per query, 128 rows cost ~20% more matmul time than 512 on two
# cores (bench/README.md); more than 512 gains little.
ROWS = 512
# Bytes of blocks in flight, all workers together (fewer rows per worker past it).
MEMORY = 1 << 29


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


def in_chunks(size: int, chunk: int, work: Callable[[int, int], object]) -> None:
    """Call ``work(begin, end)`` over ``range(size)`` in chunks, on the workers if several.

    For numpy work that releases the GIL (copies, arithmetic) on disjoint outputs: each worker
    takes one contiguous share and goes through it chunk by chunk (a task per chunk would
    spend more on handing tasks over than a small chunk costs).
    """
    workers = min(num_workers(), -(-size // chunk))

    def share(part: int) -> None:
        stop = size * (part + 1) // workers
        for begin in range(size * part // workers, stop, chunk):
            work(begin, min(begin + chunk, stop))

    if workers <= 1:
        if size:
            share(0)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(share, range(workers)))


def rows_per_worker(row_bytes: int, workers: int | None = None) -> int:
    """Query rows of each worker's block: :data:`ROWS`, or fewer, at least 32.

    Fewer where the blocks of all workers would hold more than :data:`MEMORY` bytes
    (``row_bytes`` per row).

    Example:
        >>> rows_per_worker(100_000 * 5, workers=2), rows_per_worker(1_000_000 * 5, workers=8)
        (512, 32)
    """
    workers = num_workers() if workers is None else workers
    return max(32, min(ROWS, MEMORY // max(workers * row_bytes, 1)))


def even_rows(num_rows: int, most: int, workers: int) -> int:
    """Rows per block, at most ``most``, so that the workers get (nearly) equal shares.

    The number of blocks is a multiple of ``workers`` (10,000 queries, 512 at most, two
    workers: 20 blocks of 500, not 19 of 512 and one of 272, which leaves one worker idle).

    Example:
        >>> even_rows(10_000, 512, 2), even_rows(300, 512, 2), even_rows(40, 512, 4)
        (500, 150, 32)
    """
    blocks = -(-num_rows // max(most, 1))
    blocks = -(-blocks // workers) * workers
    return max(min(32, most), -(-num_rows // max(blocks, 1)))


def map_blocks(
    rows: range,
    row_bytes: int,
    make_buffers: Callable[[int], Buffers],
    rank: Callable[[int, int, Buffers], np.ndarray],
) -> np.ndarray:
    """Return the per-query values of query ``rows``, block by block on the worker threads.

    ``rank(start, stop, buffers)`` returns the ``(stop - start, VALUES)`` values of queries
    ``start:stop``; ``buffers`` come from ``make_buffers(block_rows)`` (scores of up to
    ``block_rows`` queries, ``row_bytes`` a query), one set per worker, reused: memory does not
    grow with the number of queries (:func:`rows_per_worker`).
    """
    workers = num_workers()
    block_rows = even_rows(len(rows), rows_per_worker(row_bytes, workers), workers)
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
