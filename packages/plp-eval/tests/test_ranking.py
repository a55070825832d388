import doctest
import tracemalloc

import numpy as np
import pytest
import torch

import plp_eval
from plp_eval import PlpEvalError, _ranking, rank_lists, reid_metrics


def reference(qf, ql, gf, gl, qc=None, gc=None, metric="euclidean", max_rank=50):
    """Slow and obvious: float64, full stable sort per query, explicit loops."""
    qf, gf = np.asarray(qf, np.float64), np.asarray(gf, np.float64)
    cmc, aps, inps = np.zeros(max_rank), [], []
    for i in range(len(qf)):
        if metric == "cosine":
            a = qf[i] / np.linalg.norm(qf[i])
            d = [1 - a @ (g / np.linalg.norm(g)) for g in gf]
        else:
            d = [float(((qf[i] - g) ** 2).sum()) for g in gf]
        order = sorted(range(len(gf)), key=lambda j: (d[j], j))
        if qc is not None:
            order = [j for j in order if not (gl[j] == ql[i] and gc[j] == qc[i])]
        hits = [rank for rank, j in enumerate(order, 1) if gl[j] == ql[i]]
        if not hits:
            continue
        if hits[0] <= max_rank:
            cmc[hits[0] - 1 :] += 1
        aps.append(np.mean([(n + 1) / r for n, r in enumerate(hits)]))
        inps.append(len(hits) / hits[-1])
    return cmc / len(aps), np.mean(aps), np.mean(inps), len(aps)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("cameras", [False, True])
@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
def test_equals_slow_reference(metric, cameras, integer):
    rng = np.random.default_rng(0)
    if integer and metric == "cosine":
        # Signed one-hot rows: unit norm exactly, so cosine ties are exact too.
        def draw(n, dim):
            rows = np.zeros((n, dim), np.float32)
            rows[np.arange(n), rng.integers(0, dim, n)] = rng.choice([-1.0, 1.0], n)
            return rows
    elif integer:

        def draw(n, dim):
            return rng.integers(-2, 3, (n, dim)).astype(np.float32)
    else:

        def draw(n, dim):
            return rng.normal(size=(n, dim))

    qf, gf = draw(40, 4), draw(300, 4)
    ql, gl = rng.integers(0, 8, 40), rng.integers(0, 8, 300)
    qc, gc = (rng.integers(0, 3, 40), rng.integers(0, 3, 300)) if cameras else (None, None)
    result = reid_metrics(qf, ql, gf, gl, qc, gc, metric=metric, max_rank=20)
    cmc, mean_ap, mean_inp, valid = reference(qf, ql, gf, gl, qc, gc, metric, 20)
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert result.mean_average_precision == pytest.approx(mean_ap, abs=1e-9)
    assert result.mean_inp == pytest.approx(mean_inp, abs=1e-9)
    assert result.num_valid_queries == valid


def test_worked_example_doctest():
    assert doctest.testmod(_ranking, raise_on_error=True).attempted >= 5


def test_hand_computed_ties_follow_gallery_index():
    # All four gallery items at the same distance; matches at indices 1 and 3 -> ranks 2 and 4.
    gallery = np.array([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])
    result = reid_metrics(np.zeros((1, 2)), [5], gallery, [0, 5, 1, 5], max_rank=4)
    assert result.cmc.tolist() == [0, 1, 1, 1]
    assert result.mean_average_precision == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_same_camera_matches_are_removed_and_unmatched_queries_counted():
    gallery = np.array([[0.0], [1.0], [2.0]])
    with pytest.warns(UserWarning, match="1 of 2 queries have no match"):
        result = reid_metrics(
            np.array([[0.0], [0.0]]), [1, 2], gallery, [1, 1, 3], [0, 0], [0, 1, 1], max_rank=3
        )
    # Query 0: gallery 0 (label 1, camera 0) is removed; its match is gallery 1 at rank 1.
    assert result.num_queries == 2 and result.num_valid_queries == 1
    assert result.cmc.tolist() == [1, 1, 1]
    assert result.to_dict()["num_valid_queries"] == 1


def test_accepts_tensors_and_short_galleries_pad_the_cmc():
    result = reid_metrics(
        torch.zeros(1, 2), torch.tensor([1]), torch.ones(2, 2), [0, 1], max_rank=5
    )
    assert result.cmc.tolist() == [0, 1, 1, 1, 1]


def test_bad_input():
    ok = np.zeros((2, 3))
    with pytest.raises(PlpEvalError, match=r"query_features has 1 rows with NaN"):
        reid_metrics(np.array([[np.nan, 0, 0], [0, 0, 0]]), [0, 1], ok, [0, 1])
    with pytest.raises(PlpEvalError, match=r"dimension 3, gallery_features 2"):
        reid_metrics(ok, [0, 1], np.zeros((2, 2)), [0, 1])
    with pytest.raises(PlpEvalError, match=r"gallery_labels has 3 items, expected 2"):
        reid_metrics(ok, [0, 1], ok, [0, 1, 2])
    with pytest.raises(PlpEvalError, match="query_features is empty"):
        reid_metrics(np.zeros((0, 3)), [], ok, [0, 1])
    with pytest.raises(PlpEvalError, match=r"unknown metric 'l1'"):
        reid_metrics(ok, [0, 1], ok, [0, 1], metric="l1")
    with pytest.raises(PlpEvalError, match="max_rank must be >= 1"):
        reid_metrics(ok, [0, 1], ok, [0, 1], max_rank=0)
    with pytest.raises(PlpEvalError, match="no query has a match"):
        reid_metrics(ok, [0, 1], ok, [2, 3])
    with pytest.raises(PlpEvalError, match="k must be >= 1"):
        rank_lists(ok, ok, k=0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_rank_lists_match_brute_force(metric):
    rng = np.random.default_rng(1)
    qf, gf = (
        rng.normal(size=(20, 8)).astype(np.float32),
        rng.normal(size=(100, 8)).astype(np.float32),
    )
    indices, distances = rank_lists(qf, gf, k=5, metric=metric)
    if metric == "cosine":
        full = (
            1
            - (qf / np.linalg.norm(qf, axis=1, keepdims=True))
            @ (gf / np.linalg.norm(gf, axis=1, keepdims=True)).T
        )
    else:
        full = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    expected = np.argsort(full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(full, expected, 1), atol=1e-5)


def test_memory_blocks_are_bounded():
    # Extra memory is one block of distances: BLOCK x gallery, whatever the number of queries.
    assert _ranking.BLOCK <= 512


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_peak_memory_does_not_grow_with_the_number_of_queries(metric):
    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(10000, 16)).astype(np.float32)
    g_labels = rng.integers(0, 50, 10000)
    queries = rng.normal(size=(8 * _ranking.BLOCK, 16)).astype(np.float32)
    q_labels = rng.integers(0, 50, len(queries))
    reid_metrics(queries[:8], q_labels[:8], gallery, g_labels, metric=metric)  # compile, warm up

    def peak(num_queries):
        tracemalloc.start()
        n = num_queries
        reid_metrics(queries[:n], q_labels[:n], gallery, g_labels, metric=metric)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    one_block = min(peak(_ranking.BLOCK) for _ in range(2))
    eight_blocks = min(peak(8 * _ranking.BLOCK) for _ in range(2))
    # Eight times the queries: the peak grows by less than 2% (a few Python objects), whereas
    # anything per query x gallery would add megabytes.
    assert eight_blocks <= 1.02 * one_block
    # ... and it is about one float32 block of scores plus the gallery in float32.
    assert one_block <= 1.5 * (_ranking.BLOCK * 10000 * 4 + gallery.nbytes) + 256 * 1024


@pytest.mark.parametrize("method", ["count", "sort"])
def test_methods_agree_on_a_larger_case(method):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 32))
    q_labels, g_labels = rng.integers(0, 60, 600), rng.integers(0, 60, 2000)
    qf = centres[q_labels] + rng.normal(size=(600, 32))
    gf = centres[g_labels] + rng.normal(size=(2000, 32))
    gf[1000:1100], g_labels[1000:1100] = gf[:100], g_labels[:100]
    qc, gc = rng.integers(0, 4, 600), rng.integers(0, 4, 2000)
    result = _ranking._evaluate(qf, q_labels, gf, g_labels, qc, gc, method=method)
    # Duplicated gallery rows tie exactly: the copy with the lower index ranks first.
    expected = reference(qf[:40], q_labels[:40], gf, g_labels, qc[:40], gc)
    head = _ranking._evaluate(qf[:40], q_labels[:40], gf, g_labels, qc[:40], gc, method=method)
    np.testing.assert_allclose(head.cmc, expected[0], atol=1e-9)
    assert head.mean_average_precision == pytest.approx(expected[1], abs=1e-9)
    other = _ranking._evaluate(qf, q_labels, gf, g_labels, qc, gc, method="sort")
    assert result.mean_average_precision == pytest.approx(other.mean_average_precision, abs=1e-12)
    np.testing.assert_array_equal(result.cmc, other.cmc)


def test_public_api_is_exactly_all():
    public = {name for name in dir(plp_eval) if not name.startswith("_")}
    assert public == set(plp_eval.__all__)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
def test_many_matches_per_query_agree_with_the_sort_method(metric, integer):
    # ~500 matches per query: the kernel sorts its candidates instead of counting per match.
    rng = np.random.default_rng(4)
    if integer and metric == "cosine":  # signed one-hot rows: exact cosine ties
        qf, gf = np.zeros((50, 6)), np.zeros((3000, 6))
        qf[np.arange(50), rng.integers(0, 6, 50)] = rng.choice([-1.0, 1.0], 50)
        gf[np.arange(3000), rng.integers(0, 6, 3000)] = rng.choice([-1.0, 1.0], 3000)
    elif integer:
        qf, gf = rng.integers(-2, 3, (50, 6)) + 0.0, rng.integers(-2, 3, (3000, 6)) + 0.0
    else:
        qf, gf = rng.normal(size=(50, 6)), rng.normal(size=(3000, 6))
    ql, gl = rng.integers(0, 6, 50), rng.integers(0, 6, 3000)
    qc, gc = rng.integers(0, 3, 50), rng.integers(0, 3, 3000)
    fast = _ranking._evaluate(qf, ql, gf, gl, qc, gc, metric=metric, method="count")
    slow = _ranking._evaluate(qf, ql, gf, gl, qc, gc, metric=metric, method="sort")
    np.testing.assert_array_equal(fast.cmc, slow.cmc)
    assert fast.mean_average_precision == pytest.approx(slow.mean_average_precision, abs=1e-12)
    assert fast.mean_inp == pytest.approx(slow.mean_inp, abs=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_near_ties_below_float32_resolution_follow_float64(metric):
    # Distances differ by ~1e-10 relative: equal in float32, ordered in float64 (not by index).
    rng = np.random.default_rng(5)
    angles = 1.0 + rng.uniform(0, 1e-9, 400)
    gallery = (
        np.stack([np.cos(angles), np.sin(angles)], 1) * (1.0 + rng.uniform(0, 1e-9, 400))[:, None]
    )
    g_labels = rng.integers(0, 3, 400)
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]])
    q_labels = np.array([0, 1, 2])
    result = reid_metrics(queries, q_labels, gallery, g_labels, metric=metric, max_rank=400)
    cmc, mean_ap, mean_inp, _ = reference(
        queries, q_labels, gallery, g_labels, None, None, metric, 400
    )
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert result.mean_average_precision == pytest.approx(mean_ap, abs=1e-9)
    assert result.mean_inp == pytest.approx(mean_inp, abs=1e-9)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_huge_and_tiny_features_use_the_float64_scores(scale):
    rng = np.random.default_rng(6)
    qf, gf = rng.normal(size=(30, 5)) * scale, rng.normal(size=(500, 5)) * scale
    ql, gl = rng.integers(0, 5, 30), rng.integers(0, 5, 500)
    fast = _ranking._evaluate(qf, ql, gf, gl, method="count")
    cmc, mean_ap, _, _ = reference(qf, ql, gf, gl)
    np.testing.assert_allclose(fast.cmc, cmc, atol=1e-9)
    assert fast.mean_average_precision == pytest.approx(mean_ap, abs=1e-9)
