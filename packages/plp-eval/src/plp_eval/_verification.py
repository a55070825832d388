"""Verification: the ROC of "same label" against the pair distance, its operating points and EER.

Every query-gallery pair of the protocol is one verification trial (junk pairs left out; see
:mod:`plp_eval._junk`): *positive* when the labels agree, *negative* otherwise. Accepting the
pairs with ``distance <= threshold`` gives a true-positive rate (TPR: accepted positives /
positives) and a false-match rate (FMR: accepted negatives / negatives); the ROC is these rates
at every distinct pair distance (scikit-learn's ``roc_curve`` of ``-distance`` with
``drop_intermediate=False``, starting at the point (0, 0) where nothing is accepted).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels, as_query_gallery
from plp_eval._errors import PlpEvalError
from plp_eval._junk import junk_keys, junk_mask
from plp_eval._open_set import OpenSetMetrics, OpenSetTally
from plp_eval._operating_point import OperatingPoint, allowed
from plp_eval._pair_counts import BlockSource, Located, PairCounts, Target, count_pairs
from plp_eval._problem import check_metric, check_same_rows, row_squares

__all__ = [
    "FMR_TARGETS",
    "OperatingPoint",
    "VerificationMetrics",
    "verification_from_distances",
    "verification_metrics",
]

FMR_TARGETS = (1e-2, 1e-3, 1e-4)
# Pairs per block of query rows (a GEMM of fewer rows runs at half speed): the block's
# distances, masks and bins stay near 50 MiB.
PAIRS_PER_BLOCK = 1 << 22
_CURVE_POINTS = 256


@dataclass(frozen=True)
class VerificationMetrics:
    """Verification metrics of a protocol's query-gallery pairs (:func:`verification_metrics`).

    Attributes:
        metric: The distance (``euclidean`` or ``cosine``).
        num_positive_pairs: Same-label pairs, junk left out.
        num_negative_pairs: Different-label pairs, junk left out.
        operating_points: At each FMR target with at least ``1 / target`` negative pairs.
        eer: The equal error rate: ``(FMR + FNMR) / 2`` at the ROC point where
            ``|FMR - FNMR|`` is smallest (FNMR = 1 - TPR; the first such point on a tie).
        eer_threshold: The distance of that point (``-inf``: the point (0, 0)).
        roc_fmr: FMR of a thinned ROC (at most a few hundred exact points), for plots.
        roc_tpr: TPR of those points.
        roc_thresholds: An upper bound on the distance of each point (its bin's top).
        open_set: Open-set identification, when asked for (None otherwise).
    """

    metric: str
    num_positive_pairs: int
    num_negative_pairs: int
    operating_points: tuple[OperatingPoint, ...]
    eer: float
    eer_threshold: float
    roc_fmr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)
    roc_thresholds: np.ndarray = field(repr=False)
    open_set: OpenSetMetrics | None = None

    def threshold_at(self, target_fmr: float) -> float:
        """Return the threshold of the operating point at ``target_fmr``.

        Raises:
            PlpEvalError: No operating point at that target (not asked for, or too few
                negative pairs for it).
        """
        for point in self.operating_points:
            if point.target == target_fmr:
                return point.threshold
        have = ", ".join(f"{p.target:g}" for p in self.operating_points) or "none"
        raise PlpEvalError(
            f"no operating point at FMR {target_fmr:g} ({self.num_negative_pairs} negative pairs; "
            f"a target needs at least 1 / target of them); operating points at: {have}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a JSON-serialisable dict."""
        result: dict[str, Any] = {
            "metric": self.metric,
            "positive_pairs": self.num_positive_pairs,
            "negative_pairs": self.num_negative_pairs,
            "EER": self.eer,
            "EER_threshold": self.eer_threshold if math.isfinite(self.eer_threshold) else None,
            "operating_points": [point.to_dict() for point in self.operating_points],
        }
        if self.open_set is not None:
            result["open_set"] = self.open_set.to_dict([p.threshold for p in self.operating_points])
        return result


def verification_metrics(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    metric: str = "euclidean",
    *,
    query_groups: Any = None,
    gallery_groups: Any = None,
    query_in_gallery: bool = False,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    open_set: bool = False,
    far_targets: Sequence[float] | None = None,
) -> VerificationMetrics:
    """Return the verification ROC's operating points and EER over every query-gallery pair.

    Definitions (pairs: every query with every gallery item, less the junk of the protocol:
    the query itself with ``query_in_gallery``, its group, its label and camera):

    - ``euclidean`` is the L2 distance, ``cosine`` 1 - cosine similarity (a zero vector has
      similarity 0 with everything). Distances are computed in the features' precision
      (float32 features: a float32 matmul, as the ranking's scores) and are the values compared
      and reported.
    - At a target FMR ``t`` (reported when there are at least ``1 / t`` negative pairs): the ROC
      point with the largest TPR among those with ``FMR <= t`` -- the largest pair distance
      below the (k+1)-th smallest negative distance, ``k`` the most negatives with
      ``k / N <= t``; no interpolation. Its threshold is that distance; ``-inf`` when no pair
      can be accepted (the point (0, 0)).
    - EER: at the ROC point (the origin included) minimising ``|FMR - FNMR|``, the mean of the
      two; the first such point on a tie.
    - ``open_set`` (for ``query_gallery``): open-set identification, see
      :class:`~plp_eval.OpenSetMetrics`.

    Exact and memory-bounded: all pairs are counted (never sampled), block by block, in two
    passes for float32 distances (three for float64): no Q x G matrix is held (see
    :mod:`plp_eval._pair_counts`). Extra memory: the gallery in the matmul's layout, one block
    of ``PAIRS_PER_BLOCK`` (4M) pairs and the histograms.

    Raises:
        PlpEvalError: Bad shapes, NaN/inf features, an unknown metric, no positive or no
            negative pair, or a group with two labels.

    Example:
        >>> import numpy as np
        >>> gallery = np.array([[0.0], [2.0], [1.0]])
        >>> result = verification_metrics(np.array([[0.0], [3.0]]), [0, 1], gallery, [0, 0, 1])
        >>> result.num_positive_pairs, result.num_negative_pairs  # distances 0, 2, 2 and 1, 1, 3
        (3, 3)
        >>> round(result.eer, 4), result.eer_threshold  # at distance 1: FMR 2/3, FNMR 2/3
        (0.6667, 1.0)
    """
    check_metric(metric)
    queries, gallery = as_query_gallery(query_features, gallery_features)
    junk = _Junk.of(
        (query_labels, gallery_labels), (query_cameras, gallery_cameras),
        (query_groups, gallery_groups), (len(queries), len(gallery)), query_in_gallery,
    )  # fmt: skip
    source = _source(len(queries), len(gallery), _feature_distances(queries, gallery, metric), junk)
    return _metrics(source, metric, fmr_targets, open_set, far_targets, len(queries))


def verification_from_distances(
    distances: Any,
    query_labels: Any,
    gallery_labels: Any,
    query_cameras: Any = None,
    gallery_cameras: Any = None,
    *,
    query_groups: Any = None,
    gallery_groups: Any = None,
    query_in_gallery: bool = False,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    open_set: bool = False,
    far_targets: Sequence[float] | None = None,
    metric: str = "given",
) -> VerificationMetrics:
    """:func:`verification_metrics` over given distances ``(Q, G)`` (a matrix or a memory map).

    The values are taken as they are (float32 or float64; they must be finite and >= 0).
    """
    matrix = np.asarray(distances)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise PlpEvalError(f"distances must be a non-empty (Q, G) matrix, got {matrix.shape}")
    if matrix.dtype not in (np.float32, np.float64):
        matrix = matrix.astype(np.float64)
    num_queries, num_gallery = matrix.shape
    junk = _Junk.of(
        (query_labels, gallery_labels), (query_cameras, gallery_cameras),
        (query_groups, gallery_groups), matrix.shape, query_in_gallery,
    )  # fmt: skip

    def rows(start: int, stop: int) -> np.ndarray:
        block = np.array(matrix[start:stop])
        if not np.isfinite(block).all() or (block < 0).any():
            raise PlpEvalError("distances must be finite and >= 0")
        return block + 0.0  # -0.0 -> 0.0: one bit pattern per value

    source = _source(num_queries, num_gallery, (matrix.dtype, rows), junk)
    return _metrics(source, metric, fmr_targets, open_set, far_targets, num_queries)


def _feature_distances(queries: np.ndarray, gallery: np.ndarray, metric: str) -> tuple[Any, Any]:
    """Return ``(dtype, rows(start, stop) -> (B, G) distances)`` of the features."""
    dtype = np.float64 if np.float64 in (queries.dtype, gallery.dtype) else np.float32
    gallery = np.ascontiguousarray(gallery, dtype=dtype)
    if metric == "cosine":
        norms = np.sqrt(row_squares(gallery))
        unit = (gallery / np.where(norms > 0, norms, 1.0)[:, None]).astype(dtype)
    else:
        squares = row_squares(gallery).astype(dtype)

    def rows(start: int, stop: int) -> np.ndarray:
        block = np.asarray(queries[start:stop], dtype=dtype)
        if metric == "cosine":
            q_norms = np.sqrt(row_squares(block))
            block = (block / np.where(q_norms > 0, q_norms, 1.0)[:, None]).astype(dtype)
            out = block @ unit.T
            np.subtract(dtype(1), out, out=out)
            np.maximum(out, dtype(0), out=out)
        else:
            out = block @ gallery.T
            out *= dtype(-2)
            out += row_squares(block).astype(dtype)[:, None]
            out += squares[None, :]
            np.maximum(out, dtype(0), out=out)
            np.sqrt(out, out=out)
        out += dtype(0)  # -0.0 -> 0.0
        return out

    return np.dtype(dtype), rows


@dataclass(frozen=True)
class _Junk:
    """Labels and junk keys of both sides, checked (see :mod:`plp_eval._junk`)."""

    q_labels: np.ndarray
    g_labels: np.ndarray
    q_keys: np.ndarray | None
    g_keys: np.ndarray | None
    leave_self_out: bool

    @classmethod
    def of(
        cls,
        labels: tuple[Any, Any],
        cameras: tuple[Any, Any],
        groups: tuple[Any, Any],
        sizes: tuple[int, int],
        leave_self_out: bool,
    ) -> _Junk:
        q_labels = as_labels(labels[0], "query_labels", sizes[0])
        g_labels = as_labels(labels[1], "gallery_labels", sizes[1])
        if leave_self_out:
            check_same_rows(q_labels, g_labels, None, None)
        keys = junk_keys(q_labels, g_labels, *cameras, *groups)
        return cls(q_labels, g_labels, *keys, leave_self_out)


def _source(
    num_queries: int, num_gallery: int, distances: tuple[Any, Any], junk: _Junk
) -> BlockSource:
    dtype, rows = distances
    step = max(1, PAIRS_PER_BLOCK // num_gallery)
    g_labels, g_keys = junk.g_labels, junk.g_keys

    def blocks() -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
        for start in range(0, num_queries, step):
            stop = min(start + step, num_queries)
            labels = junk.q_labels[start:stop]
            keys = None if junk.q_keys is None else junk.q_keys[start:stop]
            mask = junk_mask(labels, g_labels, keys, g_keys, start, junk.leave_self_out)
            positive = labels[:, None] == g_labels[None, :]
            yield start, rows(start, stop), positive, None if mask is None else ~mask

    return BlockSource(num_queries, np.dtype(dtype), blocks)


def _metrics(
    source: BlockSource,
    metric: str,
    fmr_targets: Sequence[float],
    open_set: bool,
    far_targets: Sequence[float] | None,
    num_queries: int,
) -> VerificationMetrics:
    targets = sorted({float(t) for t in fmr_targets}, reverse=True)
    for target in targets:
        if not 0 < target < 1:
            raise PlpEvalError(f"FMR targets must be in (0, 1), got {target}")
    tally = OpenSetTally(num_queries) if open_set else None

    def wanted(positives: int, negatives: int) -> list[Target]:
        if positives == 0 or negatives == 0:
            return []
        reachable = [allowed(t, negatives) for t in targets]
        return [Target("crossing"), *(Target("negatives", k) for k in reachable if k > 0)]

    counts = count_pairs(source, wanted, first_pass=None if tally is None else tally.add)
    positives, negatives = counts.positives, counts.negatives
    if positives == 0 or negatives == 0:
        raise PlpEvalError(
            f"verification needs positive and negative pairs; the protocol leaves "
            f"{positives} positive and {negatives} negative pairs"
        )
    crossing, *located = counts.located
    reached = [t for t in targets if allowed(t, negatives) > 0]
    points = tuple(
        _point(t, spot, positives, negatives) for t, spot in zip(reached, located, strict=True)
    )
    eer, eer_threshold = _eer(crossing, positives, negatives)
    fmr, tpr, tops = _curve(counts)
    return VerificationMetrics(
        metric=metric,
        num_positive_pairs=positives,
        num_negative_pairs=negatives,
        operating_points=points,
        eer=eer,
        eer_threshold=eer_threshold,
        roc_fmr=fmr,
        roc_tpr=tpr,
        roc_thresholds=tops,
        open_set=None if tally is None else tally.metrics(far_targets),
    )


def _point(target: float, spot: Located, positives: int, negatives: int) -> OperatingPoint:
    """The ROC point just below the (k+1)-th smallest negative distance."""
    if spot.previous is None:  # nothing is accepted below it: the point (0, 0)
        return OperatingPoint(target, -math.inf, 0.0, 0.0)
    true, false = spot.before
    return OperatingPoint(target, spot.previous, false / negatives, true / positives)


def _eer(crossing: Located, positives: int, negatives: int) -> tuple[float, float]:
    """EER and its threshold from the first point with FMR >= FNMR and the one before it."""
    assert crossing.value is not None  # at the last point FMR = 1 >= FNMR = 0
    low_pos, low_neg = crossing.before
    high_pos, high_neg = low_pos + crossing.at[0], low_neg + crossing.at[1]
    # |FMR - FNMR| * P * N, exactly: above the crossing and below it.
    above = high_neg * positives - (positives - high_pos) * negatives
    below = (positives - low_pos) * negatives - low_neg * positives
    if above < below:
        pos, neg, threshold = high_pos, high_neg, crossing.value
    else:
        pos, neg = low_pos, low_neg
        threshold = -math.inf if crossing.previous is None else crossing.previous
    return (neg / negatives + 1 - pos / positives) / 2, threshold


def _curve(counts: PairCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A thinned ROC from the first pass's bins: exact points, log-spaced in FMR."""
    cumulative = np.cumsum(counts.histogram, axis=0)
    filled = np.flatnonzero(counts.histogram.sum(axis=1))
    tpr = cumulative[filled, 0] / counts.positives
    fmr = cumulative[filled, 1] / counts.negatives
    grid = np.geomspace(1.0 / max(counts.negatives, 1), 1.0, _CURVE_POINTS)
    chosen = np.unique(np.clip(np.searchsorted(fmr, grid, side="right") - 1, 0, None))
    return (
        np.concatenate([[0.0], fmr[chosen]]),
        np.concatenate([[0.0], tpr[chosen]]),
        np.concatenate([[-np.inf], counts.bin_tops(filled[chosen])]),
    )
