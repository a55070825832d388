"""A validated ranking problem and its score blocks, shared by the numba and torch backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_core import RANKING_METRICS, check_choice
from plp_eval._arrays import as_labels, as_query_gallery
from plp_eval._errors import PlpEvalError
from plp_eval._threads import in_chunks

__all__ = ["METRICS", "Block", "Problem", "check_metric", "given_problem", "prepare"]

METRICS = RANKING_METRICS  # one vocabulary for every package: plp_core.RANKING_METRICS


def check_metric(metric: str) -> str:
    """Return ``metric`` if retrieval ranks by it; else raise PlpEvalError listing the metrics."""
    return check_choice(metric, METRICS, kind="metric", error=PlpEvalError)


@dataclass(frozen=True)
class Block:
    """What the kernels need of rows ``start:stop`` of the queries.

    ``left @ problem.matrix`` are the block's scores: the distance less a per-row constant
    (``|q|^2`` for L2, 1 for cosine, 0 for given distances), within ``errors`` of it (see
    :func:`prepare`).
    """

    start: int
    stop: int
    left: np.ndarray
    errors: np.ndarray
    q_norms: np.ndarray
    group_start: np.ndarray
    group_stop: np.ndarray
    out_start: np.ndarray  # where each row's match ranks go in a flat buffer
    out_size: int


@dataclass(frozen=True)
class Problem:
    """Queries, gallery and labels as the kernels take them; see :func:`prepare`."""

    queries: np.ndarray
    gallery: np.ndarray
    q_labels: np.ndarray
    g_labels: np.ndarray
    q_cameras: np.ndarray  # (1,) zeros unless use_cameras
    g_cameras: np.ndarray
    use_cameras: bool
    leave_self_out: bool
    cosine: bool
    label_order: np.ndarray
    sorted_labels: np.ndarray
    g_norms: np.ndarray
    g_squares: np.ndarray
    largest: float
    unit: float
    # (D or D + 1, G) in the scores' precision: the gallery's columns (BLAS multiplies this
    # layout faster than the transpose of a (G, D) array)
    matrix: np.ndarray
    given: bool = False  # the scores are given distances (no features: see given_problem)

    def block(self, start: int, stop: int) -> Block:
        """Return the kernel inputs of query rows ``start:stop``."""
        block = self.queries[start:stop]
        dim = self.gallery.shape[1]
        q_squares = row_squares(block)
        q_norms = np.sqrt(q_squares)
        if self.given:  # distance = score exactly
            left = self.matrix[:0]
            errors = np.zeros(stop - start)
        elif self.cosine:
            left = (block / np.where(q_norms > 0, q_norms, 1.0)[:, None]).astype(self.matrix.dtype)
            errors = 1.1 * (dim + 5) * self.unit * 3.0 + np.zeros(stop - start)
        else:
            left = np.ones((stop - start, dim + 1), dtype=self.matrix.dtype)
            left[:, :dim] = block
            errors = 1.1 * (dim + 5) * self.unit * (q_squares + 2.0 * self.largest) + 1e-300
        labels = self.q_labels[start:stop]
        group_start = np.searchsorted(self.sorted_labels, labels, side="left")
        group_stop = np.searchsorted(self.sorted_labels, labels, side="right")
        sizes = group_stop - group_start
        out_start = np.cumsum(sizes) - sizes
        return Block(
            start, stop, left, errors, q_norms, group_start, group_stop, out_start,
            int(sizes.sum()),
        )  # fmt: skip


def prepare(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any,
    gallery_cameras: Any,
    metric: str,
    max_rank: int,
    query_in_gallery: bool,
) -> Problem:
    """Validate the inputs and return them as a :class:`Problem`, or raise PlpEvalError.

    Scores: ``-q.g / (|q| |g|)`` (cosine) or ``|g|^2 - 2 q.g`` (L2, as ``[q, 1] . [-2 g, |g|^2]``)
    in float32 unless the values risk overflow/underflow there (then float64); their error
    bound is the worst case of a (dim + 1)-term dot product in that precision plus the
    rounding of the inputs.
    """
    check_metric(metric)
    check_max_rank(max_rank)
    queries, gallery = as_query_gallery(query_features, gallery_features)
    q_labels = as_labels(query_labels, "query_labels", len(queries))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(gallery))
    use_cameras = query_cameras is not None and gallery_cameras is not None
    no_cameras = np.zeros(1, dtype=np.int64)
    q_cameras = as_labels(query_cameras, "query_cameras", len(queries)) if use_cameras else None
    g_cameras = as_labels(gallery_cameras, "gallery_cameras", len(gallery)) if use_cameras else None
    if query_in_gallery:
        check_same_rows(q_labels, g_labels, q_cameras, g_cameras)
        if not np.array_equal(queries, gallery):
            row = int(np.flatnonzero((queries != gallery).any(axis=1))[0])
            raise PlpEvalError(
                "query_in_gallery=True needs the same query and gallery features: "
                f"they differ at row {row}"
            )

    exact = np.float64 if np.float64 in (queries.dtype, gallery.dtype) else np.float32
    queries = np.ascontiguousarray(queries, dtype=exact)
    gallery = np.ascontiguousarray(gallery, dtype=exact)
    cosine = metric == "cosine"
    dim = gallery.shape[1]
    g_squares = np.empty(len(gallery))

    def columns(begin: int, end: int) -> None:
        """The squares and scoring columns of gallery rows ``begin:end``, in one pass."""
        part, out = gallery[begin:end], matrix[:dim, begin:end]
        wide = part.astype(np.float64)
        g_squares[begin:end] = squares = np.einsum("ij,ij->i", wide, wide)
        if cosine:
            norms = np.sqrt(squares)
            out[:] = (part * (-1.0 / np.where(norms > 0, norms, 1.0))[:, None]).T
        else:
            np.multiply(part.T, -2.0, out=out)

    # Float32 scores unless the squares risk overflow/underflow there (then float64, again).
    matrix = np.empty((dim + (0 if cosine else 1), len(gallery)), dtype=np.float32)
    in_chunks(len(gallery), 512, columns)  # 512 rows: the transposed copy stays in cache
    largest = float(g_squares.max())
    low_precision = cosine or 1e-30 < largest < 1e30
    if not low_precision:
        matrix = np.empty(matrix.shape, dtype=np.float64)
        in_chunks(len(gallery), 512, columns)
    g_norms = np.sqrt(g_squares)
    if not cosine:
        matrix[dim] = g_squares
    label_order = np.argsort(g_labels, kind="stable")
    return Problem(
        queries=queries,
        gallery=gallery,
        q_labels=q_labels,
        g_labels=g_labels,
        q_cameras=q_cameras if q_cameras is not None else no_cameras,
        g_cameras=g_cameras if g_cameras is not None else no_cameras,
        use_cameras=use_cameras,
        leave_self_out=query_in_gallery,
        cosine=cosine,
        label_order=label_order,
        sorted_labels=g_labels[label_order],
        g_norms=g_norms,
        g_squares=g_squares,
        largest=largest,
        unit=2.0**-24 if low_precision else 2.0**-53,
        matrix=matrix,
    )


def given_problem(
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray | None,
    g_cameras: np.ndarray | None,
    query_in_gallery: bool,
) -> Problem:
    """A :class:`Problem` whose scores are given distances, ranked exactly as they compare."""
    no_features = np.zeros((len(q_labels), 0), dtype=np.float64)
    no_cameras = np.zeros(1, dtype=np.int64)
    label_order = np.argsort(g_labels, kind="stable")
    return Problem(
        queries=no_features,
        gallery=np.zeros((len(g_labels), 0), dtype=np.float64),
        q_labels=q_labels,
        g_labels=g_labels,
        q_cameras=q_cameras if q_cameras is not None else no_cameras,
        g_cameras=g_cameras if g_cameras is not None else no_cameras,
        use_cameras=q_cameras is not None and g_cameras is not None,
        leave_self_out=query_in_gallery,
        cosine=False,
        label_order=label_order,
        sorted_labels=g_labels[label_order],
        g_norms=np.zeros(len(g_labels)),
        g_squares=np.zeros(len(g_labels)),
        largest=0.0,
        unit=0.0,
        matrix=np.zeros((0, 0)),
        given=True,
    )


def check_max_rank(max_rank: int) -> None:
    """Raise PlpEvalError unless ``max_rank >= 1``."""
    if max_rank < 1:
        raise PlpEvalError(f"max_rank must be >= 1, got {max_rank}")


def check_same_rows(
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    q_cameras: np.ndarray | None,
    g_cameras: np.ndarray | None,
) -> None:
    """Raise PlpEvalError unless query ``i`` and gallery item ``i`` carry the same labels."""
    if len(q_labels) != len(g_labels):
        raise PlpEvalError(
            f"query_in_gallery=True needs as many queries as gallery items, got "
            f"{len(q_labels)} and {len(g_labels)}"
        )
    for name, query, gallery in (("labels", q_labels, g_labels), ("cameras", q_cameras, g_cameras)):
        if query is not None and gallery is not None and not np.array_equal(query, gallery):
            row = int(np.flatnonzero(query != gallery)[0])
            raise PlpEvalError(
                f"query_in_gallery=True needs query_{name} == gallery_{name}: they differ at "
                f"index {row} ({query[row]} vs {gallery[row]})"
            )


def row_squares(features: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Float64 squared L2 norm of every row, converting ``chunk`` rows at a time (in cache)."""
    out = np.empty(len(features), dtype=np.float64)

    def squares(begin: int, end: int) -> None:
        part = features[begin:end].astype(np.float64)
        out[begin:end] = np.einsum("ij,ij->i", part, part)

    in_chunks(len(features), chunk, squares)
    return out
