"""Near-duplicate images between two splits: identical pixels (a hash) or close embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._class_geometry import rowwise, unit_rows
from plp_eval._errors import PlpEvalError

__all__ = [
    "LEAKAGE_FRACTION",
    "LEAKAGE_NEIGHBOURS",
    "LeakCandidates",
    "check_hashes",
    "leak_candidates",
    "nearest_others",
    "pixel_hash",
]

LEAKAGE_FRACTION = 0.1
"""Default threshold: this fraction of the median distance to the other split's nearest image."""

LEAKAGE_NEIGHBOURS = 5
"""Nearest images of the other split looked at per image (pairs past these are not listed)."""


def pixel_hash(image: Any) -> str:
    """Return a hex digest of an image's pixels: equal for equal arrays (shape, dtype, values).

    Takes a numpy array, a tensor or anything ``numpy.asarray`` takes (a PIL image). Two
    images share a hash exactly when their arrays are equal element for element (up to
    BLAKE2b collisions), so files that decode to the same pixels match whatever their bytes.

    >>> pixel_hash(np.zeros((2, 2), np.uint8)) == pixel_hash(np.zeros((2, 2), np.uint8))
    True
    >>> pixel_hash(np.zeros((2, 2), np.uint8)) == pixel_hash(np.zeros((2, 2), np.float32))
    False
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class LeakCandidates:
    """Pairs ``(first[p], second[p])`` of near-duplicates between two splits.

    Attributes:
        first: Row in the first split.
        second: Row in the second split.
        distance: Their embedding distance.
        identical: Whether their pixel hashes are equal.
        threshold: The embedding distance below which a pair is listed.
        total: Pairs found before any were left out (``len(first)`` at most this).
    """

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    identical: np.ndarray
    threshold: float
    total: int


def leak_candidates(
    first: np.ndarray,
    second: np.ndarray,
    *,
    metric: str,
    same_split: bool,
    first_hashes: Sequence[str] | None,
    second_hashes: Sequence[str] | None,
    threshold: float | None,
    limit: int,
    first_groups: np.ndarray | None = None,
    second_groups: np.ndarray | None = None,
) -> LeakCandidates:
    """Return the near-duplicate pairs, most suspect first: identical pixels, then by distance.

    Each image of ``first`` looks at its :data:`LEAKAGE_NEIGHBOURS` nearest images of ``second``
    (faiss, exact); a pair is listed when closer than ``threshold`` (default
    :data:`LEAKAGE_FRACTION` times the median distance from an image of ``first`` to its
    nearest image of ``second``) or when both have hashes and they are equal (every such pair,
    not only near neighbours). ``same_split``: the two are one split, a pair is listed once and
    an image is not its own duplicate. With ``first_groups`` and ``second_groups`` a pair of
    one group is not a duplicate (the protocol leaves it out of the ranking). At most
    ``limit`` pairs are kept.
    """
    indices, distances = nearest_others(
        first, second, k=LEAKAGE_NEIGHBOURS, metric=metric, same_split=same_split,
        first_groups=first_groups, second_groups=second_groups,
    )  # fmt: skip
    if threshold is None:
        nearest = distances[:, 0] if distances.shape[1] else np.zeros(0)
        nearest = nearest[np.isfinite(nearest)]
        threshold = LEAKAGE_FRACTION * float(np.median(nearest)) if len(nearest) else 0.0
    rows, columns = np.nonzero(distances < threshold)
    pairs = {(int(a), int(b)) for a, b in zip(rows, indices[rows, columns], strict=True)}
    identical: set[tuple[int, int]] = set()
    if first_hashes is not None and second_hashes is not None:
        identical = _equal_hashes(first_hashes, second_hashes, limit=10 * limit)
        if first_groups is not None and second_groups is not None:
            identical = {(a, b) for a, b in identical if first_groups[a] != second_groups[b]}
        pairs |= identical
    if same_split:
        pairs = {(min(a, b), max(a, b)) for a, b in pairs if a != b}
        identical = {(min(a, b), max(a, b)) for a, b in identical if a != b}
    found = sorted(pairs)
    a = np.array([p[0] for p in found], dtype=np.int64)
    b = np.array([p[1] for p in found], dtype=np.int64)
    same = np.array([p in identical for p in found], dtype=bool)
    between = _pair_distances(first, second, a, b, metric)
    order = np.lexsort((b, a, between, ~same))[:limit]
    return LeakCandidates(a[order], b[order], between[order], same[order], threshold, len(found))


def nearest_others(
    first: np.ndarray,
    second: np.ndarray,
    *,
    k: int,
    metric: str,
    same_split: bool,
    first_groups: np.ndarray | None = None,
    second_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(indices, distances)`` of each first row's ``k`` nearest rows of ``second``.

    Left out: the row itself when ``same_split``, and rows of its own group when both groups
    are given. Neighbours come from faiss (exact, :func:`~plp_eval.rank_lists`), asked for
    ``k`` plus as many as the largest group holds (or one, for itself), so the first ``k``
    others are exact; -1 and inf pad a row with fewer others.
    """
    from plp_eval._ranking import rank_lists

    extra = int(same_split)
    if first_groups is not None and second_groups is not None and len(second_groups):
        extra = int(np.unique(np.asarray(second_groups), return_counts=True)[1].max())
    count = min(k + extra, len(second))
    indices, distances = rank_lists(first, second, k=count, metric=metric)
    left_out = indices < 0
    if same_split:
        left_out |= indices == np.arange(len(indices))[:, None]
    if first_groups is not None and second_groups is not None:
        left_out |= np.asarray(first_groups)[:, None] == np.asarray(second_groups)[indices]
    order = np.argsort(left_out, axis=1, kind="stable")[:, :k]  # the others, nearest first
    indices = np.take_along_axis(indices, order, axis=1)
    distances = np.take_along_axis(distances, order, axis=1).astype(np.float64)
    dropped = np.take_along_axis(left_out, order, axis=1)
    indices[dropped], distances[dropped] = -1, np.inf
    return indices, distances


def _equal_hashes(
    first: Sequence[str], second: Sequence[str], *, limit: int
) -> set[tuple[int, int]]:
    """Return up to ``limit`` pairs ``(i, j)`` with ``first[i] == second[j]``."""
    where: dict[str, list[int]] = {}
    for j, digest in enumerate(second):
        where.setdefault(digest, []).append(j)
    pairs: set[tuple[int, int]] = set()
    for i, digest in enumerate(first):
        for j in where.get(digest, ()):
            pairs.add((i, j))
            if len(pairs) >= limit:
                return pairs
    return pairs


def _pair_distances(
    first: np.ndarray, second: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str
) -> np.ndarray:
    """Return the float64 distance of ``first[a[p]]`` to ``second[b[p]]`` for every p."""
    left = first[a].astype(np.float64)
    right = second[b].astype(np.float64)
    if metric == "cosine":
        left = unit_rows(left)
    return np.maximum(rowwise(left, right, metric), 0.0)


def check_hashes(hashes: Iterable[str] | None, length: int, name: str) -> list[str] | None:
    """Return ``hashes`` as a list of ``length`` strings, or raise PlpEvalError."""
    if hashes is None:
        return None
    listed = list(hashes)
    if len(listed) != length:
        raise PlpEvalError(f"{name} has {len(listed)} hashes, expected one per image ({length})")
    return listed
