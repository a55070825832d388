"""Open-set identification: DIR at FAR, where a query of an absent identity must be rejected.

Each query is answered by its nearest gallery item (junk left out; ties to the lower gallery
index), accepted when its distance is ``<= threshold``. A *mated* query has a match left in the
gallery; a *non-mated* one (its identity absent) has none. At a threshold,

- the detection and identification rate DIR is the share of mated queries whose nearest item is
  a match and is accepted;
- the false alarm rate FAR is the share of non-mated queries whose nearest item is accepted.

DIR at a target FAR ``t`` (reported with at least ``1 / t`` non-mated queries) is taken at the
largest threshold with ``FAR <= t``: just below the (k+1)-th smallest nearest distance of the
non-mated queries, ``k`` the most with ``k / M <= t``; no interpolation (NIST's open-set
identification, rank 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._operating_point import OperatingPoint, allowed

__all__ = ["FAR_TARGETS", "OpenSetMetrics", "OpenSetTally"]

FAR_TARGETS = (1e-1, 1e-2, 1e-3)


@dataclass(frozen=True)
class OpenSetMetrics:
    """Open-set identification metrics (see :mod:`plp_eval._open_set`).

    Attributes:
        num_mated: Queries with a match left in the gallery.
        num_non_mated: Queries without (their identity is absent from the gallery).
        rank_1: Share of mated queries whose nearest gallery item is a match (NaN: none).
        points: ``(target FAR, threshold, FAR, DIR)`` at each FAR target with at least
            ``1 / target`` non-mated queries.
        nearest: ``(Q,)`` distance of each query's nearest gallery item (inf: none left).
        nearest_is_match: ``(Q,)`` whether that item is a match.
        mated: ``(Q,)`` whether the query is mated.
    """

    num_mated: int
    num_non_mated: int
    rank_1: float
    points: tuple[OperatingPoint, ...]
    nearest: np.ndarray = field(repr=False)
    nearest_is_match: np.ndarray = field(repr=False)
    mated: np.ndarray = field(repr=False)

    def at_threshold(self, threshold: float) -> tuple[float, float]:
        """Return ``(DIR, FAR)`` when accepting nearest items at ``distance <= threshold``.

        A rate without queries to count is NaN.
        """
        accepted = self.nearest <= threshold
        hits = int((accepted & self.nearest_is_match & self.mated).sum())
        alarms = int((accepted & ~self.mated).sum())
        return _share(hits, self.num_mated), _share(alarms, self.num_non_mated)

    def to_dict(self, thresholds: Sequence[float] = ()) -> dict[str, Any]:
        """Return the metrics as a JSON-serialisable dict, with DIR and FAR at ``thresholds``."""
        return {
            "mated_queries": self.num_mated,
            "non_mated_queries": self.num_non_mated,
            "rank-1": _number(self.rank_1),
            "DIR@FAR": [point.to_dict("FAR", "DIR") for point in self.points],
            "at_thresholds": [
                {"threshold": _number(t), "DIR": _number(d), "FAR": _number(f)}
                for t in thresholds
                for d, f in [self.at_threshold(t)]
            ],
        }


def _share(count: int, total: int) -> float:
    return count / total if total else math.nan


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class OpenSetTally:
    """Gathers each query's nearest gallery item over the blocks of a verification pass."""

    def __init__(self, num_queries: int) -> None:
        self.nearest = np.full(num_queries, np.inf)
        self.is_match = np.zeros(num_queries, dtype=bool)
        self.mated = np.zeros(num_queries, dtype=bool)

    def add(
        self, start: int, distances: np.ndarray, positive: np.ndarray, valid: np.ndarray | None
    ) -> None:
        """Take in a block ``(B, G)`` of query rows ``start : start + B``."""
        masked = distances if valid is None else np.where(valid, distances, np.inf)
        rows = np.arange(len(distances))
        best = np.argmin(masked, axis=1)  # the first minimum: the lower gallery index
        stop = start + len(distances)
        self.nearest[start:stop] = masked[rows, best]
        self.is_match[start:stop] = positive[rows, best] & np.isfinite(masked[rows, best])
        kept = positive if valid is None else positive & valid
        self.mated[start:stop] = kept.any(axis=1)

    def metrics(self, far_targets: Sequence[float] | None = None) -> OpenSetMetrics:
        """Return the open-set metrics at ``far_targets`` (default :data:`FAR_TARGETS`)."""
        mated, non_mated = self.mated, ~self.mated
        num_mated, num_non_mated = int(mated.sum()), int(non_mated.sum())
        correct = mated & self.is_match
        alarms = np.sort(self.nearest[non_mated])
        # The distances where DIR or FAR change: the candidate thresholds.
        moves = np.unique(self.nearest[(correct | non_mated) & np.isfinite(self.nearest)])
        points = []
        for target in sorted(
            set(FAR_TARGETS if far_targets is None else far_targets), reverse=True
        ):
            k = allowed(float(target), num_non_mated) if num_non_mated else 0
            if k == 0:
                continue
            bound = alarms[k] if k < num_non_mated else np.inf
            below = moves[moves < bound]
            threshold = float(below[-1]) if len(below) else -math.inf
            hit_rate, alarm_rate = (
                _share(int((correct & (self.nearest < bound)).sum()), num_mated),
                int((alarms < bound).sum()) / num_non_mated,
            )
            points.append(OperatingPoint(float(target), threshold, alarm_rate, hit_rate))
        return OpenSetMetrics(
            num_mated=num_mated,
            num_non_mated=num_non_mated,
            rank_1=_share(int(correct.sum()), num_mated),
            points=tuple(points),
            nearest=self.nearest.copy(),
            nearest_is_match=self.is_match.copy(),
            mated=self.mated.copy(),
        )
