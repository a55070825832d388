"""Re-ID metrics from the ranks of each query's matches: the one place their sums are written."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._errors import PlpEvalError
from plp_eval._per_query import PerQuery

__all__ = ["CMC_RANKS", "VALUES", "ReidMetrics", "query_values", "summarize"]

CMC_RANKS = (1, 5, 10)  # the CMC ranks reported as ``rank-k`` (those within max_rank)

# Columns of the per-query values: rank of the first match (0: no match), AP, INP,
# R-precision, AP@R. Per query, so that any split of the queries (blocks, threads, processes)
# sums to the same bits.
VALUES = 5


def _empty_int() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def _empty_float() -> np.ndarray:
    return np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class ReidMetrics:
    """Re-ID ranking metrics over the valid queries (see :func:`plp_eval.reid_metrics`).

    Besides the means it keeps every query's own values (the per-query arrays below), from
    which :meth:`per_query` builds the table that :func:`plp_eval.bootstrap`,
    :func:`plp_eval.compare` and the breakdowns resample or group: no ranking is redone.

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
        query_labels: ``(num_queries,)`` int64 label (identity) of each query.
        first_match_rank: ``(num_queries,)`` int64 rank of each query's first match, 0 where
            it has no match.
        average_precision: ``(num_queries,)`` AP of each query, NaN where it has no match.
        inp: ``(num_queries,)`` INP of each query, NaN where it has no match.
        precision_at_r: ``(num_queries,)`` R-precision of each query, NaN where it has none.
        ap_at_r: ``(num_queries,)`` AP@R of each query, NaN where it has no match.

    The per-query arrays are not part of :meth:`to_dict`.
    """

    cmc: np.ndarray
    mean_average_precision: float
    mean_inp: float
    precision_at_1: float
    r_precision: float
    map_at_r: float
    num_queries: int
    num_valid_queries: int
    query_labels: np.ndarray = field(default_factory=_empty_int, repr=False)
    first_match_rank: np.ndarray = field(default_factory=_empty_int, repr=False)
    average_precision: np.ndarray = field(default_factory=_empty_float, repr=False)
    inp: np.ndarray = field(default_factory=_empty_float, repr=False)
    precision_at_r: np.ndarray = field(default_factory=_empty_float, repr=False)
    ap_at_r: np.ndarray = field(default_factory=_empty_float, repr=False)

    @property
    def valid(self) -> np.ndarray:
        """Return the ``(num_queries,)`` mask of the valid queries (at least one match)."""
        return self.first_match_rank > 0

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as a flat JSON-serialisable dict."""
        result: dict[str, Any] = {
            f"rank-{k}": float(self.cmc[k - 1]) for k in CMC_RANKS if k <= len(self.cmc)
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

    def per_query(self) -> PerQuery:
        """Return each query's value of every metric of :meth:`to_dict`, with its identity.

        Columns: ``rank-k`` (1 if the first match is at rank <= k, else 0; for the k of
        :meth:`to_dict`), ``mAP`` (the query's AP), ``mINP`` (its INP), ``precision@1``,
        ``R-precision``, ``MAP@R`` (its AP@R); the step curve ``cmc`` steps at the first
        match's rank. Their means over the valid queries are this result's metrics and CMC
        curve. Identities are the query labels.

        Raises:
            PlpEvalError: The result carries no per-query values (built by hand).
        """
        if len(self.first_match_rank) != self.num_queries or len(self.query_labels) != len(
            self.first_match_rank
        ):
            raise PlpEvalError(
                "these ReidMetrics carry no per-query values (query_labels and "
                "first_match_rank): compute them with plp_eval.reid_metrics"
            )
        first = self.first_match_rank
        valid = first > 0
        ranks = [k for k in CMC_RANKS if k <= len(self.cmc)]
        columns = [((first >= 1) & (first <= k)).astype(np.float64) for k in ranks]
        columns += [self.average_precision, self.inp, (first == 1).astype(np.float64)]
        columns += [self.precision_at_r, self.ap_at_r]
        names = [f"rank-{k}" for k in ranks] + ["mAP", "mINP", "precision@1"]
        values = np.stack(columns, axis=1)
        values[~valid] = 0.0
        return PerQuery(
            names=(*names, "R-precision", "MAP@R"),
            values=values,
            identities=self.query_labels,
            valid=valid,
            curves={"cmc": (first, len(self.cmc))},
        )

    def select(self, queries: Any) -> ReidMetrics:
        """Return the metrics of a subset of the queries (a boolean mask or indices).

        The same rankings, summarised over the chosen queries only (e.g. the queries of one
        category); nothing is ranked again.

        Raises:
            PlpEvalError: The mask has the wrong length, or no chosen query has a match.
        """
        chosen = np.asarray(queries)
        if chosen.dtype == bool and chosen.shape != (self.num_queries,):
            raise PlpEvalError(
                f"the query mask has shape {chosen.shape}, expected ({self.num_queries},)"
            )
        columns = (self.average_precision, self.inp, self.precision_at_r, self.ap_at_r)
        values = np.stack(
            [self.first_match_rank.astype(np.float64)]
            + [np.nan_to_num(column, nan=0.0) for column in columns],
            axis=1,
        )[chosen]
        labels = self.query_labels[chosen] if len(self.query_labels) else None
        return summarize(values, len(self.cmc), labels, warn=False)


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


def summarize(
    values: np.ndarray, max_rank: int, query_labels: Any = None, *, warn: bool = True
) -> ReidMetrics:
    """Return the metrics of all queries' ``(Q, VALUES)`` values (means over valid queries).

    Args:
        values: The per-query values of :func:`query_values`, all queries in order.
        max_rank: Length of the CMC curve.
        query_labels: ``(Q,)`` labels of the queries, kept for resampling and breakdowns.
        warn: Warn when some queries have no match.

    Raises:
        PlpEvalError: No query has a match.
    """
    first_rank = values[:, 0].astype(np.int64)
    valid = first_rank > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise PlpEvalError("no query has a match in the gallery: nothing to evaluate")
    if warn and num_valid < len(values):
        warnings.warn(
            f"{len(values) - num_valid} of {len(values)} queries have no match in the gallery "
            "and are left out",
            stacklevel=3,
        )
    firsts = first_rank[valid]
    counts = np.bincount(firsts[firsts <= max_rank] - 1, minlength=max_rank)
    means = values[valid, 1:].sum(axis=0) / num_valid
    labels = _empty_int() if query_labels is None else np.asarray(query_labels, dtype=np.int64)
    per_query = [np.where(valid, values[:, column], np.nan) for column in range(1, VALUES)]
    return ReidMetrics(
        cmc=np.cumsum(counts) / num_valid,
        mean_average_precision=float(means[0]),
        mean_inp=float(means[1]),
        precision_at_1=float(np.count_nonzero(firsts == 1) / num_valid),
        r_precision=float(means[2]),
        map_at_r=float(means[3]),
        num_queries=len(values),
        num_valid_queries=num_valid,
        query_labels=labels,
        first_match_rank=first_rank,
        average_precision=per_query[0],
        inp=per_query[1],
        precision_at_r=per_query[2],
        ap_at_r=per_query[3],
    )
