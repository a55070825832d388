"""The splits drawn in numpy equal scikit-learn's train_test_split, index for index."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from plp_data._base import _stratify_or_none, split_indices
from plp_data._digits import _load_digits
from plp_data._split import shuffle_split


def _sklearn(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return train_test_split(
        np.arange(len(labels)),
        test_size=fraction,
        random_state=seed,
        stratify=_stratify_or_none(labels, fraction),
    )


def _label_sets() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        np.arange(40) % 4,  # balanced
        rng.integers(0, 7, size=101),  # uneven counts: the approximate mode breaks ties
        np.repeat([3, 1, 2], [2, 9, 30]),  # a class of two
        np.array(["b", "a", "c", "a", "b", "c", "a", "b"] * 3),  # strings, as folder names
        np.array([0, 1, 2, 3, 3, 3]),  # classes of one: a plain split
        np.zeros(5, dtype=int),  # one class
        load_digits().target,
    ]


@pytest.mark.parametrize("labels", _label_sets(), ids=lambda labels: f"{len(labels)}")
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.33, 0.5, 0.8])
def test_split_equals_scikit_learn(labels: np.ndarray, fraction: float) -> None:
    held = int(np.ceil(fraction * len(labels)))
    if not 0 < held < len(labels):
        return
    stratify = _stratify_or_none(labels, fraction)
    for seed in (0, 1, 7, 12345):
        expected_kept, expected_held = _sklearn(labels, fraction, seed)
        kept, held_out = shuffle_split(len(labels), held, seed, stratify)
        np.testing.assert_array_equal(kept, expected_kept)  # in the same order, too
        np.testing.assert_array_equal(held_out, expected_held)
        sorted_kept, sorted_held = split_indices(labels, fraction, seed)
        np.testing.assert_array_equal(sorted_kept, np.sort(expected_kept))
        np.testing.assert_array_equal(sorted_held, np.sort(expected_held))


def test_digits_are_scikit_learns_and_split_as_before() -> None:
    images, target = _load_digits()
    digits = load_digits()
    np.testing.assert_array_equal(images, digits.images)
    np.testing.assert_array_equal(target, digits.target)
    assert images.dtype == digits.images.dtype and target.dtype == digits.target.dtype
    labels = target.astype(np.int64)
    for seed in (0, 3):
        kept, held = split_indices(labels, 0.25, seed)
        expected_kept, expected_held = train_test_split(
            np.arange(len(labels)), test_size=0.25, random_state=seed, stratify=labels
        )
        np.testing.assert_array_equal(kept, np.sort(expected_kept))
        np.testing.assert_array_equal(held, np.sort(expected_held))
