import doctest
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
import torch

import plp_eval
from plp_eval import (
    PlpEvalError,
    _match_ranks,
    _numpy_ranking,
    _problem,
    _ranking,
    _threads,
    rank_lists,
    reid_metrics,
    reid_metrics_from_distances,
)

# torch on the CPU here (CI has no GPU); numpy: the default CPU path, however many ties.
BACKENDS = ["numba", "torch", "numpy"]


# Exact ties by the thousand: numpy (exact arithmetic per tie) hands over to numba there.
TIE_BACKENDS = ["numba", "torch"]


def evaluate(*args, backend, **kwargs):
    """reid_metrics on one backend (numpy: the path a process without numba loaded takes)."""
    if backend == "numpy":
        return _ranking._evaluate(*args, method="numpy", **kwargs)
    return reid_metrics(*args, backend=backend, **kwargs)


def reference(
    qf, ql, gf, gl, qc=None, gc=None, metric="euclidean", max_rank=50, self_out=False, exact=False
):
    """Slow and obvious: full sort per query, explicit loops; float64, or exact rationals.

    Returns (cmc, mAP, mINP, valid, precision@1, R-precision, MAP@R).
    """
    cmc, aps, inps, firsts, r_precisions, aps_at_r = np.zeros(max_rank), [], [], [], [], []
    for i in range(len(qf)):
        if exact:  # real arithmetic on the given float values
            q = [Fraction(float(x)) for x in qf[i]]
            rows = [[Fraction(float(x)) for x in g] for g in gf]
            if metric == "cosine":
                dots = [sum(a * b for a, b in zip(q, g, strict=True)) for g in rows]
                norms = [sum(b * b for b in g) for g in rows]
                # distance order = descending sign(s) s^2 / |g|^2 (a zero vector: 0)
                d = [
                    -(s * abs(s) / n) if n else Fraction(0)
                    for s, n in zip(dots, norms, strict=True)
                ]
            else:
                d = [sum((a - b) ** 2 for a, b in zip(q, g, strict=True)) for g in rows]
        elif metric == "cosine":
            a = np.asarray(qf[i], np.float64) / np.linalg.norm(qf[i])
            d = [1 - a @ (g / np.linalg.norm(g)) for g in np.asarray(gf, np.float64)]
        else:
            d = [float(((np.float64(qf[i]) - g) ** 2).sum()) for g in np.asarray(gf, np.float64)]
        order = sorted(range(len(gf)), key=lambda j: (d[j], j))
        if qc is not None:
            order = [j for j in order if not (gl[j] == ql[i] and gc[j] == qc[i])]
        if self_out:
            order = [j for j in order if j != i]
        hits = [rank for rank, j in enumerate(order, 1) if gl[j] == ql[i]]
        if not hits:
            continue
        if hits[0] <= max_rank:
            cmc[hits[0] - 1 :] += 1
        r = len(hits)
        aps.append(np.mean([(n + 1) / h for n, h in enumerate(hits)]))
        inps.append(r / hits[-1])
        firsts.append(hits[0] == 1)
        r_precisions.append(sum(h <= r for h in hits) / r)
        aps_at_r.append(sum((n + 1) / h for n, h in enumerate(hits) if h <= r) / r)
    return (
        cmc / len(aps), np.mean(aps), np.mean(inps), len(aps),
        np.mean(firsts), np.mean(r_precisions), np.mean(aps_at_r),
    )  # fmt: skip


def assert_equals_reference(result, expected):
    cmc, mean_ap, mean_inp, valid, precision_at_1, r_precision, map_at_r = expected
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-9)
    assert result.mean_average_precision == pytest.approx(mean_ap, abs=1e-9)
    assert result.mean_inp == pytest.approx(mean_inp, abs=1e-9)
    assert result.num_valid_queries == valid
    assert result.precision_at_1 == pytest.approx(precision_at_1, abs=1e-12)
    assert result.r_precision == pytest.approx(r_precision, abs=1e-9)
    assert result.map_at_r == pytest.approx(map_at_r, abs=1e-9)


def assert_same_bits(result, other):
    np.testing.assert_array_equal(result.cmc, other.cmc)
    assert result.to_dict() == other.to_dict()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("cameras", [False, True])
@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
def test_equals_slow_reference(metric, cameras, integer, backend):
    if integer and metric == "cosine" and backend == "numpy":
        pytest.skip("~10^5 exact comparisons: auto hands them to numba (test_many_ties_...)")
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
    result = evaluate(qf, ql, gf, gl, qc, gc, metric=metric, max_rank=20, backend=backend)
    assert_equals_reference(result, reference(qf, ql, gf, gl, qc, gc, metric, 20))


def test_worked_example_doctest():
    assert doctest.testmod(_ranking, raise_on_error=True).attempted >= 7
    assert doctest.testmod(_match_ranks, raise_on_error=True).attempted >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_ties_follow_gallery_index(backend):
    # All four gallery items at the same distance; matches at indices 1 and 3 -> ranks 2 and 4.
    gallery = np.array([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]])
    result = evaluate(np.zeros((1, 2)), [5], gallery, [0, 5, 1, 5], max_rank=4, backend=backend)
    assert result.cmc.tolist() == [0, 1, 1, 1]
    assert result.mean_average_precision == pytest.approx((1 / 2 + 2 / 4) / 2)
    # R = 2; one match (rank 2) within the first 2: R-precision 1/2, AP@R (1/2) / 2.
    assert (result.precision_at_1, result.r_precision, result.map_at_r) == (0.0, 0.5, 0.25)


def test_hand_computed_precision_metrics_over_two_queries():
    # Query 0 (label 1): ranking 0, 1, 2, 3 -> labels 1, 2, 1, 1: R = 3, hits at 1, 3, 4.
    # Query 1 (label 2): hit at rank 2 (R = 1).
    gallery = np.array([[0.0], [1.0], [2.0], [3.0]])
    result = reid_metrics(np.array([[-1.0], [1.6]]), [1, 2], gallery, [1, 2, 1, 1], max_rank=4)
    assert result.precision_at_1 == 0.5  # query 0 only
    # R-precision: query 0 has 2 hits in the first 3 -> 2/3; query 1: 0 hits in the first 1.
    assert result.r_precision == pytest.approx((2 / 3 + 0) / 2)
    # AP@R: query 0 -> (1/1 + 2/3) / 3; query 1 -> 0.
    assert result.map_at_r == pytest.approx((1 + 2 / 3) / 3 / 2)
    keys = result.to_dict()
    assert keys["precision@1"] == 0.5 and keys["R-precision"] == result.r_precision
    assert keys["MAP@R"] == result.map_at_r


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_camera_matches_are_removed_and_unmatched_queries_counted(backend):
    gallery = np.array([[0.0], [1.0], [2.0]])
    with pytest.warns(UserWarning, match="1 of 2 queries have no match"):
        result = evaluate(
            np.array([[0.0], [0.0]]), [1, 2], gallery, [1, 1, 3], [0, 0], [0, 1, 1], max_rank=3,
            backend=backend,
        )  # fmt: skip
    # Query 0: gallery 0 (label 1, camera 0) is removed; its match is gallery 1 at rank 1.
    assert result.num_queries == 2 and result.num_valid_queries == 1
    assert result.cmc.tolist() == [1, 1, 1]
    assert result.to_dict()["num_valid_queries"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepts_tensors_and_short_galleries_pad_the_cmc(backend):
    result = evaluate(
        torch.zeros(1, 2), torch.tensor([1]), torch.ones(2, 2), [0, 1], max_rank=5, backend=backend
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
    with pytest.raises(PlpEvalError, match=r"unknown backend 'jax'; available: auto"):
        reid_metrics(ok, [0, 1], ok, [0, 1], backend="jax")
    with pytest.raises(PlpEvalError, match="unknown method 'heap'"):
        _ranking._evaluate(ok, [0, 1], ok, [0, 1], method="heap")
    with pytest.raises(PlpEvalError, match="distributed=True needs an initialised"):
        reid_metrics(ok, [0, 1], ok, [0, 1], distributed=True)


def test_bad_leave_one_out_input():
    ok = np.arange(6.0).reshape(3, 2)
    with pytest.raises(PlpEvalError, match="as many queries as gallery items, got 2 and 3"):
        reid_metrics(ok[:2], [0, 1], ok, [0, 1, 1], query_in_gallery=True)
    with pytest.raises(
        PlpEvalError, match=r"query_labels == gallery_labels: .* index 2 \(1 vs 0\)"
    ):
        reid_metrics(ok, [0, 1, 1], ok, [0, 1, 0], query_in_gallery=True)
    with pytest.raises(PlpEvalError, match=r"query_cameras == gallery_cameras: .* index 0"):
        reid_metrics(ok, [0, 1, 1], ok, [0, 1, 1], [0, 0, 0], [1, 0, 0], query_in_gallery=True)
    with pytest.raises(PlpEvalError, match=r"same query and gallery features: .* row 1"):
        reid_metrics(
            ok, [0, 1, 1], ok + np.array([[0, 0], [0, 1], [0, 0]]), [0, 1, 1], query_in_gallery=True
        )


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


def test_block_sizes_doctests():
    assert doctest.testmod(_threads, raise_on_error=True).attempted >= 2


@pytest.mark.parametrize("workers", [1, 2, 8])
@pytest.mark.parametrize("num_gallery", [1000, 100_000, 2_000_000])
def test_memory_blocks_are_bounded(workers, num_gallery):
    # Extra memory is the workers' blocks of scores (and masks): at most MEMORY bytes, unless
    # that leaves fewer than 32 rows a block; whatever the number of queries.
    row_bytes = 5 * num_gallery
    rows = _threads.rows_per_worker(row_bytes, workers)
    assert 32 <= rows <= _threads.ROWS
    assert rows == 32 or workers * rows * row_bytes <= _threads.MEMORY
    for num_queries in (1, 31, 500, 10_000, 12_345):
        size = _threads.even_rows(num_queries, rows, workers)
        blocks = -(-num_queries // size)
        assert size <= rows
        # Equal shares: every worker gets as many blocks (but for blocks of the 32-row floor).
        assert blocks % workers == 0 or size == min(32, rows)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_peak_memory_does_not_grow_with_the_number_of_queries(metric, backend, monkeypatch):
    monkeypatch.setattr(_threads, "ROWS", 128)  # blocks of 128 rows: a quicker test
    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(10000, 16)).astype(np.float32)
    g_labels = rng.integers(0, 50, 10000)
    row_bytes = (4 if backend == "numba" else 5) * len(gallery)
    block = _threads.num_workers() * _threads.rows_per_worker(row_bytes)  # rows in flight
    queries = rng.normal(size=(8 * block, 16)).astype(np.float32)
    q_labels = rng.integers(0, 50, len(queries))
    n = block  # warm up: compile, and start what a call with threads starts once
    evaluate(queries[:n], q_labels[:n], gallery, g_labels, metric=metric, backend=backend)

    def peak(num_queries):
        tracemalloc.start()
        n = num_queries
        evaluate(queries[:n], q_labels[:n], gallery, g_labels, metric=metric, backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    one_block = min(peak(block) for _ in range(2))
    eight_blocks = min(peak(8 * block) for _ in range(2))
    # Eight times the queries: the peak grows by the per-query values and their copies (5
    # float64 values per query, copied a few times: ~300 bytes a query), whereas anything
    # per query x gallery would add 40 KB a query (the numpy path used to keep the last
    # block's arrays alive while ranking the next one: ~2 KB a query here).
    assert eight_blocks <= one_block + 512 * 7 * block
    # ... and it is about one float32 block of scores (and numpy's candidate mask) plus the
    # gallery, and numpy's candidates: at most CANDIDATES of 64 bytes per worker at once.
    if backend == "numba":
        assert one_block <= 1.5 * (block * row_bytes + gallery.nbytes) + 256 * 1024
    else:
        candidates = _threads.num_workers() * _numpy_ranking.CANDIDATES * 64
        assert one_block <= 1.5 * (block * row_bytes + gallery.nbytes) + candidates


@pytest.mark.parametrize("method", ["numba", "sort", "torch", "numpy"])
def test_methods_agree_on_a_larger_case(method):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 32))
    q_labels, g_labels = rng.integers(0, 60, 600), rng.integers(0, 60, 2000)
    qf = centres[q_labels] + rng.normal(size=(600, 32))
    gf = centres[g_labels] + rng.normal(size=(2000, 32))
    gf[1000:1100], g_labels[1000:1100] = gf[:100], g_labels[:100]
    qc, gc = rng.integers(0, 4, 600), rng.integers(0, 4, 2000)
    options = {"device": "cpu"} if method == "torch" else {"method": method}
    result = _ranking._evaluate(qf, q_labels, gf, g_labels, qc, gc, **options)
    # Duplicated gallery rows tie exactly: the copy with the lower index ranks first.
    expected = reference(qf[:40], q_labels[:40], gf, g_labels, qc[:40], gc)
    head = _ranking._evaluate(qf[:40], q_labels[:40], gf, g_labels, qc[:40], gc, **options)
    assert_equals_reference(head, expected)
    other = _ranking._evaluate(qf, q_labels, gf, g_labels, qc, gc, method="numba")
    if method == "sort":  # float64 ranking: equal up to the rounding of the sums
        assert result.mean_average_precision == pytest.approx(
            other.mean_average_precision, abs=1e-12
        )
        np.testing.assert_array_equal(result.cmc, other.cmc)
    else:  # the two backends: the same bits
        assert_same_bits(result, other)


def test_many_ties_are_handed_over_to_numba(monkeypatch):
    # numpy settles near ties one exact comparison at a time; past its budget the block goes
    # to the numba kernels (the same exact ranking).
    rng = np.random.default_rng(13)
    qf, gf = rng.integers(-1, 2, (20, 3)) + 0.0, rng.integers(-1, 2, (400, 3)) + 0.0
    ql, gl = rng.integers(0, 4, 20), rng.integers(0, 4, 400)
    problem = _problem.prepare(qf, ql, gf, gl, None, None, "cosine", 50, False)
    with pytest.raises(_numpy_ranking.TooManyTiesError):
        _numpy_ranking.numpy_values(problem, range(20))
    handed_over = []

    def numba_block(*args):
        handed_over.append(1)
        return numba_block_of_ranking(*args)

    numba_block_of_ranking = _ranking._numba_block
    monkeypatch.setattr(_ranking, "_numba_block", numba_block)
    result = _ranking._evaluate(qf, ql, gf, gl, metric="cosine")
    assert handed_over
    assert_equals_reference(result, reference(qf, ql, gf, gl, metric="cosine", exact=True))


def test_public_api_is_exactly_all():
    public = {name for name in dir(plp_eval) if not name.startswith("_")}
    assert public == set(plp_eval.__all__)


@pytest.mark.parametrize("backend", TIE_BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
def test_many_matches_per_query_agree_with_the_sort_method(metric, integer, backend):
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
    fast = evaluate(qf, ql, gf, gl, qc, gc, metric=metric, backend=backend)
    slow = _ranking._evaluate(qf, ql, gf, gl, qc, gc, metric=metric, method="sort")
    np.testing.assert_array_equal(fast.cmc, slow.cmc)
    for name in ("mean_average_precision", "mean_inp", "r_precision", "map_at_r"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_near_ties_below_float32_resolution_follow_the_exact_order(metric, backend):
    # Distances differ by ~1e-10 relative: equal in float32, ordered exactly (not by index).
    rng = np.random.default_rng(5)
    angles = 1.0 + rng.uniform(0, 1e-9, 400)
    gallery = (
        np.stack([np.cos(angles), np.sin(angles)], 1) * (1.0 + rng.uniform(0, 1e-9, 400))[:, None]
    )
    g_labels = rng.integers(0, 3, 400)
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]])
    q_labels = np.array([0, 1, 2])
    result = evaluate(
        queries, q_labels, gallery, g_labels, metric=metric, max_rank=400, backend=backend
    )
    expected = reference(queries, q_labels, gallery, g_labels, None, None, metric, 400, exact=True)
    assert_equals_reference(result, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_huge_and_tiny_features_use_the_float64_scores(scale, backend):
    rng = np.random.default_rng(6)
    qf, gf = rng.normal(size=(30, 5)) * scale, rng.normal(size=(500, 5)) * scale
    ql, gl = rng.integers(0, 5, 30), rng.integers(0, 5, 500)
    result = evaluate(qf, ql, gf, gl, backend=backend)
    assert_equals_reference(result, reference(qf, ql, gf, gl))


def real_ties(rng, metric, num_queries=12, num_gallery=90, dim=5):
    """Integer features whose real distances tie often: permuted and scaled copies."""
    base = rng.integers(-3, 4, (num_gallery // 3, dim)).astype(np.float32)
    permuted = base[:, rng.permutation(dim)]
    if metric == "cosine":  # scaled copies: same cosine in real arithmetic, not in float64
        scaled = base * rng.choice([3.0, 5.0, 7.0, 0.1], (len(base), 1)).astype(np.float32)
    else:  # sign flips of the coordinates where the query is 0: same L2 distance
        scaled = base.copy()
        scaled[:, 0] *= -1
    gallery = np.concatenate([base, permuted, scaled])[rng.permutation(num_gallery)]
    queries = np.ones((num_queries, dim), np.float32)  # permutation-invariant queries ...
    queries[: num_queries // 2] = rng.integers(-3, 4, (num_queries // 2, dim))
    queries[:, 0] = 0  # ... and flip-invariant first coordinate
    queries[-1] = 0.3  # not an integer: ties stay ties in real arithmetic
    return queries, gallery


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("cameras", [False, True])
def test_ties_in_real_arithmetic_are_ties(metric, cameras, backend):
    rng = np.random.default_rng(7)
    queries, gallery = real_ties(rng, metric)
    ql, gl = rng.integers(0, 4, len(queries)), rng.integers(0, 4, len(gallery))
    qc, gc = (
        (rng.integers(0, 2, len(queries)), rng.integers(0, 2, len(gallery)))
        if cameras
        else (None, None)
    )
    result = evaluate(queries, ql, gallery, gl, qc, gc, metric=metric, max_rank=90, backend=backend)
    expected = reference(queries, ql, gallery, gl, qc, gc, metric, 90, exact=True)
    assert_equals_reference(result, expected)


def test_the_exact_reference_differs_from_float64_on_these_ties():
    # The float64 sort (rounding decides cosine ties of scaled copies) gives another answer:
    # the exactness test above can fail.
    rng = np.random.default_rng(7)
    queries, gallery = real_ties(rng, "cosine")
    ql, gl = rng.integers(0, 4, len(queries)), rng.integers(0, 4, len(gallery))
    exact = reference(queries, ql, gallery, gl, metric="cosine", max_rank=90, exact=True)
    rounded = reference(queries, ql, gallery, gl, metric="cosine", max_rank=90)
    assert not np.allclose(exact[0], rounded[0]) or abs(exact[1] - rounded[1]) > 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_leave_one_out_equals_the_reference(metric, backend):
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(10, 6))
    labels = rng.integers(0, 10, 200)
    features = (centres[labels] + rng.normal(size=(200, 6))).astype(np.float32)
    features[50] = features[10]  # an exact duplicate: it ties with query 10's own row
    labels[50] = labels[10]
    labels[199] = 99  # a label seen once: no match once it leaves itself out
    with pytest.warns(UserWarning, match="1 of 200 queries have no match"):
        result = evaluate(
            features, labels, features, labels, metric=metric, max_rank=200,
            query_in_gallery=True, backend=backend,
        )  # fmt: skip
    expected = reference(features, labels, features, labels, None, None, metric, 200, True, True)
    assert_equals_reference(result, expected)


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_precision_metrics_equal_pytorch_metric_learning(leave_one_out):
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(9)
    centres = rng.normal(size=(20, 8)) * 2
    q_labels, g_labels = rng.integers(0, 20, 150), rng.integers(0, 22, 400)
    queries = (centres[q_labels] + rng.normal(size=(150, 8))).astype(np.float32)
    gallery = (centres[g_labels % 20] + rng.normal(size=(400, 8))).astype(np.float32)
    names = ("precision_at_1", "r_precision", "mean_average_precision_at_r")
    # k=None: PML ranks the whole reference set, so its values are exact here (no ties).
    calculator = AccuracyCalculator(include=names, k=None, device=torch.device("cpu"))
    if leave_one_out:
        queries, q_labels = gallery, g_labels
        pml = calculator.get_accuracy(torch.from_numpy(gallery), torch.from_numpy(g_labels))
    else:
        pml = calculator.get_accuracy(
            torch.from_numpy(queries), torch.from_numpy(q_labels),
            torch.from_numpy(gallery), torch.from_numpy(g_labels),
        )  # fmt: skip
    result = reid_metrics(queries, q_labels, gallery, g_labels, query_in_gallery=leave_one_out)
    assert result.precision_at_1 == pytest.approx(pml["precision_at_1"], abs=1e-12)
    assert result.r_precision == pytest.approx(pml["r_precision"], abs=1e-12)
    assert result.map_at_r == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-12)


def given_reference(distances, ql, gl, qc=None, gc=None, max_rank=50, self_out=False):
    """The reference ranking for given distances (ties by index): the one in reference()."""
    metrics = []
    for i, row in enumerate(distances):
        order = sorted(range(len(gl)), key=lambda j: (row[j], j))
        if qc is not None:
            order = [j for j in order if not (gl[j] == ql[i] and gc[j] == qc[i])]
        if self_out:
            order = [j for j in order if j != i]
        metrics.append([rank for rank, j in enumerate(order, 1) if gl[j] == ql[i]])
    hits = [h for h in metrics if h]
    cmc = np.zeros(max_rank)
    for h in hits:
        if h[0] <= max_rank:
            cmc[h[0] - 1 :] += 1
    return (
        cmc / len(hits),
        np.mean([np.mean([(n + 1) / r for n, r in enumerate(h)]) for h in hits]),
        np.mean([len(h) / h[-1] for h in hits]),
        len(hits),
        np.mean([h[0] == 1 for h in hits]),
        np.mean([sum(r <= len(h) for r in h) / len(h) for h in hits]),
        np.mean([sum((n + 1) / r for n, r in enumerate(h) if r <= len(h)) / len(h) for h in hits]),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cameras", [False, True])
def test_from_distances_ranks_the_given_numbers(dtype, cameras):
    rng = np.random.default_rng(10)
    # Few distinct values: many exact ties, ordered by gallery index; near ties 1 ulp apart.
    distances = rng.integers(0, 6, (30, 200)).astype(dtype)
    distances[:, ::7] = np.nextafter(distances[:, ::7], dtype(10))
    ql, gl = rng.integers(0, 5, 30), rng.integers(0, 5, 200)
    qc, gc = (rng.integers(0, 2, 30), rng.integers(0, 2, 200)) if cameras else (None, None)
    result = reid_metrics_from_distances(distances, ql, gl, qc, gc, max_rank=200)
    assert_equals_reference(result, given_reference(distances, ql, gl, qc, gc, 200))
    # Streamed as consecutive row blocks (a generator of tensors): the same bits.
    blocks = (torch.from_numpy(distances[i : i + 7]) for i in range(0, 30, 7))
    assert_same_bits(reid_metrics_from_distances(blocks, ql, gl, qc, gc, max_rank=200), result)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_from_distances_equals_reid_metrics_on_their_distances(metric):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 8, 120)
    features = rng.normal(size=(120, 6)) + 3 * rng.normal(size=(8, 6))[labels]
    expected = reid_metrics(
        features, labels, features, labels, metric=metric, query_in_gallery=True
    )
    distances = _ranking._distances(features, features, metric == "cosine")
    result = reid_metrics_from_distances(distances, labels, labels, query_in_gallery=True)
    assert_same_bits(result, expected)
