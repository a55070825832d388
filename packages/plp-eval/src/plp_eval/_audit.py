"""An audit of a dataset from its embeddings: likely label and identity errors, leakage, outliers.

Four lists, each ranked by a stated score, most suspect first (``SCORES`` in
:mod:`plp_eval._audit_result` defines them in words; :meth:`Audit.to_dict` writes them beside
the lists):

- ``mislabeled``: images nearer another class than their own, by centroid or by neighbours;
- ``duplicate_identities``: pairs of classes whose centroids are mutual nearest neighbours,
  close relative to the classes' own spread (one identity under two labels);
- ``leakage``: near-duplicate images between two splits (query and gallery, trainval and
  test): identical pixels (a hash) or embeddings closer than a threshold;
- ``outliers``: images far from every class centroid, in units of that class's spread.

Work is block-wise: extra memory is a block of distances (tens of MiB) plus O(images +
classes x dim); neighbours come from faiss (exact, blocked inside).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_features, as_labels
from plp_eval._audit_result import (
    Audit,
    AuditSplit,
    DuplicateIdentities,
    ImageRef,
    Leak,
    MislabeledImage,
    Outlier,
)
from plp_eval._class_geometry import (
    ClassGeometry,
    ImageDistances,
    class_geometry,
    image_distances,
    nearest_centroids,
    rowwise,
    unit_rows,
)
from plp_eval._errors import PlpEvalError
from plp_eval._leakage import check_hashes, leak_candidates
from plp_eval._problem import check_metric

__all__ = ["audit"]

EXAMPLES = 3  # images shown per class of a duplicate-identity pair


@dataclass(frozen=True)
class _Group:
    """Splits pooled into one label space: their rows one after the other."""

    splits: tuple[str, ...]
    offsets: np.ndarray  # where each split starts; last: total
    features: np.ndarray  # unit rows for cosine
    labels: np.ndarray
    cameras: np.ndarray | None
    groups: np.ndarray | None

    def ref(self, row: int) -> ImageRef:
        part = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return ImageRef(self.splits[part], int(row - self.offsets[part]))


def audit(
    splits: Mapping[str, AuditSplit],
    *,
    label_groups: Sequence[Sequence[str]] | None = None,
    leakage_pairs: Sequence[tuple[str, str]] = (),
    metric: str = "euclidean",
    neighbours: int = 10,
    leakage_threshold: float | None = None,
    max_entries: int = 50,
) -> Audit:
    """Return the audit of ``splits``: four lists, each ranked by its score in ``SCORES``.

    Args:
        splits: Split name -> its arrays. Feature dimensions must agree.
        label_groups: Splits whose labels mean the same classes (e.g. trainval and test of
            CIFAR; query and gallery of Market-1501, whose training identities are others).
            Centroids, neighbours, mislabels, duplicate identities and outliers are computed
            within each group. Default: all splits form one group.
        leakage_pairs: Pairs of splits checked for near-duplicates, e.g.
            ``[("trainval", "test")]``; a split paired with itself is checked within.
        metric: ``euclidean`` (L2) or ``cosine`` (1 - cosine similarity; centroids are means
            of the unit vectors).
        neighbours: k of the neighbour vote (fewer where a group has fewer other images).
        leakage_threshold: Embedding distance below which a pair is a near-duplicate;
            default a tenth of the median distance from an image of the first split to its
            nearest image of the second (:data:`~plp_eval._leakage.LEAKAGE_FRACTION`).
        max_entries: Length of each list (the most suspect entries; ``totals`` counts all).

    Raises:
        PlpEvalError: No splits, bad arrays, unknown split names in the groups or pairs, a
            split in two groups, an unknown metric, ``neighbours`` or ``max_entries`` below 1,
            or a negative or non-finite threshold.
    """
    check_metric(metric)
    checked = _check_splits(splits)
    if neighbours < 1:
        raise PlpEvalError(f"neighbours must be >= 1, got {neighbours}")
    if max_entries < 1:
        raise PlpEvalError(f"max_entries must be >= 1, got {max_entries}")
    if leakage_threshold is not None and not (
        np.isfinite(leakage_threshold) and leakage_threshold >= 0
    ):
        raise PlpEvalError(f"leakage_threshold must be >= 0 and finite, got {leakage_threshold}")
    groups = _check_groups(label_groups, list(checked))
    for pair in leakage_pairs:
        for name in pair:
            _check_name(name, checked, "leakage_pairs")

    totals = {"mislabeled": 0, "duplicate_identities": 0, "leakage": 0, "outliers": 0}
    mislabeled: list[MislabeledImage] = []
    duplicates: list[DuplicateIdentities] = []
    outliers: list[Outlier] = []
    for names in groups:
        group = _pool(names, checked, metric)
        geometry = class_geometry(group.features, group.labels, metric)
        distances = image_distances(group.features, geometry, metric)
        found, count = _mislabeled(group, geometry, distances, metric, neighbours, max_entries)
        mislabeled += found
        totals["mislabeled"] += count
        pairs, count = _duplicates(group, geometry, metric, max_entries)
        duplicates += pairs
        totals["duplicate_identities"] += count
        far, count = _outliers(group, geometry, distances, max_entries)
        outliers += far
        totals["outliers"] += count
    leaks, thresholds, totals["leakage"] = _leakage(
        checked, leakage_pairs, groups, metric, leakage_threshold, max_entries
    )
    return Audit(
        metric=metric,
        neighbours=neighbours,
        leakage_thresholds=thresholds,
        totals=totals,
        mislabeled=tuple(sorted(mislabeled, key=lambda m: -m.score)[:max_entries]),
        duplicate_identities=tuple(sorted(duplicates, key=lambda d: -d.score)[:max_entries]),
        leakage=tuple(leaks[:max_entries]),
        outliers=tuple(sorted(outliers, key=lambda o: -o.score)[:max_entries]),
    )


@dataclass(frozen=True)
class _Checked:
    features: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray | None
    hashes: list[str] | None
    groups: np.ndarray | None


def _check_splits(splits: Mapping[str, AuditSplit]) -> dict[str, _Checked]:
    if not splits:
        raise PlpEvalError("no splits to audit")
    checked: dict[str, _Checked] = {}
    for name, split in splits.items():
        features = as_features(split.features, f"features of split {name!r}")
        labels = as_labels(split.labels, f"labels of split {name!r}", len(features))
        cameras = None
        if split.cameras is not None:
            cameras = as_labels(split.cameras, f"cameras of split {name!r}", len(features))
        hashes = check_hashes(split.hashes, len(features), f"split {name!r}")
        groups = None
        if split.groups is not None:
            groups = as_labels(split.groups, f"groups of split {name!r}", len(features))
        checked[name] = _Checked(features, labels, cameras, hashes, groups)
    dims = {name: c.features.shape[1] for name, c in checked.items()}
    if len(set(dims.values())) > 1:
        raise PlpEvalError(f"feature dimensions differ between splits: {dims}")
    return checked


def _check_name(name: str, splits: Mapping[str, Any], where: str) -> None:
    if name not in splits:
        raise PlpEvalError(
            f"{where} names split {name!r}, which is not audited; splits: {', '.join(splits)}"
        )


def _check_groups(
    label_groups: Sequence[Sequence[str]] | None, names: list[str]
) -> list[tuple[str, ...]]:
    if label_groups is None:
        return [tuple(names)]
    seen: set[str] = set()
    groups = []
    for group in label_groups:
        for name in group:
            _check_name(name, dict.fromkeys(names), "label_groups")
            if name in seen:
                raise PlpEvalError(f"label_groups name split {name!r} twice")
            seen.add(name)
        if group:
            groups.append(tuple(group))
    return groups


def _pool(names: Iterable[str], splits: Mapping[str, _Checked], metric: str) -> _Group:
    names = tuple(names)
    parts = [splits[name] for name in names]
    features = np.concatenate([p.features for p in parts]).astype(np.float32, copy=False)
    with_cameras = all(p.cameras is not None for p in parts)
    with_groups = all(p.groups is not None for p in parts)
    return _Group(
        splits=names,
        offsets=np.cumsum([0, *(len(p.labels) for p in parts)]),
        features=unit_rows(features) if metric == "cosine" else features,
        labels=np.concatenate([p.labels for p in parts]),
        cameras=np.concatenate([p.cameras for p in parts]) if with_cameras else None,
        groups=np.concatenate([p.groups for p in parts]) if with_groups else None,
    )


def _top(scores: np.ndarray, candidates: np.ndarray, count: int) -> np.ndarray:
    """Return the rows of ``candidates`` with the highest ``scores``, highest first (ties: row)."""
    rows = np.flatnonzero(candidates)
    order = np.lexsort((rows, -scores[rows]))
    return rows[order[:count]]


def _neighbour_votes(group: _Group, metric: str, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Return per image its neighbours' agreement and whether another label outvotes its own.

    Agreement: the share of its k nearest neighbours (faiss, exact; ties by row) with its
    label; outvoted: one other label has more of those neighbours than its own. With groups,
    images of its own group (frames of its sequence) do not vote; NaN: no image votes.
    """
    from plp_eval._leakage import nearest_others

    count = len(group.labels)
    if count < 2:
        return np.full(count, np.nan), np.zeros(count, dtype=bool)
    k = min(neighbours, count - 1)
    indices, _ = nearest_others(
        group.features, group.features, k=k, metric=metric, same_split=True,
        first_groups=group.groups, second_groups=group.groups,
    )  # fmt: skip
    voting = indices >= 0
    near = np.where(voting, group.labels[indices], 0)
    own = voting & (near == group.labels[:, None])
    own_votes = own.sum(1)
    other_votes = np.zeros(count, dtype=np.int64)
    for column in range(k):
        votes = ((near == near[:, column : column + 1]) & voting).sum(1)
        other_votes = np.maximum(
            other_votes, np.where(own[:, column] | ~voting[:, column], 0, votes)
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = own_votes / voting.sum(1)
    return agreement, other_votes > own_votes


def _mislabeled(
    group: _Group,
    geometry: ClassGeometry,
    distances: ImageDistances,
    metric: str,
    neighbours: int,
    limit: int,
) -> tuple[list[MislabeledImage], int]:
    agreement, outvoted = _neighbour_votes(group, metric, neighbours)
    own, other = distances.own, distances.other
    judged = np.isfinite(own) & np.isfinite(other)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(own + other > 0, own / (own + other), 0.5)
    scores = 0.5 * ratio + 0.5 * (1.0 - np.nan_to_num(agreement, nan=0.0))
    flagged = judged & ((other < own) | outvoted)
    entries = [
        MislabeledImage(
            image=group.ref(row),
            label=int(group.labels[row]),
            suggested_label=int(geometry.labels[distances.other_class[row]]),
            score=float(scores[row]),
            own_distance=float(own[row]),
            other_distance=float(other[row]),
            neighbour_agreement=float(agreement[row]),
        )
        for row in _top(scores, flagged, limit)
    ]
    return entries, int(flagged.sum())


def _outliers(
    group: _Group, geometry: ClassGeometry, distances: ImageDistances, limit: int
) -> tuple[list[Outlier], int]:
    scores = distances.spreads_away
    found = np.isfinite(scores)
    entries = [
        Outlier(
            image=group.ref(row),
            label=int(group.labels[row]),
            score=float(scores[row]),
            nearest_label=int(geometry.labels[distances.spreads_class[row]]),
            distance=float(distances.nearest[row]),
        )
        for row in _top(scores, found, limit)
    ]
    return entries, int(found.sum())


def _duplicates(
    group: _Group, geometry: ClassGeometry, metric: str, limit: int
) -> tuple[list[DuplicateIdentities], int]:
    if len(geometry.labels) < 2:
        return [], 0
    nearest, gaps = nearest_centroids(geometry, metric)
    classes = np.arange(len(nearest))
    mutual = (nearest[nearest] == classes) & (classes < nearest)
    spread = 0.5 * (geometry.spreads + geometry.spreads[nearest])
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(spread + gaps > 0, spread / (spread + gaps), 1.0)
    seen_in = _cameras_of_classes(group, geometry)
    entries = []
    for a in _top(scores, mutual, limit):
        b = int(nearest[a])
        entries.append(
            DuplicateIdentities(
                labels=(int(geometry.labels[a]), int(geometry.labels[b])),
                score=float(scores[a]),
                gap=float(gaps[a]),
                spreads=(float(geometry.spreads[a]), float(geometry.spreads[b])),
                sizes=(int(geometry.counts[a]), int(geometry.counts[b])),
                examples=(
                    _typical(group, geometry, a, metric),
                    _typical(group, geometry, b, metric),
                ),
                cameras=None if seen_in is None else (seen_in[a], seen_in[b]),
            )
        )
    return entries, int(mutual.sum())


def _cameras_of_classes(group: _Group, geometry: ClassGeometry) -> list[tuple[int, ...]] | None:
    """Return the sorted cameras each class was seen in, or None without cameras."""
    if group.cameras is None:
        return None
    pairs = np.unique(np.stack([geometry.members, group.cameras], axis=1), axis=0)
    seen: list[list[int]] = [[] for _ in geometry.labels]
    for member, camera in pairs:
        seen[int(member)].append(int(camera))
    return [tuple(cameras) for cameras in seen]


def _typical(
    group: _Group, geometry: ClassGeometry, member: int, metric: str
) -> tuple[ImageRef, ...]:
    """Return the :data:`EXAMPLES` images of a class nearest its centroid."""
    rows = np.flatnonzero(geometry.members == member)
    centre = np.broadcast_to(geometry.centroids[member], (len(rows), geometry.centroids.shape[1]))
    distances = rowwise(group.features[rows], centre, metric)
    return tuple(group.ref(int(rows[i])) for i in np.lexsort((rows, distances))[:EXAMPLES])


def _leakage(
    splits: Mapping[str, _Checked],
    pairs: Sequence[tuple[str, str]],
    label_groups: Sequence[tuple[str, ...]],
    metric: str,
    threshold: float | None,
    limit: int,
) -> tuple[list[Leak], dict[str, float], int]:
    leaks: list[Leak] = []
    thresholds: dict[str, float] = {}
    total = 0
    for first, second in pairs:
        # Between splits the protocol ranks against each other, pairs of one group are its junk.
        ranked = any(first in names and second in names for names in label_groups)
        found = leak_candidates(
            splits[first].features,
            splits[second].features,
            metric=metric,
            same_split=first == second,
            first_hashes=splits[first].hashes,
            second_hashes=splits[second].hashes,
            threshold=threshold,
            limit=limit,
            first_groups=splits[first].groups if ranked else None,
            second_groups=splits[second].groups if ranked else None,
        )
        thresholds[f"{first}/{second}"] = found.threshold
        total += found.total
        leaks += [
            Leak(ImageRef(first, int(a)), ImageRef(second, int(b)), float(d), bool(same))
            for a, b, d, same in zip(
                found.first, found.second, found.distance, found.identical, strict=True
            )
        ]
    leaks.sort(key=lambda leak: (not leak.identical_pixels, leak.distance))
    return leaks, thresholds, total
