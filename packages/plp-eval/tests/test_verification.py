"""Verification operating points against scikit-learn's ``roc_curve`` on the full pair set."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

import plp_eval._verification as verification
from plp_eval import (
    PlpEvalError,
    verification_from_distances,
    verification_metrics,
)


def _reference(
    distances: np.ndarray,
    q_labels: np.ndarray,
    g_labels: np.ndarray,
    junk: np.ndarray,
    targets: tuple[float, ...] = (1e-2, 1e-3, 1e-4),
) -> dict[str, object]:
    """The same quantities from scikit-learn's ROC of every non-junk pair."""
    keep = ~junk
    positive = (q_labels[:, None] == g_labels[None, :])[keep]
    scores = -distances[keep].astype(np.float64)
    fpr, tpr, thresholds = roc_curve(positive, scores, drop_intermediate=False)
    negatives = int((~positive).sum())
    points = []
    for target in sorted(targets, reverse=True):
        if 1 / negatives > target:  # not even one false match allowed: not reported
            continue
        i = np.flatnonzero(fpr <= target)[-1]  # the largest TPR among points with FMR <= t
        points.append((target, -thresholds[i], fpr[i], tpr[i]))
    i = int(np.argmin(np.abs(1 - tpr - fpr)))
    return {
        "positives": int(positive.sum()),
        "negatives": negatives,
        "points": points,
        "eer": (fpr[i] + 1 - tpr[i]) / 2,
        "eer_threshold": -thresholds[i],
    }


def _check(result: verification.VerificationMetrics, expected: dict[str, object]) -> None:
    assert result.num_positive_pairs == expected["positives"]
    assert result.num_negative_pairs == expected["negatives"]
    got = [(p.target, p.threshold, p.false_rate, p.true_rate) for p in result.operating_points]
    assert got == expected["points"]  # exact: the same floats
    assert result.eer == expected["eer"]
    assert result.eer_threshold == expected["eer_threshold"]


def _problem(seed: int, num_queries: int = 40, num_gallery: int = 300, classes: int = 12):
    rng = np.random.default_rng(seed)
    q_labels = rng.integers(0, classes, num_queries)
    g_labels = rng.integers(0, classes, num_gallery)
    same = q_labels[:, None] == g_labels[None, :]
    distances = rng.gamma(4.0, 0.25, (num_queries, num_gallery)) + np.where(same, 0.0, 0.6)
    return q_labels, g_labels, distances


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
def test_operating_points_equal_sklearn_roc_curve(dtype: type, ties: bool) -> None:
    q_labels, g_labels, distances = _problem(seed=1 + ties)
    if ties:  # few distinct values: many pairs at each, positive and negative together
        distances = np.round(distances * 8) / 8
    distances = distances.astype(dtype)
    result = verification_from_distances(distances, q_labels, g_labels)
    expected = _reference(distances, q_labels, g_labels, np.zeros(distances.shape, bool))
    assert len(expected["points"]) == 3  # 10k+ negatives: every target reachable
    _check(result, expected)


def test_junk_pairs_are_left_out_cameras_groups_and_self() -> None:
    q_labels, g_labels, distances = _problem(seed=3, num_queries=60, num_gallery=60)
    rng = np.random.default_rng(4)
    cameras = rng.integers(0, 3, 60)
    # Leave-one-out with cameras: the diagonal and same-label same-camera pairs are junk.
    square = (distances + distances.T) / 2
    result = verification_from_distances(
        square, g_labels, g_labels, cameras, cameras, query_in_gallery=True
    )
    junk = (g_labels[:, None] == g_labels[None, :]) & (cameras[:, None] == cameras[None, :])
    junk |= np.eye(60, dtype=bool)
    _check(result, _reference(square, g_labels, g_labels, junk))
    # Groups without cameras: same-group pairs are junk (each group holds one label).
    groups = g_labels * 10 + rng.integers(0, 2, 60)
    q_groups = q_labels * 10 + rng.integers(0, 2, 60)
    result = verification_from_distances(
        distances, q_labels, g_labels, query_groups=q_groups, gallery_groups=groups
    )
    junk = q_groups[:, None] == groups[None, :]
    _check(result, _reference(distances, q_labels, g_labels, junk))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_features_euclidean_equal_sklearn_on_exact_distances(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small integers: every product and sum is exact, the distances are correctly rounded.
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, 70)
    centres = rng.integers(-6, 7, (6, 5))
    queries = (centres[labels[:40]] + rng.integers(-3, 4, (40, 5))).astype(dtype)
    gallery = (centres[labels[40:]] + rng.integers(-3, 4, (30, 5))).astype(dtype)
    squared = ((queries[:, None, :].astype(np.float64) - gallery[None]) ** 2).sum(-1)
    exact = np.sqrt(squared).astype(dtype)  # float64 sqrt rounded to float32: correctly rounded
    monkeypatch.setattr(verification, "PAIRS_PER_BLOCK", 64)  # many blocks of 2 query rows
    result = verification_metrics(queries, labels[:40], gallery, labels[40:])
    _check(result, _reference(exact, labels[:40], labels[40:], np.zeros(exact.shape, bool)))


def test_features_cosine_agree_with_sklearn() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 8, 250)
    centres = rng.standard_normal((8, 16))
    features = centres[labels] + 0.9 * rng.standard_normal((250, 16))
    features[3] = 0.0  # a zero vector: similarity 0 with everything
    result = verification_metrics(
        features[:50], labels[:50], features[50:], labels[50:], metric="cosine"
    )
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-300)
    distances = 1 - unit[:50] @ unit[50:].T
    expected = _reference(distances, labels[:50], labels[50:], np.zeros(distances.shape, bool))
    got = [(p.target, p.false_rate, p.true_rate) for p in result.operating_points]
    assert got == [(t, f, r) for t, _, f, r in expected["points"]]
    for point, (_, threshold, _, _) in zip(
        result.operating_points, expected["points"], strict=True
    ):
        assert point.threshold == pytest.approx(threshold, rel=1e-12)
    assert result.eer == expected["eer"]


def test_too_few_negatives_for_a_target_and_the_origin_point() -> None:
    # 3 negative pairs (0.5, 2.0, 3.0), 3 positive (0.5, 1.0, 4.0): only FMR 0.5 is reachable.
    distances = np.array([[0.5, 1.0, 2.0], [0.5, 3.0, 4.0]])
    labels = np.array([0, 1]), np.array([1, 0, 1])
    result = verification_from_distances(distances, *labels, fmr_targets=(0.5, 0.1))
    assert [p.target for p in result.operating_points] == [0.5]
    _check(result, _reference(distances, *labels, np.zeros((2, 3), bool), (0.5,)))
    (point,) = result.operating_points  # below the 2nd negative (2.0): 1.0, TPR 2/3, FMR 1/3
    assert (point.threshold, point.false_rate, point.true_rate) == (1.0, 1 / 3, 2 / 3)
    with pytest.raises(PlpEvalError, match=r"no operating point at FMR 0\.1 \(3 negative pairs"):
        result.threshold_at(0.1)
    # The two smallest distances are negatives: at FMR 0.34 (one false match allowed) no
    # distance lies below the second one: the point (0, 0), threshold -inf.
    distances = np.array([[0.5, 0.5, 2.0], [1.0, 3.0, 4.0]])
    labels = np.array([0, 1]), np.array([1, 1, 0])
    tied = verification_from_distances(distances, *labels, fmr_targets=(0.34,))
    _check(tied, _reference(distances, *labels, np.zeros((2, 3), bool), (0.34,)))
    (point,) = tied.operating_points
    assert (point.threshold, point.false_rate, point.true_rate) == (-math.inf, 0.0, 0.0)
    assert tied.to_dict()["operating_points"][0]["threshold"] is None


def test_dir_at_far_hand_computed() -> None:
    # Gallery: labels 0, 1, 2 at 0, 10, 20. Queries (label, position):
    #   mated:     (0, 1) -> nearest 0 at 1, a match;   (1, 13) -> nearest 1 at 3, a match;
    #              (2, 14) -> nearest 1 at 4, a mismatch
    #   non-mated: (7, 2) -> nearest 0 at 2;  (8, 25) -> nearest 2 at 5;  (9, 16) -> nearest 2 at 4
    gallery = np.array([[0.0], [10.0], [20.0]])
    queries = np.array([[1.0], [13.0], [14.0], [2.0], [25.0], [16.0]])
    result = verification_metrics(
        queries, [0, 1, 2, 7, 8, 9], gallery, [0, 1, 2], open_set=True, far_targets=(0.5, 0.34, 0.1)
    )
    open_set = result.open_set
    assert open_set is not None
    assert (open_set.num_mated, open_set.num_non_mated) == (3, 3)
    assert open_set.rank_1 == pytest.approx(2 / 3)
    points = {p.target: (p.threshold, p.false_rate, p.true_rate) for p in open_set.points}
    # FAR <= 0.5 allows 1 of 3 false alarms: below the 2nd smallest (4), the largest move is 3.
    assert points[0.5] == (3.0, 1 / 3, 2 / 3)
    # FAR <= 0.34 also allows 1; FAR <= 0.1 allows none of 3 (0.1 < 1/3): not reported.
    assert points[0.34] == (3.0, 1 / 3, 2 / 3)
    assert 0.1 not in points
    assert open_set.at_threshold(1.5) == (1 / 3, 0.0)
    assert open_set.at_threshold(4.0) == (2 / 3, 2 / 3)


def test_bad_inputs() -> None:
    distances = np.ones((2, 2))
    with pytest.raises(PlpEvalError, match=r"positive and negative pairs; .* 0 negative"):
        verification_from_distances(distances, [0, 0], [0, 0])
    with pytest.raises(PlpEvalError, match=r"group 4 holds labels 0 and 1"):
        verification_from_distances(
            distances, [0, 1], [0, 1], query_groups=[4, 4], gallery_groups=[5, 6]
        )
    with pytest.raises(PlpEvalError, match=r"FMR targets must be in \(0, 1\)"):
        verification_from_distances(distances, [0, 1], [0, 1], fmr_targets=(1.5,))
    with pytest.raises(PlpEvalError, match="finite and >= 0"):
        verification_from_distances(-distances, [0, 1], [0, 1])
    with pytest.raises(PlpEvalError, match="query_cameras given without"):
        verification_from_distances(distances, [0, 1], [0, 1], query_cameras=[0, 1])
