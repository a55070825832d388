"""k-reciprocal re-ranking against a dense, step-by-step transcription of torchreid's re_ranking."""

from __future__ import annotations

import numpy as np
import pytest

from plp_eval import PlpEvalError, reid_metrics_from_distances, rerank, rerank_reid_metrics
from plp_eval._rerank import _nearest, _prepared


def dense_distances(items: np.ndarray, metric: str) -> np.ndarray:
    """Squared metric distances of every item pair, float64 (plp's distance, squared)."""
    items = items.astype(np.float64)
    if metric == "cosine":
        unit = items / np.linalg.norm(items, axis=1, keepdims=True)
        return np.maximum(1.0 - unit @ unit.T, 0.0) ** 2
    squares = (items**2).sum(1)
    return np.maximum(squares[:, None] + squares[None, :] - 2.0 * items @ items.T, 0.0)


def torchreid_re_ranking(
    original_dist: np.ndarray, query_num: int, k1: int, k2: int, lambda_value: float
) -> np.ndarray:
    """torchreid's ``re_ranking`` line by line, in float64, from the all-items distance matrix.

    torchreid squares its (L2 or 1 - cosine) distances first; ``original_dist`` is given
    squared. Returns the (items x items) final distances; callers slice queries x gallery.
    Argsort is stable (ties by index), as plp's rerank documents.
    """
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist)  # noqa: N806 (the paper's name)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    all_num = original_dist.shape[0]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward_k_neigh_index = initial_rank[candidate, :half]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, :half]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(
                np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)
            ) > 2.0 / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    if k2 != 1:
        V_qe = np.zeros_like(V)  # noqa: N806
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe  # noqa: N806
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]  # noqa: N806
    jaccard_dist = np.zeros_like(original_dist)
    for i in range(all_num):
        temp_min = np.zeros(shape=[1, all_num])
        indNonZero = np.where(V[i, :] != 0)[0]  # noqa: N806
        indImages = [invIndex[ind] for ind in indNonZero]  # noqa: N806
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    return jaccard_dist * (1 - lambda_value) + original_dist * lambda_value


def clustered(rng: np.random.Generator, count: int, dim: int, classes: int) -> np.ndarray:
    """Points around a few class centres, so that neighbour sets overlap as in real features."""
    centres = rng.normal(size=(classes, dim)) * 2.0
    return centres[rng.integers(0, classes, count)] + rng.normal(size=(count, dim))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (7, 3, 0.5), (5, 1, 0.0)])
def test_equals_dense_torchreid(metric: str, k1: int, k2: int, lambda_value: float) -> None:
    rng = np.random.default_rng(k1)
    queries, gallery = clustered(rng, 37, 8, 6), clustered(rng, 83, 8, 6)
    expected = torchreid_re_ranking(
        dense_distances(np.concatenate([queries, gallery]), metric), 37, k1, k2, lambda_value
    )[:37, 37:]
    result = np.concatenate(
        list(rerank(queries, gallery, k1, k2, lambda_value, metric=metric, block_size=16))
    )
    assert result.shape == (37, 83)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)
    # The re-ranking changes the order (else the test would prove little).
    plain = dense_distances(np.concatenate([queries, gallery]), metric)[:37, 37:]
    assert (np.argsort(result, 1)[:, :10] != np.argsort(plain, 1)[:, :10]).any()


def test_query_in_gallery_ranks_the_gallery_alone() -> None:
    rng = np.random.default_rng(1)
    items = clustered(rng, 90, 6, 5)
    expected = torchreid_re_ranking(dense_distances(items, "euclidean"), 90, 20, 6, 0.3)
    result = np.concatenate(list(rerank(items, items, query_in_gallery=True, block_size=32)))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_block_size_does_not_change_the_result(metric: str) -> None:
    rng = np.random.default_rng(2)
    queries, gallery = clustered(rng, 50, 5, 4), clustered(rng, 70, 5, 4)
    results = [
        np.concatenate(list(rerank(queries, gallery, metric=metric, block_size=size)))
        for size in (1, 7, 50, 1024)
    ]
    blocks = list(rerank(queries, gallery, metric=metric, block_size=7))
    assert [len(block) for block in blocks] == [7] * 7 + [1]
    for other in results[1:]:  # equal but for the last bit of BLAS's blocking
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-12)


def test_float32_features_are_reranked_in_float64() -> None:
    # The issue: float32 features were re-ranked in float32 (mAP off by 3e-5). Now the result
    # is that of the same values in float64, bit for bit, and equals the float64 reference.
    rng = np.random.default_rng(3)
    queries = clustered(rng, 30, 16, 5).astype(np.float32)
    gallery = clustered(rng, 60, 16, 5).astype(np.float32)
    single = np.concatenate(list(rerank(queries, gallery)))
    double = np.concatenate(list(rerank(queries.astype(np.float64), gallery.astype(np.float64))))
    np.testing.assert_array_equal(single, double)
    expected = torchreid_re_ranking(
        dense_distances(np.concatenate([queries, gallery]), "euclidean"), 30, 20, 6, 0.3
    )[:30, 30:]
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-12)


def test_tied_neighbours_are_taken_by_index() -> None:
    # Integer points on a line: many equal distances, some at the top-k cut.
    items = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0], [3.0], [1.0], [5.0]])
    import torch

    neighbours, row_max = _nearest(
        _prepared(items, "euclidean", torch.float64, torch.device("cpu")), 3, "euclidean", 2
    )
    stable = np.argsort(dense_distances(items, "euclidean"), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(neighbours, stable)
    np.testing.assert_array_equal(row_max, dense_distances(items, "euclidean").max(1))
    expected = torchreid_re_ranking(dense_distances(items, "euclidean"), 3, 3, 2, 0.3)[:3, 3:]
    result = np.concatenate(list(rerank(items[:3], items[3:], k1=3, k2=2, block_size=2)))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_more_neighbours_than_items() -> None:
    rng = np.random.default_rng(4)
    queries, gallery = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    expected = torchreid_re_ranking(
        dense_distances(np.concatenate([queries, gallery]), "euclidean"), 3, 20, 10, 0.3
    )[:3, 3:]
    result = np.concatenate(list(rerank(queries, gallery, k1=20, k2=10)))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "manhattan"}, "unknown metric 'manhattan'; available: euclidean, cosine"),
        ({"k1": 0}, "k1 must be an integer >= 1, got 0"),
        ({"k2": 2.5}, "k2 must be an integer >= 1, got 2.5"),
        ({"block_size": 0}, "block_size must be an integer >= 1, got 0"),
        ({"lambda_value": 1.5}, r"lambda_value must be in \[0, 1\], got 1.5"),
        (
            {"query_in_gallery": True},
            r"query_in_gallery needs the queries to be the gallery: query_features \(2, 3\) "
            r"differ from gallery_features \(4, 3\)",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlpEvalError, match=message):
        rerank(np.zeros((2, 3)), np.ones((4, 3)), **kwargs)  # type: ignore[arg-type]


def test_bad_features() -> None:
    with pytest.raises(PlpEvalError, match=r"query_features \(4, 3\) differ from gallery"):
        rerank(np.zeros((4, 3)), np.ones((4, 3)), query_in_gallery=True)
    with pytest.raises(PlpEvalError, match="query_features have dimension 3, gallery_features 2"):
        rerank(np.zeros((2, 3)), np.ones((4, 2)))
    with pytest.raises(PlpEvalError, match="gallery_features has 1 rows with NaN or inf"):
        rerank(np.zeros((2, 3)), np.array([[0.0, 1.0, np.nan]]))


@pytest.mark.parametrize("cameras", [False, True])
def test_metrics_of_the_reranked_distances(cameras: bool) -> None:
    rng = np.random.default_rng(5)
    queries, gallery = clustered(rng, 40, 8, 6), clustered(rng, 90, 8, 6)
    query_labels, gallery_labels = rng.integers(0, 6, 40), rng.integers(0, 6, 90)
    query_cameras = rng.integers(0, 3, 40) if cameras else None
    gallery_cameras = rng.integers(0, 3, 90) if cameras else None
    dense = torchreid_re_ranking(
        dense_distances(np.concatenate([queries, gallery]), "euclidean"), 40, 20, 6, 0.3
    )[:40, 40:]
    expected = reid_metrics_from_distances(
        dense, query_labels, gallery_labels, query_cameras, gallery_cameras, max_rank=10
    )
    result = rerank_reid_metrics(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        query_cameras,
        gallery_cameras,
        max_rank=10,
        block_size=16,
    )
    assert result.to_dict() == expected.to_dict()
    plain = reid_metrics_from_distances(
        dense_distances(np.concatenate([queries, gallery]), "euclidean")[:40, 40:],
        query_labels,
        gallery_labels,
        query_cameras,
        gallery_cameras,
        max_rank=10,
    )
    assert result.mean_average_precision != plain.mean_average_precision


def test_metrics_of_the_reranked_leave_one_out() -> None:
    rng = np.random.default_rng(6)
    items, labels = clustered(rng, 80, 6, 5), rng.integers(0, 5, 80)
    dense = torchreid_re_ranking(dense_distances(items, "cosine"), 80, 20, 6, 0.3)
    expected = reid_metrics_from_distances(dense, labels, labels, query_in_gallery=True)
    result = rerank_reid_metrics(
        items, labels, items, labels, metric="cosine", query_in_gallery=True, block_size=32
    )
    assert result.to_dict() == expected.to_dict()
