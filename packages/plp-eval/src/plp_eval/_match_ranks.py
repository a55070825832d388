"""Re-ID metrics from the ranks of each query's matches: the one place their sums are written."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._errors import PlpEvalError

__all__ = ["VALUES", "ReidMetrics", "query_values", "summarize"]

# Columns of the per-query values: rank of the first match (0: no match), AP, INP,
# R-precision, AP@R. Per query, so that any split of the queries (blocks, threads, processes)
# sums to the same bits.
VALUES = 5


@dataclass(frozen=True)
class ReidMetrics:
    """Re-ID ranking metrics over the valid queries (see :func:`plp_eval.reid_metrics`).

    Attributes:
        cmc: ``(max_rank,)`` float64; ``cmc[k-1]`` is the share of valid queries whose first
            match is at rank <= k.
        mean_average_precision: Mean over valid queries of AP over the whole ranking.
        mean_inp: Mean over valid queries of INP = R / rank of the last match.
        precision_at_1: Share of valid queries whose first ranked item is a match (= cmc[0]).
        r_precision: Mean over valid queries of (matches among the first R ranked) / R.
        map_at_r: Mean over valid queries of AP@R = (1/R) sum over the matches ranked within
            the first R of (matches up to that rank) / rank.
        num_queries: Queries given.
        num_valid_queries: Queries with at least one match (R >= 1) left in the gallery.
        average_precision: ``(num_queries,)`` AP of each query, NaN where it has no match
            (for picking the worst queries; not part of :meth:`to_dict`).
    """

    cmc: np.ndarray
    mean_average_precision: float
    mean_inp: float
    precision_at_1: float
    r_precision: float
    map_at_r: float
    num_queries: int
    num_valid_queries: int
    average_precision: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a flat JSON-serialisable dict."""
        result: dict[str, Any] = {
            f"rank-{k}": float(self.cmc[k - 1]) for k in (1, 5, 10) if k <= len(self.cmc)
        }
        result.update(
            {
                "mAP": float(self.mean_average_precision),
                "mINP": float(self.mean_inp),
                "precision@1": float(self.precision_at_1),
                "R-precision": float(self.r_precision),
                "MAP@R": float(self.map_at_r),
                "num_queries": int(self.num_queries),
                "num_valid_queries": int(self.num_valid_queries),
                "cmc": [float(v) for v in self.cmc],
            }
        )
        return result


def query_values(
    match_ranks: np.ndarray, num_matches: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """Return the ``(B, VALUES)`` per-query values of a block of ranked queries.

    Args:
        match_ranks: Flat int64 buffer; query ``r``'s match ranks (1-based, ascending) are
            ``match_ranks[starts[r] : starts[r] + num_matches[r]]``.
        num_matches: ``(B,)`` matches R of each query (0: not valid).
        starts: ``(B,)`` where each query's ranks start.

    Example:
        >>> # ranks 2 and 4 (R = 2): first 2, AP (1/2 + 2/4) / 2, INP 2/4, one of 2 in the top 2
        >>> query_values(np.array([2, 4, 9]), np.array([2]), np.array([0])).tolist()
        [[2.0, 0.5, 0.5, 0.5, 0.25]]
    """
    rows = len(num_matches)
    values = np.zeros((rows, VALUES), dtype=np.float64)
    total = int(num_matches.sum())
    if total == 0:
        return values
    row = np.repeat(np.arange(rows), num_matches)
    first = np.cumsum(num_matches) - num_matches  # position of each row's first match, packed
    position = np.arange(total) - first[row]  # 0-based index of the match within its row
    ranks = match_ranks[np.repeat(starts, num_matches) + position].astype(np.float64)
    per_match = (position + 1) / ranks  # precision at each match's rank
    within = ranks <= num_matches[row]  # ranked within the first R
    count = np.maximum(num_matches, 1).astype(np.float64)
    valid = num_matches > 0
    values[valid, 0] = ranks[first[valid]]
    values[:, 1] = np.bincount(row, per_match, minlength=rows) / count
    values[valid, 2] = num_matches[valid] / ranks[first[valid] + num_matches[valid] - 1]
    values[:, 3] = np.bincount(row, within, minlength=rows) / count
    values[:, 4] = np.bincount(row, per_match * within, minlength=rows) / count
    return values


def summarize(values: np.ndarray, max_rank: int) -> ReidMetrics:
    """Return the metrics of all queries' ``(Q, VALUES)`` values (means over valid queries).

    Raises:
        PlpEvalError: No query has a match.
    """
    first_rank = values[:, 0].astype(np.int64)
    valid = first_rank > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise PlpEvalError("no query has a match in the gallery: nothing to evaluate")
    if num_valid < len(values):
        warnings.warn(
            f"{len(values) - num_valid} of {len(values)} queries have no match in the gallery "
            "and are left out",
            stacklevel=3,
        )
    firsts = first_rank[valid]
    counts = np.bincount(firsts[firsts <= max_rank] - 1, minlength=max_rank)
    means = values[valid, 1:].sum(axis=0) / num_valid
    return ReidMetrics(
        cmc=np.cumsum(counts) / num_valid,
        mean_average_precision=float(means[0]),
        mean_inp=float(means[1]),
        precision_at_1=float(np.count_nonzero(firsts == 1) / num_valid),
        r_precision=float(means[2]),
        map_at_r=float(means[3]),
        num_queries=len(values),
        num_valid_queries=num_valid,
        average_precision=np.where(valid, values[:, 1], np.nan),
    )
