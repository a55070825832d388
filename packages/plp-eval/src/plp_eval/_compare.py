"""Paired comparison of two results on the same queries: bootstrap CI and sign-flip p-value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_core import CONFIDENCE, PERMUTATIONS
from plp_eval._bootstrap import (
    RESAMPLES,
    HasPerQuery,
    check_resampling,
    resample_weights,
)
from plp_eval._errors import PlpEvalError
from plp_eval._per_query import IdentitySums, PerQuery
from plp_eval._threads import single_threaded_blas

__all__ = ["Comparison", "MetricComparison", "compare", "sign_flip_p_values"]


# Sign flips drawn at once: about this many signs (8 bytes each) exist at a time.
_SIGNS_PER_BLOCK = 1 << 21


@dataclass(frozen=True)
class MetricComparison:
    """One metric of A and of B, their difference A - B, its interval and p-value."""

    a: float
    b: float
    difference: float
    interval: tuple[float, float]
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (``interval`` as ``[low, high]``)."""
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "ci": [self.interval[0], self.interval[1]],
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class Comparison:
    """The paired comparison of two results, metric by metric (see :func:`compare`).

    Attributes:
        metrics: Each metric's :class:`MetricComparison`.
        num_identities: Identities with a valid query (the resampled and flipped units).
        num_queries: Valid queries.
        resamples: Bootstrap resamples of the intervals.
        permutations: Sign flips drawn, or ``2 ** num_identities`` when all were enumerated.
        exact: Whether the p-values come from all ``2 ** num_identities`` sign flips.
        confidence: Confidence level of the intervals.
        seed: Seed of the draws.
    """

    metrics: dict[str, MetricComparison]
    num_identities: int
    num_queries: int
    resamples: int
    permutations: int
    exact: bool
    confidence: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        return {
            "metrics": {name: result.to_dict() for name, result in self.metrics.items()},
            "num_identities": self.num_identities,
            "num_valid_queries": self.num_queries,
            "resamples": self.resamples,
            "permutations": self.permutations,
            "exact": self.exact,
            "confidence": self.confidence,
            "seed": self.seed,
            "method": (
                "difference A - B; paired percentile bootstrap over query identities; two-sided "
                "paired randomisation test (sign flips of identities)"
            ),
        }


def compare(
    metrics_a: HasPerQuery,
    metrics_b: HasPerQuery,
    *,
    resamples: int = RESAMPLES,
    permutations: int = PERMUTATIONS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """Return the paired comparison of two results computed on the same queries.

    Definitions (per metric, ``d_q`` = A's value minus B's for valid query ``q``):

    - **difference**: A's metric minus B's = the mean of ``d_q`` over the valid queries.
    - **interval**: paired percentile bootstrap over query identities: each resample draws
      identities with replacement (see :func:`plp_eval.bootstrap`) and takes the same
      queries from A and B, so that what the two share (hard queries) cancels; the
      ``(1 -/+ confidence) / 2`` quantiles of the resampled differences.
    - **p-value**: two-sided paired randomisation test. Under the null hypothesis A and B
      are exchangeable within each identity, so each identity's summed difference ``D_k``
      may have its sign flipped; the statistic ``T = sum_k s_k D_k / (valid queries)``,
      ``s_k = +-1``. With at most ``permutations`` flip patterns (``2 ** identities``) all
      are enumerated and ``p = #{|T*| >= |T|} / 2 ** identities`` exactly; otherwise
      ``permutations`` patterns are drawn uniformly and ``p = (1 + #{|T*| >= |T|}) / (1 +
      permutations)`` (never 0; Phipson and Smyth 2010). ``|T*|`` within ``1e-9`` of the
      total ``sum |D_k|`` / queries of ``|T|`` counts as a tie, i.e. as extreme. A result
      compared with itself has difference 0 and p = 1.

    Assumptions: as the bootstrap's (identities independent, gallery fixed); the test is
    exact under exchangeability for any number of identities, the interval approximate.
    p-values are per metric, not corrected for looking at several metrics.

    Args:
        metrics_a: A result with ``per_query()`` (e.g. :class:`plp_eval.ReidMetrics`).
        metrics_b: The same kind of result on the same queries.
        resamples: Bootstrap resamples of the intervals.
        permutations: Random sign flips of the test (fewer when all can be enumerated).
        confidence: Confidence level of the intervals.
        seed: Seed of the draws (bootstrap and sign flips from independent streams).

    Raises:
        PlpEvalError: Bad arguments, or the two results do not hold the same queries
            (count, labels, which are valid) or the same metrics.
    """
    check_resampling(resamples, "resamples", confidence)
    check_resampling(permutations, "permutations")
    table_a, table_b = metrics_a.per_query(), metrics_b.per_query()
    _check_same_queries(table_a, table_b)
    difference = PerQuery(
        table_a.names, table_a.values - table_b.values, table_a.identities, table_a.valid
    )
    sums = IdentitySums.of(difference)
    num_units, total = len(sums.identities), sums.counts.sum()
    bootstrap_rng, flip_rng = (
        np.random.default_rng(stream) for stream in np.random.SeedSequence(seed).spawn(2)
    )
    statistics = np.empty((resamples, len(table_a.names)))
    done = 0
    for weights in resample_weights(bootstrap_rng, num_units, resamples):
        statistics[done : done + len(weights)] = sums.resampled(weights)[0]
        done += len(weights)
    low, high = np.quantile(statistics, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    p_values, flips, exact = sign_flip_p_values(sums.sums / total, permutations, flip_rng)
    means_a, means_b = table_a.means(), table_b.means()
    results = {
        name: MetricComparison(
            a=means_a[name],
            b=means_b[name],
            difference=float(sums.sums[:, i].sum() / total),
            interval=(float(low[i]), float(high[i])),
            p_value=float(p_values[i]),
        )
        for i, name in enumerate(table_a.names)
    }
    return Comparison(
        metrics=results,
        num_identities=num_units,
        num_queries=int(total),
        resamples=resamples,
        permutations=flips,
        exact=exact,
        confidence=confidence,
        seed=seed,
    )


def sign_flip_p_values(
    contributions: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, bool]:
    """Return the two-sided sign-flip p-value of each column, the flips made, and exactness.

    ``contributions`` is ``(units, metrics)``: the statistic is the column sum, each unit's
    sign flipped at random under the null. See :func:`compare` for the definition.
    """
    num_units = len(contributions)
    observed = np.abs(contributions.sum(axis=0))  # no unit flipped
    tolerance = 1e-9 * np.abs(contributions).sum(axis=0)
    extreme = np.zeros(contributions.shape[1], dtype=np.int64)
    exact = num_units < 63 and 2**num_units <= permutations
    total = 2**num_units if exact else permutations
    block = max(1, _SIGNS_PER_BLOCK // max(num_units, 1))
    sums = contributions.sum(axis=0)
    for start in range(0, total, block):
        rows = min(block, total - start)
        bits: np.ndarray
        if exact:  # row r: unit k flipped where bit k of r is set
            patterns = np.arange(start, start + rows, dtype=np.int64)[:, None]
            bits = (patterns >> np.arange(num_units, dtype=np.int64)) & 1
        else:  # uniform random bits, 8 from each random byte
            packed = np.frombuffer(rng.bytes(rows * ((num_units + 7) // 8)), dtype=np.uint8)
            bits = np.unpackbits(packed.reshape(rows, -1), axis=1, count=num_units)
        with single_threaded_blas():  # see IdentitySums
            flipped = np.abs(sums - 2.0 * (bits.astype(np.float64) @ contributions))
        extreme += (flipped >= observed - tolerance).sum(axis=0)
    p_values = extreme / total if exact else (1.0 + extreme) / (1.0 + total)
    return np.minimum(p_values, 1.0), total, exact


def _check_same_queries(table_a: PerQuery, table_b: PerQuery) -> None:
    """Raise PlpEvalError unless both tables hold the same queries and metrics."""
    if table_a.names != table_b.names:
        raise PlpEvalError(
            f"the results hold different metrics: {', '.join(table_a.names)} vs "
            f"{', '.join(table_b.names)}"
        )
    if len(table_a.identities) != len(table_b.identities):
        raise PlpEvalError(
            f"the results rank different queries: {len(table_a.identities)} vs "
            f"{len(table_b.identities)} queries"
        )
    for what, left, right in (
        ("labels", table_a.identities, table_b.identities),
        ("valid queries (queries with a match)", table_a.valid, table_b.valid),
    ):
        if not np.array_equal(left, right):
            row = int(np.flatnonzero(left != right)[0])
            raise PlpEvalError(
                f"the results rank different queries: their {what} differ at query {row} "
                f"({left[row]} vs {right[row]})"
            )
