"""Seeded trainval/test splits, stratified by label, as scikit-learn's ``train_test_split``.

The same indices as ``train_test_split(..., random_state=seed, stratify=labels)`` (a
``StratifiedShuffleSplit``) or without ``stratify`` (a ``ShuffleSplit``), drawn here in numpy so
that a datamodule's setup does not import scikit-learn, SciPy and pandas (~0.5 s of every
``invoke evaluate``). ``packages/plp-data/tests/test_split.py`` checks them equal to scikit-learn's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["shuffle_split"]


def shuffle_split(
    num_items: int, num_held: int, seed: int, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the unsorted ``(kept, held_out)`` indices of ``num_items``, ``num_held`` held out.

    Args:
        num_items: How many items to split.
        num_held: How many go to the held-out side, ``0 < num_held < num_items``; with
            ``stratify`` at least the number of classes on each side.
        seed: Seed of ``numpy.random.RandomState``, as scikit-learn's ``random_state``.
        stratify: One label per item (each class at least twice), or None for a plain split.
    """
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(num_items)
        return permutation[num_held:], permutation[:num_held]
    _, inverse, class_counts = np.unique(stratify, return_inverse=True, return_counts=True)
    class_indices = np.split(
        np.argsort(inverse.reshape(-1), kind="stable"), np.cumsum(class_counts)[:-1]
    )
    kept_counts = _approximate_mode(class_counts, num_items - num_held, rng)
    held_counts = _approximate_mode(class_counts - kept_counts, num_held, rng)
    kept: list[int] = []
    held: list[int] = []
    for members, num_kept, num_held_here in zip(
        class_indices, kept_counts, held_counts, strict=True
    ):
        shuffled = members.take(rng.permutation(len(members)), mode="clip")
        kept.extend(shuffled[:num_kept])
        held.extend(shuffled[num_kept : num_kept + num_held_here])
    return rng.permutation(kept), rng.permutation(held)


def _approximate_mode(
    class_counts: np.ndarray, num_draws: int, rng: np.random.RandomState
) -> np.ndarray:
    """Return per-class draws near the mode of the multivariate hypergeometric, ties by ``rng``."""
    continuous = class_counts / class_counts.sum() * num_draws
    floored = np.floor(continuous)
    need_to_add = int(num_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (candidates,) = np.where(remainder == value)
            add_now = min(len(candidates), need_to_add)
            floored[rng.choice(candidates, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
