"""A query's best-ranked wrong gallery item and its best-ranked match, under the metrics' rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels, as_query_gallery
from plp_eval._errors import PlpEvalError
from plp_eval._junk import junk_keys, junk_mask
from plp_eval._problem import check_metric

__all__ = ["TIE_TOLERANCE", "QueryPair", "query_pairs"]

TIE_TOLERANCE = 1e-12
"""Float64 distances this close (relative, absolute below 1) are ties, ordered by gallery index:
exact ties of the given values whose float64 computations differ in the last bits."""


@dataclass(frozen=True)
class QueryPair:
    """What to explain about one query: why its first wrong item and its first match rank.

    Attributes:
        query: Row of the query.
        false_match: Gallery index of the best-ranked item with another label (None: none).
        false_rank: Its rank, 1 for the first item of the ranking.
        true_match: Gallery index of the best-ranked item with the query's label (None: none).
        true_rank: Its rank.
    """

    query: int
    false_match: int | None
    false_rank: int | None
    true_match: int | None
    true_rank: int | None


def query_pairs(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    queries: Any,
    *,
    metric: str = "euclidean",
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    query_groups: Any = None,
    gallery_groups: Any = None,
    query_in_gallery: bool = False,
) -> list[QueryPair]:
    """Return, for each of ``queries``, its best-ranked non-match and its best-ranked match.

    The ranking is :func:`reid_metrics`'s: the gallery ordered by distance (``euclidean``: L2,
    ``cosine``: 1 - cosine similarity; float64 from the given values, within
    :data:`TIE_TOLERANCE` a tie), equal distances by gallery index, with the same junk rule
    (same label and camera, same group, the query itself for ``query_in_gallery``) removing
    items before ranks are counted.

    Example (1-D; gallery at 1, 2, 3 with labels 7, 5, 5; the query at 0 has label 5):

    >>> pair = query_pairs([[0.0]], [5], [[1.0], [2.0], [3.0]], [7, 5, 5], [0])[0]
    >>> (pair.false_match, pair.false_rank, pair.true_match, pair.true_rank)
    (0, 1, 1, 2)

    Raises:
        PlpEvalError: Bad arrays, an unknown metric, or a query index out of range.
    """
    check_metric(metric)
    q_features, g_features = as_query_gallery(query_features, gallery_features)
    q_labels = as_labels(query_labels, "query_labels", len(q_features))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(g_features))
    chosen = np.asarray(queries, dtype=np.int64).reshape(-1)
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(q_features)):
        raise PlpEvalError(
            f"queries must index the {len(q_features)} queries, got {chosen.tolist()}"
        )
    if query_in_gallery and len(q_features) != len(g_features):
        raise PlpEvalError("query_in_gallery needs the same rows as queries and gallery")
    q_keys, g_keys = junk_keys(
        q_labels, g_labels, query_cameras, gallery_cameras, query_groups, gallery_groups
    )
    gallery = g_features.astype(np.float64)
    if metric == "cosine":
        gallery /= np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-300)
    found = []
    for query in chosen.tolist():
        distances = _distances(q_features[query].astype(np.float64), gallery, metric)
        junk = junk_mask(
            q_labels[query : query + 1],
            g_labels,
            None if q_keys is None else q_keys[query : query + 1],
            g_keys,
            0,
            False,
        )
        kept = np.ones(len(g_labels), dtype=bool) if junk is None else ~junk[0]
        if query_in_gallery:
            kept[query] = False
        matches = g_labels == q_labels[query]
        false = _first(distances, kept & ~matches)
        true = _first(distances, kept & matches)
        found.append(
            QueryPair(
                query=query,
                false_match=false,
                false_rank=None if false is None else _rank(distances, kept, false),
                true_match=true,
                true_rank=None if true is None else _rank(distances, kept, true),
            )
        )
    return found


def _distances(query: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        norm = np.linalg.norm(query)
        return 1.0 - gallery @ (query / norm if norm > 0 else query)
    difference = gallery - query
    return np.sqrt(np.einsum("ij,ij->i", difference, difference))


def _tie(distance: float) -> float:
    """Return the tolerance within which two float64 distances near ``distance`` tie."""
    return TIE_TOLERANCE * max(1.0, abs(distance))


def _first(distances: np.ndarray, allowed: np.ndarray) -> int | None:
    """Return the allowed item ranked first (smallest distance, then lowest index), or None."""
    if not allowed.any():
        return None
    candidates = np.flatnonzero(allowed)
    nearest = distances[candidates].min()
    return int(candidates[distances[candidates] <= nearest + _tie(nearest)][0])


def _rank(distances: np.ndarray, kept: np.ndarray, item: int) -> int:
    """Return the 1-based rank of ``item`` among the kept items (ties by index)."""
    value = distances[item]
    tied = np.abs(distances - value) <= _tie(value)
    ahead = (~tied & (distances < value)) | (tied & (np.arange(len(kept)) < item))
    return int((ahead & kept).sum()) + 1
