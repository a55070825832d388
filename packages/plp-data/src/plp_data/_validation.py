"""The validation part of trainval: held-out images or held-out classes, and its queries.

Two ways to carve validation out of trainval:

- **images** (classification datasets: digits, MNIST, CIFAR, image folders): a stratified share
  of the images; validation and training share every class (closed-set retrieval).
- **classes** (re-ID and metric-learning datasets, where test classes are unseen in training):
  whole classes (identities) are held out, so validation ranks classes the model never trained
  on, like the test split does. A random image split would leak: the validation identities
  would be training identities.

Within the validation images, :func:`choose_queries` marks queries and gallery images per
identity and camera (Market-1501's construction), for the query/gallery protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plp_data._errors import PlpDataError

__all__ = ["ValidationSplit", "choose_queries", "held_out_classes"]


@dataclass(frozen=True)
class ValidationSplit:
    """The validation images of a datamodule and how they are ranked.

    Row ``i`` of every array is item ``i`` of the validation loader (which serves trainval's
    ``indices`` in order, without augmentation).

    Attributes:
        indices: Positions in trainval of the validation images (sorted).
        labels: Their labels (int64).
        cameras: Their camera ids (int64), or None when the dataset has none.
        queries: For the query/gallery protocol: True for a query, False for a gallery image
            (see :func:`choose_queries`). Leave-one-out validation ranks every image against
            the others and ignores it.
        class_disjoint: Whether the validation classes are held out of training.
    """

    indices: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray | None
    queries: np.ndarray
    class_disjoint: bool


def held_out_classes(
    labels: np.ndarray, count: int, seed: int, *, what: str = "val_classes"
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted ``(kept, held_out)`` by holding out whole classes.

    ``count`` classes are drawn (seeded) among the classes with at least two images: a class
    with one image could be no image's match. Every image of a drawn class is held out; every
    other class is kept whole, so the two parts share no class.

    Raises:
        PlpDataError: ``count`` is below 1, or leaves no class to train on, or exceeds the
            classes with two or more images (the message names ``what``).

    Example:
        >>> kept, held_out = held_out_classes(np.array([0, 0, 1, 1, 2, 2, 2]), 1, seed=0)
        >>> sorted(set(np.array([0, 0, 1, 1, 2, 2, 2])[held_out].tolist()))  # one whole class
        [2]
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= 2]
    if count < 1:
        raise PlpDataError(f"{what}: at least one class must be held out for validation")
    if count >= len(classes):
        raise PlpDataError(
            f"{what}: holding out {count} of {len(classes)} classes leaves none to train on"
        )
    if count > len(eligible):
        raise PlpDataError(
            f"{what}: {count} validation classes asked for, but only {len(eligible)} classes "
            "have two or more images (a validation class needs a match for its images)"
        )
    chosen = np.random.default_rng(seed).choice(eligible, size=count, replace=False)
    held = np.isin(labels, chosen)
    return np.flatnonzero(~held), np.flatnonzero(held)


def choose_queries(labels: np.ndarray, cameras: np.ndarray | None, seed: int) -> np.ndarray:
    """Return a boolean mask of queries: one image per identity and camera, the rest gallery.

    As Market-1501's query set was built: for each identity, one image of each camera that saw
    it is drawn (seeded) as a query; every other image is gallery. The protocol removes gallery
    images of the query's identity *and* camera, so a query is kept only if a gallery image of
    its identity from another camera remains; queries that would have none are moved to the
    gallery one at a time (the first in draw order first) until every query has a match.
    Without cameras every image counts as the same camera but nothing is removed: each
    identity with two or more images gets one query.

    Example:
        >>> labels = np.array([1, 1, 1, 1, 2, 2, 3])
        >>> cameras = np.array([1, 1, 2, 2, 1, 1, 1])
        >>> int(choose_queries(labels, cameras, seed=0).sum())  # id 1: one per camera; 2, 3: none
        2
    """
    labels = np.asarray(labels)
    same_camera_removed = cameras is not None
    cameras = np.zeros(len(labels), dtype=np.int64) if cameras is None else np.asarray(cameras)
    rng = np.random.default_rng(seed)
    queries = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen = [
            int(rng.choice(members[cameras[members] == camera]))
            for camera in np.unique(cameras[members])
        ]
        while chosen:
            gallery_cameras = cameras[np.setdiff1d(members, chosen)]

            def has_match(query: int, gallery: np.ndarray = gallery_cameras) -> bool:
                if same_camera_removed:
                    return bool((gallery != cameras[query]).any())
                return len(gallery) > 0

            unmatched = [query for query in chosen if not has_match(query)]
            if not unmatched:
                break
            chosen.remove(unmatched[0])
        queries[chosen] = True
    return queries
