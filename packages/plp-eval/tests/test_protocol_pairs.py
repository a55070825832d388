"""Rank lists and pair distances follow the metrics' protocol (junk rule, pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from plp_eval import (
    PlpEvalError,
    pair_distances,
    protocol_rank_lists,
    rank_lists,
    reid_metrics,
)


def market_like(seed: int, queries: int = 40, gallery: int = 90) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 5))  # labels 8 and 9: queries without a match
    query_labels, gallery_labels = rng.integers(0, 10, queries), rng.integers(0, 8, gallery)
    return {
        "query_features": centres[query_labels] + rng.normal(size=(queries, 5)),
        "query_labels": query_labels,
        "gallery_features": centres[gallery_labels] + rng.normal(size=(gallery, 5)),
        "gallery_labels": gallery_labels,
        "query_cameras": rng.integers(0, 3, queries),
        "gallery_cameras": rng.integers(0, 3, gallery),
    }


def brute_force_pairs(
    data: dict[str, np.ndarray],
    query_in_gallery: bool = False,
    query_groups: np.ndarray | None = None,
    gallery_groups: np.ndarray | None = None,
) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """Every (query, gallery) pair of the protocol, written out with loops and ifs."""
    positive, negative = [], []
    for q in range(len(data["query_labels"])):
        for g in range(len(data["gallery_labels"])):
            same_label = data["query_labels"][q] == data["gallery_labels"][g]
            same_camera = "query_cameras" in data and (
                data["query_cameras"][q] == data["gallery_cameras"][g]
            )
            if same_label and same_camera:
                continue
            if query_groups is not None and query_groups[q] == gallery_groups[g]:
                continue
            if query_in_gallery and q == g:
                continue
            difference = data["query_features"][q] - data["gallery_features"][g]
            pair = (q, g, float(np.sqrt(np.sum(difference**2))))
            (positive if same_label else negative).append(pair)
    return positive, negative


def average_precision(is_match: np.ndarray) -> float:
    ranks = np.flatnonzero(is_match) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


@pytest.mark.parametrize("cameras", [True, False, "groups"])
def test_rank_lists_rank_as_the_metrics_do(cameras):
    data = market_like(0)
    if cameras == "groups":  # sequences of one label, in place of cameras
        data["query_groups"] = data["query_labels"] * 10 + data.pop("query_cameras")
        data["gallery_groups"] = data["gallery_labels"] * 10 + data.pop("gallery_cameras")
        cameras = False
    elif not cameras:
        data = {k: v for k, v in data.items() if "cameras" not in k}
    with pytest.warns(UserWarning, match="no match"):
        metrics = reid_metrics(**data)
    gallery_size = len(data["gallery_labels"])
    indices, distances = protocol_rank_lists(**data, k=gallery_size)
    for query, row in enumerate(indices):
        kept = row[row >= 0]
        is_match = data["gallery_labels"][kept] == data["query_labels"][query]
        if not is_match.any():
            assert metrics.first_match_rank[query] == 0
            continue
        assert np.flatnonzero(is_match)[0] + 1 == metrics.first_match_rank[query]
        assert average_precision(is_match) == pytest.approx(
            metrics.average_precision[query], abs=1e-12
        )
        assert np.all(np.diff(distances[query, : len(kept)]) >= 0)
    if cameras:  # the same-camera matches are gone from the lists...
        lengths = (indices >= 0).sum(axis=1)
        assert (lengths < gallery_size).any()
        # ... while plain nearest-neighbour lists show them (what the plot drew before).
        plain, _ = rank_lists(data["query_features"], data["gallery_features"], k=5)
        junk = (data["gallery_labels"][plain] == data["query_labels"][:, None]) & (
            data["gallery_cameras"][plain] == data["query_cameras"][:, None]
        )
        assert junk.any()


def test_rank_list_hand_examples_camera_group_and_self():
    # Gallery on a line; the query (label 1, camera 0) sits at 0. Item 0 has its label and
    # camera (junk); item 3 its label in another camera (a match); 1, 2, 4 other labels.
    gallery = np.array([[0.1], [0.2], [0.3], [0.4], [0.5]])
    gallery_labels = np.array([1, 2, 2, 1, 2])
    indices, distances = protocol_rank_lists(
        np.array([[0.0]]), [1], gallery, gallery_labels, [0], [0, 1, 1, 2, 2], k=5
    )
    assert indices.tolist() == [[1, 2, 3, 4, -1]]
    np.testing.assert_allclose(distances[0, :4], [0.2, 0.3, 0.4, 0.5])
    assert np.isnan(distances[0, 4])
    # Groups (sequences, one label each): the query's own sequence (7) is left out.
    indices, _ = protocol_rank_lists(
        np.array([[0.0]]), [1], gallery, [1, 2, 2, 1, 2], k=3,
        query_groups=[7], gallery_groups=[7, 3, 3, 8, 4],
    )  # fmt: skip
    assert indices.tolist() == [[1, 2, 3]]
    # Leave-one-out: a query is not in its own list; ties go to the lower gallery index.
    items = np.array([[0.0], [1.0], [-1.0], [1.0]])
    indices, _ = protocol_rank_lists(
        items, [0, 0, 1, 1], items, [0, 0, 1, 1], k=3, query_in_gallery=True, queries=[0, 1]
    )
    assert indices.tolist() == [[1, 2, 3], [3, 0, 2]]


def test_rank_lists_bad_input():
    data = market_like(1, queries=3, gallery=5)
    with pytest.raises(PlpEvalError, match="k must be an integer >= 1, got 0"):
        protocol_rank_lists(**data, k=0)
    with pytest.raises(PlpEvalError, match=r"queries must be rows in \[0, 3\), got \[3\]"):
        protocol_rank_lists(**data, queries=[3])
    with pytest.raises(PlpEvalError, match="query_groups has 2 items, expected 3"):
        protocol_rank_lists(**data, query_groups=[1, 2], gallery_groups=np.zeros(5))


@pytest.mark.parametrize(
    "case",
    [
        "cameras",
        "groups",
        "cameras_groups",
        "leave_one_out",
        "leave_one_out_cameras_groups",
        "plain",
    ],
)
def test_pair_distances_are_the_protocols_pairs(case):
    data = market_like(2)
    groups: dict[str, np.ndarray] = {}
    query_in_gallery = case.startswith("leave_one_out")
    if "groups" in case:  # sequences: each holds one label (and one camera)
        rng = np.random.default_rng(3)
        groups = {
            f"{side}_groups": data[f"{side}_labels"] * 100
            + data[f"{side}_cameras"] * 10
            + rng.integers(0, 2, len(data[f"{side}_labels"]))
            for side in ("query", "gallery")
        }
    if case in ("leave_one_out", "plain", "groups"):
        data = {k: v for k, v in data.items() if "cameras" not in k}
    if query_in_gallery:
        for kind in ("features", "labels", "cameras"):
            if f"gallery_{kind}" in data:
                data[f"query_{kind}"] = data[f"gallery_{kind}"]
        if groups:
            groups["query_groups"] = groups["gallery_groups"]
    positive, negative = brute_force_pairs(data, query_in_gallery, **groups)
    result = pair_distances(**data, query_in_gallery=query_in_gallery, **groups)
    assert not result.sampled
    assert (result.num_positive, result.num_negative) == (len(positive), len(negative))
    for found, pairs, expected in (
        (result.positive, result.positive_pairs, positive),
        (result.negative, result.negative_pairs, negative),
    ):
        assert [tuple(p) for p in pairs.tolist()] == [(q, g) for q, g, _ in expected]
        np.testing.assert_allclose(found, [d for _, _, d in expected], rtol=1e-12)
    # Sampled: a uniform draw of each kind, capped, seeded; the totals stay exact.
    sampled = pair_distances(**data, query_in_gallery=query_in_gallery, max_pairs=50, **groups)
    assert sampled.sampled and len(sampled.positive) == len(sampled.negative) == 50
    assert (sampled.num_positive, sampled.num_negative) == (len(positive), len(negative))
    everything = {(q, g) for q, g, _ in positive}
    chosen = [tuple(p) for p in sampled.positive_pairs.tolist()]
    assert len(set(chosen)) == 50 and set(chosen) <= everything
    again = pair_distances(**data, query_in_gallery=query_in_gallery, max_pairs=50, **groups)
    np.testing.assert_array_equal(again.negative_pairs, sampled.negative_pairs)


def test_pair_sampling_is_uniform_among_non_junk_pairs():
    # 6 queries x 6 gallery items of one label; cameras (0, 0, 0, 1, 1, 2) x (0, 0, 1, 2, 3, 3)
    # make 3 x 2 + 2 x 1 + 1 x 1 = 9 of the 36 pairs junk: 27 positive pairs. 5 pairs drawn
    # with each of 400 seeds: each pair is in a draw with probability 5/27, so its count is
    # Binomial(400, 5/27) (mean 74, sd 7.8); the bounds are 5 sd, the seeds fixed (not flaky).
    features = np.arange(12.0)[:, None]
    labels = np.zeros(12, dtype=np.int64)
    cameras = np.array([0, 0, 0, 1, 1, 2, 0, 0, 1, 2, 3, 3])
    arguments = (features[:6], labels[:6], features[6:], labels[6:], cameras[:6], cameras[6:])
    assert pair_distances(*arguments).num_positive == 27
    counts: dict[tuple[int, int], int] = {}
    for seed in range(400):
        drawn = pair_distances(*arguments, max_pairs=5, seed=seed).positive_pairs
        assert len({tuple(pair) for pair in drawn.tolist()}) == 5
        for query, item in drawn.tolist():
            assert cameras[query] != cameras[6 + item]  # never a junk pair
            counts[query, item] = counts.get((query, item), 0) + 1
    assert len(counts) == 27
    mean, sd = 400 * 5 / 27, np.sqrt(400 * 5 / 27 * 22 / 27)
    assert all(abs(count - mean) < 5 * sd for count in counts.values())


def test_pair_distances_bad_input():
    data = market_like(4, queries=3, gallery=5)
    with pytest.raises(PlpEvalError, match="max_pairs must be an integer >= 1, got 0"):
        pair_distances(**data, max_pairs=0)
    with pytest.raises(PlpEvalError, match="unknown metric 'manhattan'"):
        pair_distances(**data, metric="manhattan")
    with pytest.raises(PlpEvalError, match="gallery_labels has 4 items, expected 5"):
        pair_distances(**{**data, "gallery_labels": np.zeros(4)})


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_short_lists_are_the_heads_of_the_full_ranking_with_ties(metric):
    """The first k (one matrix product, then the items near the k-th measured exactly) equal
    the head of a brute-force sort by (exact distance, index), on integer features full of
    ties (exact under L2; cosine's equal directions differ by rounding), in blocks of queries."""
    rng = np.random.default_rng(4)
    query = rng.integers(-2, 3, size=(150, 6)).astype(np.float32)
    gallery = rng.integers(-2, 3, size=(120, 6)).astype(np.float32)
    labels = rng.integers(0, 5, 150), rng.integers(0, 5, 120)
    cameras = rng.integers(0, 2, 150), rng.integers(0, 2, 120)
    for k in (1, 4, 9):
        indices, distances = protocol_rank_lists(
            query, labels[0], gallery, labels[1], *cameras, k=k, metric=metric
        )
        for q in range(150):
            if metric == "euclidean":
                exact = np.sqrt(((gallery.astype(np.float64) - query[q]) ** 2).sum(axis=1))
            else:
                rows, one = gallery.astype(np.float64), query[q].astype(np.float64)
                norms = np.linalg.norm(rows, axis=1, keepdims=True)
                unit = rows / np.where(norms > 0, norms, 1.0)  # zero rows: similarity 0
                exact = 1.0 - unit @ (one / (np.linalg.norm(one) or 1.0))
            junk = (labels[1] == labels[0][q]) & (cameras[1] == cameras[0][q])
            order = [g for g in np.lexsort((np.arange(120), exact)) if not junk[g]]
            np.testing.assert_allclose(distances[q], exact[order[:k]], atol=1e-12)
            if metric == "euclidean":  # integer arithmetic: exact ties, broken by index
                assert indices[q].tolist() == order[:k], (q, k)
            else:  # equal directions tie up to rounding: any of them, none junk
                np.testing.assert_allclose(exact[indices[q]], distances[q], atol=1e-12)
                assert not junk[indices[q]].any()
