"""Class centroids, spreads and each image's distances to them, computed block by block.

The geometry behind the audit's label lists: every image's distance to its own class's centroid
(leave-one-out: the centroid of the *other* members, so an image never vouches for itself), to
the nearest other centroid, and in class spreads to the nearest centroid of all. Extra memory is
one block of ``rows x classes`` float64 distances (about 32 MiB) plus O(images + classes x dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClassGeometry",
    "ImageDistances",
    "block_rows",
    "class_geometry",
    "image_distances",
    "nearest_centroids",
    "pairwise",
    "rowwise",
    "unit_rows",
]

# Float64 cells in one block of distances (32 MiB).
BLOCK_CELLS = 1 << 22


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Return the rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def pairwise(rows: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    """Return float64 distances ``(len(rows), len(centres))``: L2, or 1 - cosine similarity.

    For ``cosine`` the rows must be unit vectors already; centres are scaled here (a zero
    centre is at distance 1 from everything).
    """
    rows = rows.astype(np.float64, copy=False)
    centres = centres.astype(np.float64, copy=False)
    if metric == "cosine":
        return 1.0 - rows @ unit_rows(centres).T
    squares = (rows**2).sum(1)[:, None] + (centres**2).sum(1)[None, :] - 2.0 * rows @ centres.T
    return np.sqrt(np.maximum(squares, 0.0))


def block_rows(num_columns: int) -> int:
    """Return how many rows a block of distances to ``num_columns`` items may have."""
    return max(1, BLOCK_CELLS // max(1, num_columns))


@dataclass(frozen=True)
class ClassGeometry:
    """The classes of a set of images.

    Attributes:
        labels: ``(C,)`` the class labels, sorted.
        members: ``(N,)`` each image's class, as an index into ``labels``.
        counts: ``(C,)`` images per class.
        centroids: ``(C, D)`` float64 mean feature of each class (of the unit rows for cosine).
        spreads: ``(C,)`` root-mean-square distance of a class's images to its centroid.
    """

    labels: np.ndarray
    members: np.ndarray
    counts: np.ndarray
    centroids: np.ndarray
    spreads: np.ndarray


def class_geometry(features: np.ndarray, labels: np.ndarray, metric: str) -> ClassGeometry:
    """Return centroids and spreads of the classes; ``features`` are unit rows for cosine."""
    classes, members = np.unique(labels, return_inverse=True)
    counts = np.bincount(members, minlength=len(classes))
    sums = np.zeros((len(classes), features.shape[1]), dtype=np.float64)
    step = block_rows(features.shape[1])
    for start in range(0, len(features), step):
        np.add.at(sums, members[start : start + step], features[start : start + step])
    centroids = sums / counts[:, None]
    squared = np.zeros(len(classes), dtype=np.float64)
    for start in range(0, len(features), step):
        rows = features[start : start + step]
        own = members[start : start + step]
        distances = rowwise(rows, centroids[own], metric)
        np.add.at(squared, own, distances**2)
    spreads = np.sqrt(squared / counts)
    return ClassGeometry(classes, members, counts, centroids, spreads)


def rowwise(rows: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    """Return the distance of ``rows[i]`` to ``centres[i]`` for every i (rows unit for cosine).

    Cosine distances are taken as ``|a - b|^2 / 2`` of the unit vectors (equal to 1 - cosine
    similarity, and exactly 0 for equal directions).
    """
    rows = rows.astype(np.float64, copy=False)
    if metric == "cosine":
        difference = rows - unit_rows(centres.astype(np.float64, copy=False))
        return 0.5 * np.einsum("ij,ij->i", difference, difference)
    difference = rows - centres
    return np.sqrt(np.einsum("ij,ij->i", difference, difference))


@dataclass(frozen=True)
class ImageDistances:
    """Each image's distances to the class centroids (NaN where undefined).

    Attributes:
        own: Distance to its own class's leave-one-out centroid (NaN for a class of one).
        other: Distance to the nearest other class's centroid (inf with a single class).
        other_class: That class, as an index into the classes (-1 with a single class).
        spreads_away: Distance to the nearest centroid in units of that class's spread, own
            class leave-one-out (inf where no class has a spread above zero).
        spreads_class: That class (-1 where ``spreads_away`` is inf).
        nearest: Distance to that class's centroid.
    """

    own: np.ndarray
    other: np.ndarray
    other_class: np.ndarray
    spreads_away: np.ndarray
    spreads_class: np.ndarray
    nearest: np.ndarray


def image_distances(features: np.ndarray, geometry: ClassGeometry, metric: str) -> ImageDistances:
    """Return every image's distances to the centroids, one block of images at a time."""
    count = len(features)
    own = np.empty(count)
    other = np.full(count, np.inf)
    other_class = np.full(count, -1, dtype=np.int64)
    spreads_away = np.full(count, np.inf)
    spreads_class = np.full(count, -1, dtype=np.int64)
    nearest = np.full(count, np.nan)
    num_classes = len(geometry.labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_spreads = np.where(geometry.spreads > 0, 1.0 / geometry.spreads, np.nan)
    step = block_rows(num_classes)
    for start in range(0, count, step):
        rows = features[start : start + step]
        block = slice(start, start + len(rows))
        classes = geometry.members[block]
        distances = pairwise(rows, geometry.centroids, metric)
        own[block] = _leave_one_out(rows, classes, geometry, metric)
        picked = np.arange(len(rows))
        distances[picked, classes] = np.inf
        if num_classes > 1:
            other_class[block] = distances.argmin(1)
            other[block] = distances[picked, other_class[block]]
        distances[picked, classes] = own[block]
        ratios = distances * inverse_spreads[None, :]
        ratios[~np.isfinite(ratios)] = np.inf
        best = ratios.argmin(1)
        best_ratio = ratios[picked, best]
        found = np.isfinite(best_ratio)
        spreads_away[block] = best_ratio
        spreads_class[block] = np.where(found, best, -1)
        nearest[block] = np.where(found, distances[picked, best], np.nan)
    return ImageDistances(own, other, other_class, spreads_away, spreads_class, nearest)


def _leave_one_out(
    rows: np.ndarray, classes: np.ndarray, geometry: ClassGeometry, metric: str
) -> np.ndarray:
    """Return each row's distance to its class's centroid without itself (NaN for singletons)."""
    counts = geometry.counts[classes].astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        others = (counts * geometry.centroids[classes] - rows) / (counts - 1.0)
    distances = rowwise(rows, others, metric)
    distances[counts[:, 0] < 2] = np.nan
    return distances


def nearest_centroids(geometry: ClassGeometry, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Return each class's nearest other class (index) and the distance between the centroids."""
    centroids = geometry.centroids
    rows_of = unit_rows(centroids) if metric == "cosine" else centroids
    count = len(centroids)
    nearest = np.full(count, -1, dtype=np.int64)
    gaps = np.full(count, np.inf)
    step = block_rows(count)
    for start in range(0, count, step):
        rows = rows_of[start : start + step]
        distances = pairwise(rows, centroids, metric)
        distances[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf
        nearest[start : start + len(rows)] = distances.argmin(1)
        gaps[start : start + len(rows)] = distances.min(1)
    return nearest, gaps
