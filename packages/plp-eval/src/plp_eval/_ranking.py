"""Re-ID ranking metrics (CMC, mAP, mINP) computed exactly, query block by query block."""

from __future__ import annotations

import functools
import os
import queue
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

from plp_eval._arrays import as_features, as_labels
from plp_eval._errors import PlpEvalError

__all__ = ["METRICS", "ReidMetrics", "rank_lists", "reid_metrics"]

METRICS = ("euclidean", "cosine")
# Query rows in flight (all workers together): extra memory is about BLOCK x gallery x 4 bytes
# (x 8 for the float64 ``sort`` method, one block at a time).
BLOCK = 256


@dataclass(frozen=True)
class ReidMetrics:
    """Re-ID ranking metrics over the valid queries.

    Attributes:
        cmc: ``(max_rank,)`` float64; ``cmc[k-1]`` is the share of valid queries whose first
            match is at rank <= k.
        mean_average_precision: Mean over valid queries of AP over the whole ranking.
        mean_inp: Mean over valid queries of INP = R / rank of the last match.
        num_queries: Queries given.
        num_valid_queries: Queries with at least one match left in the gallery.
    """

    cmc: np.ndarray
    mean_average_precision: float
    mean_inp: float
    num_queries: int
    num_valid_queries: int

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a flat JSON-serialisable dict."""
        result: dict[str, Any] = {
            f"rank-{k}": float(self.cmc[k - 1]) for k in (1, 5, 10) if k <= len(self.cmc)
        }
        result.update(
            {
                "mAP": float(self.mean_average_precision),
                "mINP": float(self.mean_inp),
                "num_queries": int(self.num_queries),
                "num_valid_queries": int(self.num_valid_queries),
                "cmc": [float(v) for v in self.cmc],
            }
        )
        return result


def reid_metrics(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    max_rank: int = 50,
) -> ReidMetrics:
    """Return CMC, mAP and mINP of ranking the gallery for every query.

    Definitions:

    - ``euclidean`` is the L2 distance; ``cosine`` is 1 - cosine similarity.
    - A query's ranking sorts the gallery by distance; equal distances are ordered by gallery
      index.
    - With both camera arrays, gallery items with the query's label **and** camera are removed
      from that query's ranking (Market-1501 protocol); without cameras nothing is removed.
    - A query with no match left is not valid: left out of every mean, counted, and warned
      about; if no query is valid, PlpEvalError is raised.
    - AP is over the whole ranking: the mean over the query's R matches of precision at each
      match's rank (torchreid / fast-reid). INP = R / rank of the last match.

    Computation: the gallery is never sorted and the full query x gallery matrix never built.
    Blocks of queries are scored against the gallery with a float32 matmul (one worker thread
    per core, at most ``BLOCK`` query rows in flight: extra memory is the gallery in float32
    plus ``BLOCK x gallery`` float32 scores); then only each query's matches are ranked, by
    counting the non-matches ahead of them. Non-matches within the float32 matmul's proven
    error bound of a match are compared in float64, so the result is the exact float64
    ranking with the tie rule above.

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
    """
    return _evaluate(
        query_features,
        query_labels,
        gallery_features,
        gallery_labels,
        query_cameras,
        gallery_cameras,
        metric,
        max_rank,
    )


def _evaluate(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    max_rank: int = 50,
    method: str = "count",
) -> ReidMetrics:
    """:func:`reid_metrics` with a choice of exact method (the bench compares them).

    Methods (same results; ``count`` measured fastest, see bench/reid.py):

    - ``count``: float32 matmul per query block, then a numba kernel that ranks only each
      query's matches by counting the non-matches ahead of them, with near ties settled in
      float64 (see :mod:`plp_eval._kernels`).
    - ``sort``: float64 distances per query block, full stable argsort of every row.
    """
    if metric not in METRICS:
        raise PlpEvalError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if max_rank < 1:
        raise PlpEvalError(f"max_rank must be >= 1, got {max_rank}")
    if method not in ("count", "sort"):
        raise PlpEvalError(f"unknown method {method!r}")
    queries = as_features(query_features, "query_features")
    gallery = as_features(gallery_features, "gallery_features")
    if queries.shape[1] != gallery.shape[1]:
        raise PlpEvalError(
            f"query_features have dimension {queries.shape[1]}, gallery_features {gallery.shape[1]}"
        )
    q_labels = as_labels(query_labels, "query_labels", len(queries))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(gallery))
    use_cameras = query_cameras is not None and gallery_cameras is not None
    q_cameras = as_labels(query_cameras, "query_cameras", len(queries)) if use_cameras else None
    g_cameras = as_labels(gallery_cameras, "gallery_cameras", len(gallery)) if use_cameras else None

    run = _count_blocks if method == "count" else _sort_blocks
    cmc_counts, ap_sum, inp_sum, num_valid = run(
        queries, q_labels, gallery, g_labels, q_cameras, g_cameras, metric, max_rank
    )
    if num_valid == 0:
        raise PlpEvalError("no query has a match in the gallery: nothing to evaluate")
    if num_valid < len(queries):
        warnings.warn(
            f"{len(queries) - num_valid} of {len(queries)} queries have no match in the gallery "
            "and are left out",
            stacklevel=3,
        )
    return ReidMetrics(
        cmc=cmc_counts / num_valid,
        mean_average_precision=float(ap_sum / num_valid),
        mean_inp=float(inp_sum / num_valid),
        num_queries=len(queries),
        num_valid_queries=num_valid,
    )


_Totals = tuple[np.ndarray, float, float, int]


def _sort_blocks(
    queries: np.ndarray,
    q_labels: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray | None,
    g_cameras: np.ndarray | None,
    metric: str,
    max_rank: int,
) -> _Totals:
    """CMC counts, AP and INP sums, valid queries: float64, full stable sort of every row."""
    cmc_counts = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    for start in range(0, len(queries), BLOCK):
        stop = min(start + BLOCK, len(queries))
        distances = _distances(queries[start:stop], gallery, metric)
        order = np.argsort(distances, axis=1, kind="stable")  # ties: lower gallery index first
        for row in range(stop - start):
            ranked = order[row]
            matches = g_labels[ranked] == q_labels[start + row]
            if q_cameras is not None and g_cameras is not None:
                keep = ~(matches & (g_cameras[ranked] == q_cameras[start + row]))
                matches = matches[keep]
            hit_ranks = np.flatnonzero(matches) + 1  # 1-based ranks of the matches
            if len(hit_ranks) == 0:
                continue
            num_valid += 1
            if hit_ranks[0] <= max_rank:
                cmc_counts[hit_ranks[0] - 1 :] += 1
            ap_sum += float(np.mean(np.arange(1, len(hit_ranks) + 1) / hit_ranks))
            inp_sum += len(hit_ranks) / hit_ranks[-1]
    return cmc_counts, ap_sum, inp_sum, num_valid


def _count_blocks(
    queries: np.ndarray,
    q_labels: np.ndarray,
    gallery: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray | None,
    g_cameras: np.ndarray | None,
    metric: str,
    max_rank: int,
) -> _Totals:
    """CMC counts, AP and INP sums, valid queries: low-precision matmul, exact match ranks.

    Extra memory: the gallery once in float32 plus one ``BLOCK x gallery`` score block.
    """
    from plp_eval._kernels import rank_block  # numba: compiled (and cached) on first use

    exact = np.float64 if np.float64 in (queries.dtype, gallery.dtype) else np.float32
    queries = np.ascontiguousarray(queries, dtype=exact)
    gallery = np.ascontiguousarray(gallery, dtype=exact)
    cosine = metric == "cosine"
    dim = gallery.shape[1]
    g_squares = _row_squares(gallery)
    g_norms = np.sqrt(g_squares)
    largest = float(g_squares.max())
    # float32 scores unless the values risk overflow/underflow there; the bound below is the
    # worst case of a (dim + 1)-term float32 dot product plus the rounding of the inputs.
    low_precision = cosine or 1e-30 < largest < 1e30
    score_type = np.float32 if low_precision else np.float64
    unit = 2.0**-24 if low_precision else 2.0**-53
    # Scores: -q.g / (|q| |g|) (cosine) or |g|^2 - 2 q.g (L2, as [q, 1] . [-2 g, |g|^2]).
    matrix = np.empty((len(gallery), dim + (0 if cosine else 1)), dtype=score_type)
    for begin in range(0, len(gallery), 8192):
        part = gallery[begin : begin + 8192]
        if cosine:
            scale = -1.0 / np.maximum(g_norms[begin : begin + 8192], 1e-12)
            matrix[begin : begin + 8192] = part * scale[:, None]
        else:
            matrix[begin : begin + 8192, :dim] = part
            matrix[begin : begin + 8192, :dim] *= -2.0
    if not cosine:
        matrix[:, dim] = g_squares
    label_order = np.argsort(g_labels, kind="stable")
    sorted_labels = g_labels[label_order]
    no_cameras = np.zeros(1, dtype=np.int64)
    # One worker thread per core, each with its own block of scores: single-threaded BLAS and
    # numba kernels side by side, never two thread pools competing for the same cores.
    workers = _num_workers()
    rows = max(BLOCK // workers, 32)
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(workers):
        buffers.put(np.empty((min(rows, len(queries)), len(gallery)), dtype=score_type))

    def evaluate_block(start: int) -> _Totals:
        stop = min(start + rows, len(queries))
        block = queries[start:stop]
        q_squares = _row_squares(block)
        q_norms = np.sqrt(q_squares)
        if cosine:
            left = (block / np.maximum(q_norms, 1e-12)[:, None]).astype(score_type)
            offsets = np.ones(stop - start)
            errors = 1.1 * (dim + 5) * unit * 3.0 + np.zeros(stop - start)
        else:
            left = np.ones((stop - start, dim + 1), dtype=score_type)
            left[:, :dim] = block
            offsets = q_squares
            errors = 1.1 * (dim + 5) * unit * (q_squares + 2.0 * largest) + 1e-300
        labels = q_labels[start:stop]
        first_rank = np.empty(stop - start, dtype=np.int64)
        ap = np.empty(stop - start, dtype=np.float64)
        inp = np.empty(stop - start, dtype=np.float64)
        buffer = buffers.get()
        try:
            scores = buffer[: stop - start]
            np.matmul(left, matrix.T, out=scores)
            rank_block(
                scores,
                start,
                queries,
                gallery,
                q_labels,
                g_labels,
                q_cameras if q_cameras is not None else no_cameras,
                g_cameras if g_cameras is not None else no_cameras,
                q_cameras is not None and g_cameras is not None,
                label_order,
                np.searchsorted(sorted_labels, labels, side="left"),
                np.searchsorted(sorted_labels, labels, side="right"),
                offsets,
                errors,
                q_norms,
                g_norms,
                cosine,
                first_rank,
                ap,
                inp,
            )
        finally:
            buffers.put(buffer)
        valid = first_rank > 0
        hits = first_rank[valid]
        counts = np.bincount(hits[hits <= max_rank] - 1, minlength=max_rank)
        return counts, float(ap[valid].sum()), float(inp[valid].sum()), int(valid.sum())

    cmc_counts = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    with (
        _blas_controller().limit(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        # Summed in block order: the result does not depend on the threads' timing.
        for counts, ap_part, inp_part, valid_part in pool.map(
            evaluate_block, range(0, len(queries), rows)
        ):
            cmc_counts += counts
            ap_sum += ap_part
            inp_sum += inp_part
            num_valid += valid_part
    return np.cumsum(cmc_counts), ap_sum, inp_sum, num_valid


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded (looked up once: it takes milliseconds)."""
    return ThreadpoolController()


def _num_workers() -> int:
    """Cores this process may use (at most 8: each worker holds a block of scores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def _row_squares(features: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Float64 squared L2 norm of every row, converting ``chunk`` rows at a time."""
    out = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), chunk):
        part = features[start : start + chunk].astype(np.float64)
        out[start : start + chunk] = np.einsum("ij,ij->i", part, part)
    return out


def rank_lists(
    query_features: Any, gallery_features: Any, k: int = 10, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(indices, distances)`` of each query's ``k`` nearest gallery items (faiss).

    Rows are sorted by distance, equal distances by gallery index; ``euclidean`` distances are
    L2 (not squared), ``cosine`` ones 1 - cosine similarity.
    """
    if metric not in METRICS:
        raise PlpEvalError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
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
        index: faiss.Index = faiss.IndexFlatIP(gallery.shape[1])
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


def _distances(queries: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    """Distances used for ranking: squared L2 (same order as L2) or 1 - cosine."""
    queries, gallery = queries.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        return 1.0 - _normalize(queries) @ _normalize(gallery).T
    squared = (
        (queries**2).sum(1, keepdims=True)
        + (gallery**2).sum(1)[None, :]
        - 2.0 * queries @ gallery.T
    )
    return np.maximum(squared, 0.0)
