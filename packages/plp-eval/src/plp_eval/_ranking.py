"""Re-ID ranking metrics (CMC, mAP, mINP, precision@1, R-precision, MAP@R), exact, by blocks."""

from __future__ import annotations

import functools
import os
import queue
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from plp_core import DEFAULT_MAX_RANK, unknown_choice
from plp_eval._arrays import as_labels
from plp_eval._distributed import gather_values, share
from plp_eval._errors import PlpEvalError
from plp_eval._junk import junk_keys
from plp_eval._match_ranks import VALUES, ReidMetrics, query_values, summarize
from plp_eval._numpy_ranking import SMALL, TooManyTiesError, numpy_values
from plp_eval._problem import (
    METRICS,
    Problem,
    check_max_rank,
    check_metric,
    check_same_rows,
    prepare,
)

__all__ = [
    "BACKENDS",
    "METRICS",
    "ReidMetrics",
    "rank_lists",
    "reid_metrics",
    "reid_metrics_from_distances",
]

BACKENDS = ("auto", "numba", "torch")
# Query rows in flight (all workers together): extra memory is about BLOCK x gallery x 4 bytes
# (x 8 for the float64 ``sort`` method, one block at a time).
BLOCK = 256


def reid_metrics(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    max_rank: int = DEFAULT_MAX_RANK,
    *,
    query_in_gallery: bool = False,
    backend: str = "auto",
    device: Any = None,
    distributed: bool = False,
    query_groups: Any = None,
    gallery_groups: Any = None,
) -> ReidMetrics:
    """Return CMC, mAP, mINP, precision@1, R-precision and MAP@R of ranking the gallery.

    Definitions:

    - ``euclidean`` is the L2 distance; ``cosine`` is 1 - cosine similarity (a zero vector has
      similarity 0 with everything).
    - A query's ranking sorts the gallery by distance **in real arithmetic** (the real
      distance between the given float values); equal distances are ordered by gallery index.
    - With both camera arrays, gallery items with the query's label **and** camera are removed
      from that query's ranking (Market-1501 protocol); without cameras nothing is removed.
      With ``query_in_gallery=True`` (leave-one-out: the query and gallery arrays are the
      same rows) query ``i`` is gallery item ``i`` and is removed from its own ranking.
      With both group arrays (a dataset CSV's sequences: one object's track), gallery items
      in the query's group are removed as well; a group holds one label (and one camera):
      see :mod:`plp_eval._junk`.
    - The matches of a query are the gallery items left in its ranking with its label; R is
      their number. A query with R = 0 is not valid: left out of every mean, counted, and
      warned about; if no query is valid, PlpEvalError is raised.
    - AP is over the whole ranking: the mean over the R matches of precision at each match's
      rank (torchreid / fast-reid). INP = R / rank of the last match.
    - precision@1, R-precision and MAP@R are pytorch-metric-learning's (AccuracyCalculator,
      means over the valid queries, i.e. its "not lone" queries), but exact: every match is
      ranked, no k-nearest cap. precision@1: the first ranked item is a match. R-precision:
      matches among the first R ranked, over R. MAP@R: (1/R) times the sum, over the matches
      ranked within the first R, of precision at their rank. Removed items (same camera,
      the query itself) are not in the ranking and not counted in R.

    Exactness: blocks of queries are scored against the gallery with a float32 matmul with a
    proven error bound; only each query's matches are ranked, by counting the non-matches
    certainly ahead of them; the few within the bound are compared exactly (float64 with a
    bound, then exact sums of exact products: see :mod:`plp_eval._kernels`). Ties in real
    arithmetic (integer, permuted, scaled features) are therefore ties, broken by gallery
    index, for both metrics and both backends (float32 inputs, and float64 inputs whose
    products neither overflow nor underflow).

    Backends (same results, bit for bit):

    - ``numba`` (CPU; in a process that has not loaded numba yet, ``auto`` ranks problems of
      at most 2**25 query x gallery pairs in numpy instead, the same ranking without paying
      numba's start-up): one worker thread per core, each with single-threaded BLAS and its own
      block; at most ``BLOCK`` query rows in flight. Extra memory: the gallery in float32
      plus ``BLOCK x gallery`` float32 scores.
    - ``torch``: the matmul and the choice of candidates (items that may rank ahead of a
      match) run on ``device``; the matches are ranked on the CPU from the candidates only.
      Extra device memory: the gallery in float32 plus ``rows x gallery x 17`` bytes (scores,
      mask, candidate indices), ``rows`` chosen so that this stays under 1 GiB (at least one
      row); host memory: the candidates of at most one block per core plus one, ranked on
      the host (numba, one thread per core) while the device scores the next blocks. TF32 is
      switched off for the matmul.
    - ``auto``: ``torch`` when the features are CUDA tensors or ``device`` is a CUDA device,
      else ``numba``.

    With ``distributed=True`` (inside an initialised ``torch.distributed`` group, every rank
    passing the same arrays) each rank ranks a contiguous share of the queries and the
    per-query values are all-reduced: every rank returns the full result, equal bit for bit
    to one process's.

    Example:
        >>> import numpy as np
        >>> gallery = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> result = reid_metrics(np.array([[0.1]]), [7], gallery, [1, 7, 2, 7], max_rank=4)
        >>> result.cmc.tolist()  # matches at ranks 2 and 4
        [0.0, 1.0, 1.0, 1.0]
        >>> round(result.mean_average_precision, 4)  # (1/2 + 2/4) / 2
        0.5
        >>> result.mean_inp  # 2 matches, last at rank 4
        0.5
        >>> result.r_precision, result.map_at_r  # R = 2: one match in the first 2, at rank 2
        (0.5, 0.25)
    """
    torch_device = _torch_device(backend, device, query_features, gallery_features)
    if query_groups is not None or gallery_groups is not None:
        query_cameras, gallery_cameras = junk_keys(
            query_labels, gallery_labels, query_cameras, gallery_cameras, query_groups,
            gallery_groups,
        )  # fmt: skip
    return _evaluate(
        query_features,
        query_labels,
        gallery_features,
        gallery_labels,
        query_cameras,
        gallery_cameras,
        metric,
        max_rank,
        method="numba" if backend == "numba" else "auto",
        query_in_gallery=query_in_gallery,
        device=torch_device,
        distributed=distributed,
    )


def _torch_device(backend: str, device: Any, *features: Any) -> Any:
    """The torch device to rank on, or None for the numba backend."""
    if backend not in BACKENDS:
        raise PlpEvalError(unknown_choice("backend", backend, BACKENDS))
    if backend == "numba":
        return None
    wants_cuda = str(device).startswith("cuda")
    if backend == "auto" and not wants_cuda and "torch" not in sys.modules:
        return None  # no tensor can be given without torch imported: nothing to import
    import torch

    on_cuda = any(isinstance(f, torch.Tensor) and f.is_cuda for f in features)
    if device is not None:
        device = torch.device(device)
    elif on_cuda:
        device = next(f.device for f in features if isinstance(f, torch.Tensor) and f.is_cuda)
    if backend == "auto" and not (on_cuda or (device is not None and device.type == "cuda")):
        return None
    return device if device is not None else torch.device("cpu")


def _evaluate(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    max_rank: int = DEFAULT_MAX_RANK,
    method: str = "auto",
    query_in_gallery: bool = False,
    device: Any = None,
    distributed: bool = False,
) -> ReidMetrics:
    """:func:`reid_metrics` with a choice of method (the bench and tests compare them).

    Methods (the torch backend whenever ``device`` is given, but for ``sort``):

    - ``numba``: the numba kernels.
    - ``auto``: ``numba``, except that a process which has not loaded the numba kernels yet
      ranks problems of at most ``SMALL`` query x gallery pairs with ``numpy`` (handing over
      to ``numba`` if they hold many real ties).
    - ``numpy``: :mod:`plp_eval._numpy_ranking`, the same ranking without numba.
    - ``sort``: float64 distances per query block, full stable argsort of every row: the
      float64 ranking, which equals the exact one when the float64 distances are exact.
    """
    if method not in ("auto", "numba", "numpy", "sort"):
        raise PlpEvalError(f"unknown method {method!r}")
    problem = prepare(
        query_features,
        query_labels,
        gallery_features,
        gallery_labels,
        query_cameras,
        gallery_cameras,
        metric,
        max_rank,
        query_in_gallery,
    )
    rows = share(len(problem.queries)) if distributed else range(len(problem.queries))
    cold = not _NUMBA_READY.is_set()  # loading numba costs a fresh process a second or more
    if method == "sort":
        values = _sort_values(problem, rows)
    elif method == "numpy":
        values = numpy_values(problem, rows, tie_budget=np.inf)
    elif method == "auto" and device is None and cold and len(rows) * len(problem.gallery) <= SMALL:
        try:
            values = numpy_values(problem, rows)
            _warm_up_numba()  # in the background, for the next calls
        except TooManyTiesError:
            values = _numba_values(problem, rows)
    elif device is not None:
        from plp_eval._torch_ranking import torch_values

        values = torch_values(problem, rows, device)
    else:
        values = _numba_values(problem, rows)
    if distributed:
        values = gather_values(values, rows, len(problem.queries))
    return summarize(values, max_rank, problem.q_labels)


_NUMBA_READY = threading.Event()  # the numba kernels are loaded (and compiled)
_WARM_UP = threading.Lock()
_warming: list[threading.Thread] = []


def _warm_up_numba() -> None:
    """Load the numba kernels in a background thread, once (the next calls use them)."""
    with _WARM_UP:
        if _warming or _NUMBA_READY.is_set():
            return
        # (not through _numba_values: its BLAS thread limit is process-wide)
        thread = threading.Thread(target=_load_numba, name="plp-eval numba", daemon=True)
        _warming.append(thread)
        thread.start()


def _numba_block(problem: Problem, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
    """Per-query values of queries ``start:stop``, their scores written into ``buffer``."""
    from plp_eval._kernels import COSINE, L2, rank_block  # numba: compiled (and cached) once

    block = problem.block(start, stop)
    match_ranks = np.empty(block.out_size, dtype=np.int64)
    num_matches = np.empty(stop - start, dtype=np.int64)
    scores = buffer[: stop - start]
    np.matmul(block.left, problem.matrix.T, out=scores)
    rank_block(
        scores, start, problem.queries, problem.gallery, problem.q_labels, problem.g_labels,
        problem.q_cameras, problem.g_cameras, problem.use_cameras, problem.leave_self_out,
        problem.label_order, block.group_start, block.group_stop, block.offsets, block.errors,
        block.q_norms, problem.g_norms, COSINE if problem.cosine else L2, block.out_start,
        match_ranks, num_matches,
    )  # fmt: skip
    return query_values(match_ranks, num_matches, block.out_start)


def _load_numba() -> None:
    """Load (and compile, the first time) the numba kernels on a tiny problem."""
    features = np.zeros((2, 1), dtype=np.float32)
    problem = prepare(features, [0, 1], features, [0, 1], None, None, "euclidean", 1, False)
    _numba_block(problem, 0, 2, np.empty((2, 2), dtype=np.float32))
    _NUMBA_READY.set()


def _numba_values(problem: Problem, rows: range) -> np.ndarray:
    """Per-query values of query ``rows``: float32 matmul per block, then the numba kernel."""
    # One worker thread per core, each with its own block of scores: single-threaded BLAS and
    # numba kernels side by side, never two thread pools competing for the same cores.
    workers = _num_workers()
    block_rows = max(BLOCK // workers, 32)
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(workers):
        shape = (min(block_rows, len(rows)), len(problem.gallery))
        buffers.put(np.empty(shape, dtype=problem.matrix.dtype))

    def evaluate_block(start: int) -> np.ndarray:
        buffer = buffers.get()
        try:
            return _numba_block(problem, start, min(start + block_rows, rows.stop), buffer)
        finally:
            buffers.put(buffer)

    starts = range(rows.start, rows.stop, block_rows)
    if len(starts) == 0:
        return np.zeros((0, VALUES))
    with (
        _blas_controller().limit(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        values = np.concatenate(list(pool.map(evaluate_block, starts)))
    _NUMBA_READY.set()
    return values


def _sort_values(problem: Problem, rows: range) -> np.ndarray:
    """Per-query values of query ``rows``: float64 distances, full stable sort of every row."""
    values = []
    for start in range(rows.start, rows.stop, BLOCK):
        stop = min(start + BLOCK, rows.stop)
        distances = _distances(problem.queries[start:stop], problem.gallery, problem.cosine)
        order = np.argsort(distances, axis=1, kind="stable")  # ties: lower gallery index first
        ranks: list[np.ndarray] = []
        for row in range(stop - start):
            ranked = order[row]
            query = start + row
            matches = problem.g_labels[ranked] == problem.q_labels[query]
            removed = np.zeros(len(ranked), dtype=bool)
            if problem.use_cameras:
                removed |= matches & (problem.g_cameras[ranked] == problem.q_cameras[query])
            if problem.leave_self_out:
                removed |= ranked == query
            ranks.append(np.flatnonzero(matches[~removed]) + 1)
        counts = np.array([len(r) for r in ranks], dtype=np.int64)
        flat = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
        values.append(query_values(flat, counts, np.cumsum(counts) - counts))
    return np.concatenate(values) if values else np.zeros((0, VALUES))


def reid_metrics_from_distances(
    distances: Any,
    query_labels: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    max_rank: int = DEFAULT_MAX_RANK,
    query_in_gallery: bool = False,
    *,
    query_groups: Any = None,
    gallery_groups: Any = None,
) -> ReidMetrics:
    """Return the metrics of :func:`reid_metrics` for a ranking by the given distances.

    Each query's ranking sorts the gallery by ``(distance, gallery index)``, exactly as the
    given numbers compare; removals, R, valid queries and every metric are defined as in
    :func:`reid_metrics`.

    Args:
        distances: ``(Q, G)`` finite float array (numpy or tensor), or an iterable of
            consecutive blocks of its rows (``(rows, G)`` arrays, in query order), so that the
            whole matrix never has to exist at once: memory is one block plus the kernel's
            ``G`` candidates.
        query_labels: ``(Q,)`` labels.
        gallery_labels: ``(G,)`` labels.
        query_cameras: ``(Q,)`` cameras (with ``gallery_cameras``: Market-1501 removal).
        gallery_cameras: ``(G,)`` cameras.
        max_rank: Length of the CMC curve.
        query_in_gallery: Query ``i`` is gallery item ``i``; it is left out of its ranking.
        query_groups: ``(Q,)`` groups (with ``gallery_groups``: same-group items removed).
        gallery_groups: ``(G,)`` groups.

    Example:
        >>> result = reid_metrics_from_distances([[0.5, 0.1, 0.5, 0.9]], [7], [1, 7, 2, 7])
        >>> result.cmc[:4].tolist(), result.mean_average_precision  # matches at ranks 1, 4
        ([1.0, 1.0, 1.0, 1.0], 0.75)
    """
    from plp_eval._kernels import GIVEN, rank_block

    check_max_rank(max_rank)
    q_labels = as_labels(query_labels, "query_labels", len(np.asarray(query_labels)))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(np.asarray(gallery_labels)))
    if query_groups is not None or gallery_groups is not None:
        query_cameras, gallery_cameras = junk_keys(
            q_labels, g_labels, query_cameras, gallery_cameras, query_groups, gallery_groups
        )
    use_cameras = query_cameras is not None and gallery_cameras is not None
    no_cameras = np.zeros(1, dtype=np.int64)
    q_cameras = as_labels(query_cameras, "query_cameras", len(q_labels)) if use_cameras else None
    g_cameras = (
        as_labels(gallery_cameras, "gallery_cameras", len(g_labels)) if use_cameras else None
    )
    if query_in_gallery:
        check_same_rows(q_labels, g_labels, q_cameras, g_cameras)
    label_order = np.argsort(g_labels, kind="stable")
    sorted_labels = g_labels[label_order]
    values = []
    done = 0
    for block in _row_blocks(distances, len(g_labels)):
        stop = done + len(block)
        if stop > len(q_labels):
            raise PlpEvalError(f"distances have more rows than the {len(q_labels)} query_labels")
        group_start = np.searchsorted(sorted_labels, q_labels[done:stop], side="left")
        group_stop = np.searchsorted(sorted_labels, q_labels[done:stop], side="right")
        sizes = group_stop - group_start
        out_start = np.cumsum(sizes) - sizes
        match_ranks = np.empty(int(sizes.sum()), dtype=np.int64)
        num_matches = np.empty(len(block), dtype=np.int64)
        zeros = np.zeros(len(block))
        unused = np.zeros((1, 1), dtype=block.dtype)  # no features: the distances are given
        rank_block(
            block, done, unused, unused, q_labels, g_labels,
            q_cameras if q_cameras is not None else no_cameras,
            g_cameras if g_cameras is not None else no_cameras,
            use_cameras, query_in_gallery, label_order, group_start, group_stop,
            zeros, zeros, zeros, zeros, GIVEN, out_start, match_ranks, num_matches,
        )  # fmt: skip
        values.append(query_values(match_ranks, num_matches, out_start))
        done = stop
    if done != len(q_labels):
        raise PlpEvalError(f"distances have {done} rows, expected {len(q_labels)} (query_labels)")
    all_values = np.concatenate(values) if values else np.zeros((0, VALUES))
    return summarize(all_values, max_rank, q_labels)


def _row_blocks(distances: Any, num_gallery: int) -> Iterable[np.ndarray]:
    """The row blocks of ``distances`` (an array, or an iterable of blocks), validated."""
    single = hasattr(distances, "detach") or isinstance(distances, np.ndarray)
    if isinstance(distances, list):  # nested lists of numbers, or a list of blocks
        single = not distances or np.ndim(distances[0]) < 2
    if single:
        distances = [distances]
    for number, block in enumerate(distances):
        if hasattr(block, "detach"):
            block = block.detach().cpu().numpy()
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != num_gallery:
            raise PlpEvalError(
                f"distances block {number} has shape {block.shape}, expected (rows, "
                f"{num_gallery}) (one column per gallery label)"
            )
        if block.dtype != np.float32 or not block.flags.writeable:
            block = block.astype(np.float64)
        if not np.isfinite(block).all():
            raise PlpEvalError(f"distances block {number} has NaN or inf values")
        yield np.ascontiguousarray(block)


@functools.cache
def _blas_controller() -> Any:
    """The BLAS libraries loaded (looked up once: it takes milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _num_workers() -> int:
    """Cores this process may use (at most 8: each worker holds a block of scores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def rank_lists(
    query_features: Any, gallery_features: Any, k: int = 10, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(indices, distances)`` of each query's ``k`` nearest gallery items (faiss).

    Rows are sorted by distance, equal distances by gallery index; ``euclidean`` distances are
    L2 (not squared), ``cosine`` ones 1 - cosine similarity.
    """
    import faiss

    from plp_eval._arrays import as_features

    check_metric(metric)
    queries = np.ascontiguousarray(as_features(query_features, "query_features"), np.float32)
    gallery = np.ascontiguousarray(as_features(gallery_features, "gallery_features"), np.float32)
    if queries.shape[1] != gallery.shape[1]:
        raise PlpEvalError(
            f"query_features have dimension {queries.shape[1]}, gallery_features {gallery.shape[1]}"
        )
    if k < 1:
        raise PlpEvalError(f"k must be >= 1, got {k}")
    k = min(k, len(gallery))
    if metric == "cosine":
        queries, gallery = _normalize(queries), _normalize(gallery)
        index: Any = faiss.IndexFlatIP(gallery.shape[1])
    else:
        index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    scores, indices = index.search(queries, k)
    distances = 1.0 - scores if metric == "cosine" else np.sqrt(np.maximum(scores, 0.0))
    order = np.lexsort((indices, distances), axis=1)
    return np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)


def _normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _distances(queries: np.ndarray, gallery: np.ndarray, cosine: bool) -> np.ndarray:
    """Float64 distances used for ranking: squared L2 (same order as L2) or 1 - cosine."""
    queries, gallery = queries.astype(np.float64), gallery.astype(np.float64)
    if cosine:
        return 1.0 - _normalize(queries) @ _normalize(gallery).T
    squared = (
        (queries**2).sum(1, keepdims=True)
        + (gallery**2).sum(1)[None, :]
        - 2.0 * queries @ gallery.T
    )
    return np.maximum(squared, 0.0)
