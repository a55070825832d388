"""The faiss gallery index against a brute-force search, its recall, and its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plp_eval import PlpEvalError, build_index, index_recall, load_index


def _clustered(seed: int, count: int = 2000, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)) * 3
    return (centres[rng.integers(0, 40, count)] + rng.standard_normal((count, dim))).astype(
        np.float32
    )


def _brute_force(queries: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1 - q @ g.T
    return np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_flat_search_is_the_brute_force_ranking(metric: str) -> None:
    gallery = _clustered(0, count=500)
    queries = _clustered(1, count=30)
    index = build_index(gallery, metric=metric)
    indices, distances = index.search(queries, k=7)
    expected = _brute_force(queries, gallery, metric)
    order = np.argsort(expected, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(distances, np.take_along_axis(expected, order, 1), atol=2e-5)
    # A gallery vector queried against its own index: top-1 at distance 0 (float error).
    own, own_distances = index.search(gallery[:5], k=1)
    assert own[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(own_distances[:, 0], 0.0, atol=1e-3)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approximate_indexes_and_their_recall(kind: str, metric: str) -> None:
    gallery = _clustered(2)
    index = build_index(gallery, metric=metric, kind=kind)
    assert index.count == len(gallery) and index.kind == kind
    recall = index_recall(index, gallery, k=10, sample=200, seed=3)
    # The same number by hand: the exact top 10 of the sampled vectors, found by the index.
    chosen = np.sort(np.random.default_rng(3).choice(len(gallery), size=200, replace=False))
    exact = np.argsort(_brute_force(gallery[chosen], gallery, metric), axis=1, kind="stable")
    found, _ = index.search(gallery[chosen], k=10)
    by_hand = np.mean([len(set(e[:10]) & set(f)) / 10 for e, f in zip(exact, found, strict=True)])
    assert recall == pytest.approx(by_hand, abs=0.01)  # ties at equal float32 distances aside
    assert recall >= 0.9
    assert index_recall(build_index(gallery, metric=metric), gallery, sample=50) == 1.0


def test_a_small_gallery_pads_with_minus_one(tmp_path: Path) -> None:
    gallery = np.eye(3, dtype=np.float32)
    indices, distances = build_index(gallery).search(gallery[:1], k=5)
    assert indices[0].tolist()[:3] == [0, 1, 2] and indices[0, 3:].tolist() == [-1, -1]
    assert np.isinf(distances[0, 3:]).all()


def test_save_and_load(tmp_path: Path) -> None:
    gallery = _clustered(4, count=300)
    index = build_index(gallery, metric="cosine", kind="ivf", nlist=8)
    index.save(tmp_path / "index.faiss")
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]  # no partial file left
    loaded = load_index(tmp_path / "index.faiss", "cosine", "ivf")
    for a, b in zip(index.search(gallery[:9]), loaded.search(gallery[:9]), strict=True):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "junk.faiss").write_bytes(b"not an index")
    with pytest.raises(PlpEvalError, match=r"junk\.faiss: not a faiss index"):
        load_index(tmp_path / "junk.faiss", "cosine", "flat")
    with pytest.raises(PlpEvalError, match=r"nope\.faiss does not exist"):
        load_index(tmp_path / "nope.faiss", "cosine", "flat")


def test_bad_arguments() -> None:
    gallery = np.eye(4, dtype=np.float32)
    with pytest.raises(PlpEvalError, match=r"unknown index kind 'hnws'.*did you mean 'hnsw'"):
        build_index(gallery, kind="hnws")
    with pytest.raises(PlpEvalError, match=r"nlist = 9 is more than the 4 gallery vectors"):
        build_index(gallery, kind="ivf", nlist=9)
    with pytest.raises(PlpEvalError, match=r"dimension 3, the index 4"):
        build_index(gallery).search(np.ones((1, 3)))
    with pytest.raises(PlpEvalError, match=r"k must be >= 1"):
        build_index(gallery).search(gallery, k=0)
