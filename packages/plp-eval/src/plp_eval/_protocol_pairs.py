"""What the plots draw, under the metrics' protocol: rank lists and query-gallery pair distances."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels, as_query_gallery
from plp_eval._errors import PlpEvalError
from plp_eval._junk import junk_keys, junk_pairs
from plp_eval._problem import check_metric, check_same_rows

__all__ = ["MAX_PAIRS", "PairDistances", "pair_distances", "protocol_rank_lists"]

MAX_PAIRS = 100_000
"""Default cap on the positive and on the negative pairs :func:`pair_distances` returns."""

_CHUNK_VALUES = 1 << 22  # float64 values of a distance chunk (32 MiB)
_LIST_BLOCK = 64  # queries ordered by one matrix product in protocol_rank_lists


@dataclass(frozen=True)
class _Problem:
    """Features, labels and junk keys of a query/gallery problem, checked."""

    queries: np.ndarray
    gallery: np.ndarray
    q_labels: np.ndarray
    g_labels: np.ndarray
    q_keys: np.ndarray | None
    g_keys: np.ndarray | None
    query_in_gallery: bool

    def junk(self, query_rows: Any, gallery_rows: Any) -> np.ndarray:
        """Return whether each (query, gallery) pair is junk (see :mod:`plp_eval._junk`)."""
        return junk_pairs(
            self.q_labels, self.g_labels, self.q_keys, self.g_keys,
            np.asarray(query_rows), np.asarray(gallery_rows), self.query_in_gallery,
        )  # fmt: skip

    def pair_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Return each query's numbers of positive and negative pairs in its ranking (int64).

        Junk always has the query's label (same label and key, or the query itself), so
        every other-label item is a negative pair; positives are the same-label items less
        the junk ones. Counted from label and key counts, without visiting the pairs.
        """
        same_label = _matching([self.q_labels], [self.g_labels])
        positive = same_label.copy()
        if self.q_keys is not None and self.g_keys is not None:
            positive -= _matching([self.q_labels, self.q_keys], [self.g_labels, self.g_keys])
        elif self.query_in_gallery:  # with keys, the query is among its own key's items
            positive -= 1
        return positive, len(self.g_labels) - same_label


def _problem(
    metric: str,
    count: tuple[str, Any],
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any,
    gallery_cameras: Any,
    query_groups: Any,
    gallery_groups: Any,
    query_in_gallery: bool,
) -> _Problem:
    """Return the checked problem; ``count`` is a (name, value) that must be an int >= 1."""
    check_metric(metric)
    name, value = count
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlpEvalError(f"{name} must be an integer >= 1, got {value!r}")
    queries, gallery = as_query_gallery(query_features, gallery_features)
    q_labels = as_labels(query_labels, "query_labels", len(queries))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(gallery))
    q_keys, g_keys = junk_keys(
        q_labels, g_labels, query_cameras, gallery_cameras, query_groups, gallery_groups
    )
    if query_in_gallery:
        check_same_rows(q_labels, g_labels, q_keys, g_keys)
    return _Problem(queries, gallery, q_labels, g_labels, q_keys, g_keys, query_in_gallery)


def _matching(query_columns: list[np.ndarray], gallery_columns: list[np.ndarray]) -> np.ndarray:
    """Return, for each query, how many gallery rows have its values in all the columns."""
    num_queries = len(query_columns[0])
    rows = np.stack(
        [np.concatenate([q, g]) for q, g in zip(query_columns, gallery_columns, strict=True)],
        axis=1,
    )
    _, codes = np.unique(rows, axis=0, return_inverse=True)
    codes = codes.ravel()
    counts = np.bincount(codes[num_queries:], minlength=int(codes.max()) + 1)
    return counts[codes[:num_queries]].astype(np.int64)


def _unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64 (zero rows stay zero: similarity 0)."""
    rows = rows.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _pair_distance(
    queries: np.ndarray, gallery: np.ndarray, metric: str
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Return a function of paired rows ``(q, g)`` giving their float64 distances."""
    cosine = metric == "cosine"

    def distances(query_rows: np.ndarray, gallery_rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(query_rows), dtype=np.float64)
        step = max(1, _CHUNK_VALUES // queries.shape[1])
        for start in range(0, len(query_rows), step):
            left = queries[query_rows[start : start + step]].astype(np.float64)
            right = gallery[gallery_rows[start : start + step]].astype(np.float64)
            if cosine:
                part = 1.0 - np.einsum("ij,ij->i", _unit(left), _unit(right))
            else:
                left -= right
                part = np.sqrt(np.einsum("ij,ij->i", left, left))
            out[start : start + len(part)] = part
        return out

    return distances


def protocol_rank_lists(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    *,
    k: int = 10,
    metric: str = "euclidean",
    queries: Any = None,
    query_in_gallery: bool = False,
    query_groups: Any = None,
    gallery_groups: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(indices, distances)`` of the first ``k`` items of each query's ranking.

    The ranking is that of :func:`plp_eval.reid_metrics`: the gallery by distance, equal
    distances by gallery index, with the protocol's junk left out (same label and camera,
    same group, the query itself: see :mod:`plp_eval._junk`). So position ``r``
    of a list is rank ``r + 1`` of the metrics: a query's first match in its list is at
    its ``first_match_rank``. Distances are float64 (``euclidean``: L2 from the exact
    differences; ``cosine``: 1 - cosine similarity), which orders like the metrics' exact
    arithmetic unless two distances differ by less than float64 rounding.

    Args:
        query_features: ``(Q, D)`` query embeddings.
        query_labels: ``(Q,)`` labels.
        gallery_features: ``(G, D)`` gallery embeddings.
        gallery_labels: ``(G,)`` labels.
        query_cameras: ``(Q,)`` cameras (with ``gallery_cameras``: the Market-1501 rule).
        gallery_cameras: ``(G,)`` cameras.
        k: Length of each list.
        metric: ``euclidean`` or ``cosine``.
        queries: Query rows to list (default: all), e.g. the worst and a few random ones.
        query_in_gallery: Query ``i`` is gallery item ``i`` (leave-one-out); it is left out.
        query_groups: ``(Q,)`` groups (sequences: one object's track, one label); with
            ``gallery_groups``, items of the query's group are left out.
        gallery_groups: ``(G,)`` groups.

    Returns:
        ``(len(queries), k)`` int64 gallery rows and float64 distances; a list with fewer
        than ``k`` items left is padded with -1 and NaN.

    Raises:
        PlpEvalError: Bad features, labels, cameras, groups, metric, ``k`` or query rows.
    """
    rule = _problem(
        metric, ("k", k), query_features, query_labels, gallery_features, gallery_labels,
        query_cameras, gallery_cameras, query_groups, gallery_groups, query_in_gallery,
    )  # fmt: skip
    rows = _query_rows(queries, len(rule.queries))
    indices = np.full((len(rows), k), -1, dtype=np.int64)
    distances = np.full((len(rows), k), np.nan)
    for line, (found, values) in enumerate(_first_k(rule, metric, rows, k)):
        indices[line, : len(found)] = found
        distances[line, : len(found)] = values
    return indices, distances


def _first_k(
    rule: _Problem, metric: str, rows: np.ndarray, k: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(gallery rows, distances)`` of the first ``k`` non-junk items of each query row.

    One matrix product (float64) orders the whole gallery for a block of queries; the items
    within its error bound of the k-th are then measured exactly (L2 of the differences, or
    1 - the unit rows' dot product) and sorted by (distance, gallery index). The bound is
    ``tolerance * scale`` with ``scale`` the largest value a distance term can reach, far
    above float64's error of a dot product of this length, so no item that ranks in the
    first ``k`` exactly is missed.
    """
    gallery = rule.gallery.astype(np.float64)
    cosine = metric == "cosine"
    if cosine:
        gallery = _unit(gallery)
    tolerance = max(1e-10, 64 * (gallery.shape[1] + 2) * np.finfo(np.float64).eps)
    gallery_squares = np.einsum("ij,ij->i", gallery, gallery)
    largest = float(np.sqrt(gallery_squares.max(initial=0.0)))
    everything = np.arange(len(gallery))
    for start in range(0, len(rows), _LIST_BLOCK):
        block = rows[start : start + _LIST_BLOCK]
        queries = rule.queries[block].astype(np.float64)
        queries = _unit(queries) if cosine else queries
        products = queries @ gallery.T
        if cosine:
            approximate, scales = 1.0 - products, np.full(len(block), 2.0)
        else:
            query_squares = np.einsum("ij,ij->i", queries, queries)
            approximate = query_squares[:, None] + gallery_squares[None, :] - 2.0 * products
            scales = (np.sqrt(query_squares) + largest) ** 2
        for row, query in enumerate(block):
            order = np.argsort(approximate[row], kind="stable")
            kept = order[~rule.junk(query, order)]
            if len(kept) > k:  # every item within the error bound of the k-th, measured exactly
                bound = approximate[row, kept[k - 1]] + 2.0 * tolerance * scales[row]
                kept = everything[approximate[row] <= bound]
                kept = kept[~rule.junk(query, kept)]
            if cosine:
                exact = 1.0 - gallery[kept] @ queries[row]
            else:
                difference = rule.gallery[kept].astype(np.float64) - queries[row]
                exact = np.einsum("ij,ij->i", difference, difference)
            first = np.lexsort((kept, exact))[:k]  # by distance, then gallery index
            yield kept[first], exact[first] if cosine else np.sqrt(exact[first])


def _query_rows(queries: Any, num_queries: int) -> np.ndarray:
    if queries is None:
        return np.arange(num_queries)
    rows = np.asarray(queries)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise PlpEvalError(f"queries must be 1-D integer query rows, got {rows.dtype} {rows.shape}")
    if len(rows) and (rows.min() < 0 or rows.max() >= num_queries):
        raise PlpEvalError(f"queries must be rows in [0, {num_queries}), got {rows.tolist()}")
    return rows.astype(np.int64)


@dataclass(frozen=True)
class PairDistances:
    """Distances of the protocol's query-gallery pairs, positive and negative, maybe sampled.

    Attributes:
        positive: Distances of the positive pairs returned (a query and one of its matches).
        negative: Distances of the negative pairs returned (another label, not junk).
        positive_pairs: ``(len(positive), 2)`` (query row, gallery row) of each.
        negative_pairs: ``(len(negative), 2)``.
        num_positive: Positive pairs in the protocol (all of them, sampled or not).
        num_negative: Negative pairs in the protocol.
    """

    positive: np.ndarray
    negative: np.ndarray
    positive_pairs: np.ndarray
    negative_pairs: np.ndarray
    num_positive: int
    num_negative: int

    @property
    def sampled(self) -> bool:
        """Whether fewer pairs are returned than the protocol has."""
        return len(self.positive) < self.num_positive or len(self.negative) < self.num_negative


def pair_distances(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    *,
    metric: str = "euclidean",
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
    query_in_gallery: bool = False,
    query_groups: Any = None,
    gallery_groups: Any = None,
) -> PairDistances:
    """Return the distances of the query-gallery pairs that the metrics rank.

    The pairs are every (query, gallery item) pair of :func:`plp_eval.reid_metrics`'
    rankings: junk left out (same label and camera, same group, the query itself; see
    :mod:`plp_eval._junk`), positive when the labels agree. With leave-one-out
    (``query_in_gallery``) both (i, j) and (j, i) are pairs, as each is in a ranking.

    When a kind has more than ``max_pairs`` pairs, ``max_pairs`` of them are drawn
    uniformly without replacement (``numpy.random.default_rng(seed)``; positives and
    negatives each on their own, so that the rare positives are not crowded out); the
    totals are always exact. Pairs are returned by query row, then gallery row. Time and
    memory grow with the pairs returned (and the junk among their candidates), never with
    queries x gallery.

    Args:
        query_features: ``(Q, D)``.
        query_labels: ``(Q,)``.
        gallery_features: ``(G, D)``.
        gallery_labels: ``(G,)``.
        query_cameras: ``(Q,)`` (with ``gallery_cameras``: the Market-1501 rule).
        gallery_cameras: ``(G,)``.
        metric: ``euclidean`` (L2) or ``cosine`` (1 - cosine similarity), float64.
        max_pairs: Cap on the positive pairs and on the negative pairs returned.
        seed: Seed of the sampling.
        query_in_gallery: Leave-one-out: query ``i`` is gallery item ``i``.
        query_groups: ``(Q,)`` groups (e.g. sequences), with ``gallery_groups``.
        gallery_groups: ``(G,)`` groups.

    Raises:
        PlpEvalError: Bad features, labels, cameras, groups, metric or ``max_pairs``.
    """
    rule = _problem(
        metric, ("max_pairs", max_pairs), query_features, query_labels, gallery_features,
        gallery_labels, query_cameras, gallery_cameras, query_groups, gallery_groups,
        query_in_gallery,
    )  # fmt: skip
    queries, gallery = rule.queries, rule.gallery
    num_positive, num_negative = rule.pair_counts()
    label_order = np.argsort(rule.g_labels, kind="stable")
    sorted_labels = rule.g_labels[label_order]
    group_start = np.searchsorted(sorted_labels, rule.q_labels, side="left")
    group_size = np.searchsorted(sorted_labels, rule.q_labels, side="right") - group_start

    def positive(query: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return label_order[group_start[query] + offset]

    def negative(query: np.ndarray, offset: np.ndarray) -> np.ndarray:
        skip = offset >= group_start[query]  # other labels: the label's block skipped
        return label_order[offset + np.where(skip, group_size[query], 0)]

    rng = np.random.default_rng(seed)
    distance = _pair_distance(queries, gallery, metric)
    found = []
    for per_query, total, decode in (
        (group_size, int(num_positive.sum()), positive),
        (len(gallery) - group_size, int(num_negative.sum()), negative),
    ):
        pairs = _draw(rng, per_query, total, min(total, max_pairs), decode, rule)
        found.append((distance(pairs[:, 0], pairs[:, 1]), pairs))
    return PairDistances(
        positive=found[0][0],
        negative=found[1][0],
        positive_pairs=found[0][1],
        negative_pairs=found[1][1],
        num_positive=int(num_positive.sum()),
        num_negative=int(num_negative.sum()),
    )


def _draw(
    rng: np.random.Generator,
    per_query: np.ndarray,
    total: int,
    wanted: int,
    decode: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rule: _Problem,
) -> np.ndarray:
    """Return ``wanted`` of the ``total`` non-junk candidate pairs, uniformly, as ``(n, 2)``.

    Candidate ``c`` (numbered query by query, ``per_query`` each, junk included) is the
    ``offset``-th candidate of its query; ``decode`` maps it to a gallery row. A uniform
    sample of the non-junk candidates is the first ``wanted`` non-junk ones of a random
    draw of candidates without replacement, in draw order (oversampled by the junk share;
    a draw with too few is replaced by one twice as large).
    """
    ends = np.cumsum(per_query)
    candidates = int(ends[-1]) if len(ends) else 0

    def pairs_of(numbers: np.ndarray) -> np.ndarray:
        query = np.searchsorted(ends, numbers, side="right")
        offset = numbers - (ends[query] - per_query[query])
        rows = decode(query, offset)
        keep = ~rule.junk(query, rows)
        return np.stack([query[keep], rows[keep]], axis=1)

    if wanted == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if wanted == total:
        pairs = pairs_of(np.arange(candidates))
    else:  # each try is a uniform draw; a try that holds enough gives a uniform sample
        size = int(np.ceil(wanted * candidates / total * 1.25)) + 64
        while True:
            if size >= candidates:
                pairs = pairs_of(np.arange(candidates))
                pairs = pairs[rng.choice(len(pairs), size=wanted, replace=False)]
                break
            pairs = pairs_of(rng.choice(candidates, size=size, replace=False))[:wanted]
            if len(pairs) == wanted:
                break
            size *= 2
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
