"""The audit's result: its four lists' entries, the score definitions, a JSON form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCORES",
    "Audit",
    "AuditSplit",
    "DuplicateIdentities",
    "ImageRef",
    "Leak",
    "MislabeledImage",
    "Outlier",
]

SCORES = {
    "mislabeled": (
        "mean of d_own / (d_own + d_other) and the share of the k nearest neighbours with "
        "another label; d_own: distance to the image's class centroid without the image, "
        "d_other: to the nearest other class centroid; listed when d_other < d_own or most "
        "neighbours share one other label; highest first"
    ),
    "duplicate_identities": (
        "spread / (spread + gap) of two classes whose centroids are mutual nearest neighbours; "
        "gap: distance between the centroids, spread: mean of the two classes' root-mean-square "
        "distances to their centroids; 1 when the centroids coincide; highest first"
    ),
    "leakage": (
        "embedding distance of an image pair across two splits, listed when below the "
        "threshold or when the pixels are identical; identical pixels first, then smallest first"
    ),
    "outliers": (
        "distance to the nearest class centroid in units of that class's root-mean-square "
        "spread (own class without the image); highest first"
    ),
}
"""What each list's score is and how the list is ordered."""


@dataclass(frozen=True)
class AuditSplit:
    """One split's arrays, row ``i`` being image ``i`` of the split.

    Attributes:
        features: ``(N, D)`` embeddings.
        labels: ``(N,)`` class or identity labels.
        cameras: ``(N,)`` camera ids, or None.
        hashes: One pixel hash per image (:func:`pixel_hash`), or None: leakage then goes by
            embeddings only.
        groups: ``(N,)`` group ids (a dataset CSV's sequences, numbered alike in every
            split), or None. Images of an image's own group do not vote on its label, and a
            pair of one group is not leakage between splits the protocol ranks against each
            other (it leaves such pairs out of the ranking).
    """

    features: Any
    labels: Any
    cameras: Any = None
    hashes: Sequence[str] | None = None
    groups: Any = None


@dataclass(frozen=True)
class ImageRef:
    """An image: its split and its row in that split."""

    split: str
    index: int

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"split": ..., "index": ...}``."""
        return {"split": self.split, "index": self.index}


@dataclass(frozen=True)
class MislabeledImage:
    """An image that looks like another class (see :data:`SCORES`)."""

    image: ImageRef
    label: int
    suggested_label: int  # the class of the nearest other centroid
    score: float
    own_distance: float
    other_distance: float
    neighbour_agreement: float  # share of its k nearest neighbours with its label


@dataclass(frozen=True)
class DuplicateIdentities:
    """Two classes that may be one identity (see :data:`SCORES`)."""

    labels: tuple[int, int]
    score: float
    gap: float
    spreads: tuple[float, float]
    sizes: tuple[int, int]
    examples: tuple[tuple[ImageRef, ...], tuple[ImageRef, ...]]  # nearest their centroids
    cameras: tuple[tuple[int, ...], tuple[int, ...]] | None  # where each was seen

    @property
    def shared_cameras(self) -> tuple[int, ...] | None:
        """Cameras both classes were seen in (none: an identity split across cameras)."""
        if self.cameras is None:
            return None
        return tuple(sorted(set(self.cameras[0]) & set(self.cameras[1])))


@dataclass(frozen=True)
class Leak:
    """Two near-duplicate images of two splits (see :data:`SCORES`)."""

    first: ImageRef
    second: ImageRef
    distance: float
    identical_pixels: bool


@dataclass(frozen=True)
class Outlier:
    """An image far from every centroid (see :data:`SCORES`)."""

    image: ImageRef
    label: int
    score: float
    nearest_label: int  # the class whose centroid is nearest in spreads
    distance: float  # to that centroid


@dataclass(frozen=True)
class Audit:
    """The four lists, most suspect first, and how they were made.

    Attributes:
        metric: ``euclidean`` (L2) or ``cosine`` (1 - cosine similarity).
        neighbours: k of the neighbour vote.
        leakage_thresholds: Per checked pair ``"first/second"``, the distance threshold used.
        totals: Per list, how many entries were found before the list was cut.
    """

    metric: str
    neighbours: int
    leakage_thresholds: Mapping[str, float]
    totals: Mapping[str, int]
    mislabeled: tuple[MislabeledImage, ...]
    duplicate_identities: tuple[DuplicateIdentities, ...]
    leakage: tuple[Leak, ...]
    outliers: tuple[Outlier, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: settings, score definitions, totals and the four lists."""
        return {
            "metric": self.metric,
            "neighbours": self.neighbours,
            "leakage_thresholds": dict(self.leakage_thresholds),
            "scores": dict(SCORES),
            "totals": dict(self.totals),
            "mislabeled": [
                {
                    **m.image.to_dict(),
                    "label": m.label,
                    "suggested_label": m.suggested_label,
                    "score": m.score,
                    "own_distance": m.own_distance,
                    "other_distance": m.other_distance,
                    "neighbour_agreement": m.neighbour_agreement,
                }
                for m in self.mislabeled
            ],
            "duplicate_identities": [_duplicate_dict(d) for d in self.duplicate_identities],
            "leakage": [
                {
                    "first": leak.first.to_dict(),
                    "second": leak.second.to_dict(),
                    "score": leak.distance,
                    "identical_pixels": leak.identical_pixels,
                }
                for leak in self.leakage
            ],
            "outliers": [
                {
                    **o.image.to_dict(),
                    "label": o.label,
                    "score": o.score,
                    "nearest_label": o.nearest_label,
                    "distance": o.distance,
                }
                for o in self.outliers
            ],
        }


def _duplicate_dict(pair: DuplicateIdentities) -> dict[str, Any]:
    return {
        "labels": list(pair.labels),
        "score": pair.score,
        "gap": pair.gap,
        "spreads": list(pair.spreads),
        "sizes": list(pair.sizes),
        "examples": [[ref.to_dict() for ref in refs] for refs in pair.examples],
        "cameras": None if pair.cameras is None else [list(c) for c in pair.cameras],
        "shared_cameras": None if pair.shared_cameras is None else list(pair.shared_cameras),
    }
