"""Names that several packages share, kept in one place."""

from __future__ import annotations

from typing import Literal

__all__ = ["DISTANCES", "RANKING_METRICS", "Distance", "RankingMetric"]

Distance = Literal["euclidean", "squared_euclidean", "cosine"]
#: Pairwise distances: ``euclidean`` (L2), ``squared_euclidean``, ``cosine`` (1 - cosine
#: similarity). Losses take any of them.
DISTANCES: tuple[Distance, ...] = ("euclidean", "squared_euclidean", "cosine")

RankingMetric = Literal["euclidean", "cosine"]
#: The distances retrieval ranks and reports by (``squared_euclidean`` ranks as ``euclidean``
#: does, so evaluation offers the two whose values users read).
RANKING_METRICS: tuple[RankingMetric, ...] = ("euclidean", "cosine")
