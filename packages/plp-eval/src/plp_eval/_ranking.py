"""Re-ID ranking metrics (CMC, mAP, mINP, precision@1, R-precision, MAP@R), exact, by blocks."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from plp_core import DEFAULT_MAX_RANK, unknown_choice
from plp_eval._arrays import as_labels
from plp_eval._distributed import gather_values, share
from plp_eval._errors import PlpEvalError
from plp_eval._junk import junk_keys
from plp_eval._match_ranks import VALUES, ReidMetrics, query_values, summarize
from plp_eval._numpy_ranking import TieBudget, block_values, numpy_values
from plp_eval._problem import (
    METRICS,
    Block,
    Problem,
    check_max_rank,
    check_metric,
    check_same_rows,
    given_problem,
    prepare,
)
from plp_eval._threads import map_blocks

__all__ = [
    "BACKENDS",
    "METRICS",
    "TIER_UP_SCORES",
    "ReidMetrics",
    "rank_lists",
    "reid_metrics",
    "reid_metrics_from_distances",
    "tier_up",
]

BACKENDS = ("auto", "numba", "torch")
SORT_ROWS = 256  # query rows of a float64 block of method="sort"
# Scores (queries x gallery) ranked with numpy before backend="auto" loads the numba kernels:
# on two cores they save 0.3-0.4 ns of wall time a score over numpy (10k x 50k x 256:
# 0.14-0.21 s a call) and take ~2 s to load in a fresh process (bench/README.md): 2 / 0.4e-9.
TIER_UP_SCORES = 5 * 10**9
_ranked = [0]  # scores ranked with numpy by backend="auto" in this process
_TIER_LOCK = threading.Lock()


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
    bound, then exact integer arithmetic on the given values: see
    :mod:`plp_eval._numpy_ranking`). Ties in real arithmetic (integer, permuted, scaled
    features) are therefore ties, broken by gallery index, for both metrics and every
    backend.

    Backends (same results, bit for bit):

    - ``auto``: ``torch`` when the features are CUDA tensors or ``device`` is a CUDA device,
      else numpy (:mod:`plp_eval._numpy_ranking`: nothing to compile or load, so the first
      call of a process is as fast as the next ones): one worker thread per core, each with
      single-threaded BLAS and its own block of up to 512 query rows, split evenly. Extra
      memory: the gallery in float32 plus the blocks' float32 scores and as many booleans,
      at most 512 MiB in all (fewer rows a block past it). Real ties by the thousand
      (integer features, hash codes) are handed over to the numba kernels, which settle them
      faster. Once the process has ranked ``TIER_UP_SCORES`` (5 x 10^9) queries x gallery
      scores, or once the numba kernels are loaded anyway, ``auto`` ranks every block with
      them: they cost less per score (~10% less time at 10k x 50k x 256) but take ~2 s to
      load in a fresh process, which numpy's extra cost has added up to by then.
    - ``numba``: the numba kernels of :mod:`plp_eval._kernels` for every block (same
      threads; 4 bytes a score in flight).
    - ``torch``: the matmul and the choice of candidates (items that may rank ahead of a
      match) run on ``device``; the matches are ranked on the CPU from the candidates only.
      Extra device memory: the gallery in float32 plus ``rows x gallery x 17`` bytes (scores,
      mask, candidate indices), ``rows`` chosen so that this stays under 1 GiB (at least one
      row); host memory: the candidates of at most one block per core plus one, ranked on
      the host (numpy, one thread per core) while the device scores the next blocks. TF32 is
      switched off for the matmul.

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
    """The torch device to rank on, or None to rank on the CPU without torch."""
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

    - ``auto``: :mod:`plp_eval._numpy_ranking`, blocks with many real ties handed over to
      the numba kernels; the numba kernels for every block once :func:`tier_up` says so.
    - ``numpy``: numpy alone, however many ties (the tests' way to check that path).
    - ``numba``: the numba kernels for every block.
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
    if method == "sort":
        values = _sort_values(problem, rows)
    elif device is not None:
        from plp_eval._torch_ranking import torch_values

        values = torch_values(problem, rows, device, fallback=_numba_block)
    elif method == "numba":
        values = _numba_values(problem, rows)
    elif method == "numpy":
        values = numpy_values(problem, rows, tie_budget=np.inf)
    elif tier_up(len(rows) * len(problem.gallery)):
        values = _numba_values(problem, rows)
    else:
        values = numpy_values(problem, rows, fallback=_numba_block)
    if distributed:
        values = gather_values(values, rows, len(problem.queries))
    return summarize(values, max_rank, problem.q_labels)


def tier_up(num_scores: int) -> bool:
    """Whether ``backend="auto"`` ranks a call of ``num_scores`` scores with the numba kernels.

    Yes once they are loaded in this process (``backend="numba"``, or real ties handed over
    to them), or once this process has ranked :data:`TIER_UP_SCORES` scores, this call's
    included: the kernels cost less per score but take seconds to load in a fresh process,
    so they are loaded when the time numpy's extra cost has added up to is about that load
    (ski rental: at most about twice the time of the better choice made in hindsight). Counted
    in scores, not seconds: the same calls switch at the same call, whatever the load.
    """
    if "plp_eval._kernels" in sys.modules:
        return True
    with _TIER_LOCK:
        _ranked[0] += num_scores
        return _ranked[0] >= TIER_UP_SCORES


def _numba_block(problem: Problem, block: Block, scores: np.ndarray) -> np.ndarray:
    """Per-query values of a block from its scores, ranked by the numba kernel."""
    from plp_eval._kernels import COSINE, L2, rank_block  # numba: compiled (and cached) once

    match_ranks = np.empty(block.out_size, dtype=np.int64)
    num_matches = np.empty(block.stop - block.start, dtype=np.int64)
    rank_block(
        scores, block.start, problem.queries, problem.gallery, problem.q_labels,
        problem.g_labels, problem.q_cameras, problem.g_cameras, problem.use_cameras,
        problem.leave_self_out, problem.label_order, block.group_start, block.group_stop,
        block.errors, block.q_norms, problem.g_norms,
        COSINE if problem.cosine else L2, block.out_start, match_ranks, num_matches,
    )  # fmt: skip
    return query_values(match_ranks, num_matches, block.out_start)


def _numba_values(problem: Problem, rows: range) -> np.ndarray:
    """Per-query values of query ``rows``: float32 matmul per block, then the numba kernel."""

    def make_buffer(block_rows: int) -> np.ndarray:
        return np.empty((block_rows, len(problem.gallery)), dtype=problem.matrix.dtype)

    def rank(start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        block = problem.block(start, stop)
        scores = buffer[: stop - start]
        np.matmul(block.left, problem.matrix, out=scores)
        return _numba_block(problem, block, scores)

    return map_blocks(rows, problem.matrix.itemsize * len(problem.gallery), make_buffer, rank)


def _sort_values(problem: Problem, rows: range) -> np.ndarray:
    """Per-query values of query ``rows``: float64 distances, full stable sort of every row."""
    values = []
    for start in range(rows.start, rows.stop, SORT_ROWS):
        stop = min(start + SORT_ROWS, rows.stop)
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
    check_max_rank(max_rank)
    q_labels = as_labels(query_labels, "query_labels", len(np.asarray(query_labels)))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(np.asarray(gallery_labels)))
    if query_groups is not None or gallery_groups is not None:
        query_cameras, gallery_cameras = junk_keys(
            q_labels, g_labels, query_cameras, gallery_cameras, query_groups, gallery_groups
        )
    use_cameras = query_cameras is not None and gallery_cameras is not None
    q_cameras = as_labels(query_cameras, "query_cameras", len(q_labels)) if use_cameras else None
    g_cameras = (
        as_labels(gallery_cameras, "gallery_cameras", len(g_labels)) if use_cameras else None
    )
    if query_in_gallery:
        check_same_rows(q_labels, g_labels, q_cameras, g_cameras)
    problem = given_problem(q_labels, g_labels, q_cameras, g_cameras, query_in_gallery)
    budget = TieBudget(np.inf)  # comparing given numbers needs no exact arithmetic
    values = []
    done = 0
    for block_distances in _row_blocks(distances, len(g_labels)):
        stop = done + len(block_distances)
        if stop > len(q_labels):
            raise PlpEvalError(f"distances have more rows than the {len(q_labels)} query_labels")
        mask = np.empty(block_distances.shape, dtype=bool)
        block = problem.block(done, stop)
        values.append(block_values(problem, block, block_distances, mask, budget))
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
