"""Per-query values with their identities: what the bootstrap, the comparison and breakdowns use."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._errors import PlpEvalError
from plp_eval._threads import single_threaded_blas

__all__ = ["IdentitySums", "PerQuery"]


@dataclass(frozen=True)
class PerQuery:
    """Each query's value of each metric, and the identity it belongs to.

    A metric of the result is the mean of its column over the valid queries; the identities
    are the units a bootstrap resamples (all queries of one identity together).

    Attributes:
        names: The metric of each column of ``values``.
        values: ``(Q, len(names))`` float64; rows of invalid queries are ignored.
        identities: ``(Q,)`` int64 identity (label) of each query.
        valid: ``(Q,)`` bool, the queries the metrics average over.
        curves: Named step curves: ``(steps, length)``, query ``q``'s curve being 0 before
            rank ``steps[q]`` and 1 from it on, over ranks 1 to ``length`` (``steps[q] = 0``:
            never 1). The CMC curve is the mean of such curves (steps: first-match ranks).
    """

    names: tuple[str, ...]
    values: np.ndarray
    identities: np.ndarray
    valid: np.ndarray
    curves: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Return the mean of each column over the valid queries (the metrics themselves)."""
        chosen = self.values[self.valid]
        return {name: float(chosen[:, i].sum() / len(chosen)) for i, name in enumerate(self.names)}


@dataclass(frozen=True)
class IdentitySums:
    """Per-identity sums of the valid queries' values: the whole input of a cluster bootstrap.

    ``sums[k]`` is the sum of the valid queries' values of identity ``identities[k]``,
    ``counts[k]`` their number; an identity without a valid query is left out. A resample's
    metric is ``(w @ sums) / (w @ counts)`` for the number of times ``w`` each identity is
    drawn. ``steps[name]`` is a step curve's ``(length, identities)`` sparse histogram of
    steps (the curve's sums are its cumulative sums along the ranks).
    """

    identities: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    steps: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, table: PerQuery, values: np.ndarray | None = None) -> IdentitySums:
        """Return the sums of ``values`` (default: the table's columns) by identity."""
        values = table.values if values is None else values
        chosen = np.flatnonzero(table.valid)
        if len(chosen) == 0:
            raise PlpEvalError("no query has a match: there is nothing to resample")
        identities, inverse = np.unique(table.identities[chosen], return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(len(identities)))
        sums = np.add.reduceat(values[chosen][order], starts, axis=0)
        counts = np.bincount(inverse, minlength=len(identities)).astype(np.float64)
        steps = {}
        if table.curves:
            import scipy.sparse

            for name, (curve_steps, length) in table.curves.items():
                step = curve_steps[chosen]
                inside = (step >= 1) & (step <= length)
                steps[name] = scipy.sparse.csr_matrix(
                    (np.ones(int(inside.sum())), (step[inside] - 1, inverse[inside])),
                    shape=(length, len(identities)),
                )  # duplicates are summed: a histogram, ranks x identities
        return cls(identities, sums, counts, steps)

    def resampled(self, weights: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return the ``(rows, columns)`` means and each curve's ``(rows, length)`` means.

        ``weights`` is ``(rows, identities)``: how often each identity is drawn, per resample.
        The products run on one BLAS thread: they are memory-bound, and on a busy machine a
        multithreaded BLAS spins instead of working (measured 5x slower under load).
        """
        with single_threaded_blas():
            both = weights @ self.sums_and_counts
            totals = both[:, -1]
            curves = {
                name: np.cumsum((histogram @ weights.T).T, axis=1) / totals[:, None]
                for name, histogram in self.steps.items()
            }
        return both[:, :-1] / totals[:, None], curves

    @functools.cached_property
    def sums_and_counts(self) -> np.ndarray:
        """The ``(identities, columns + 1)`` sums with the counts as last column."""
        return np.concatenate([self.sums, self.counts[:, None]], axis=1)
