"""query_pairs: each query's first wrong item and first match, under the metrics' junk rule."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from plp_eval import PlpEvalError, _query_pairs, query_pairs, reid_metrics


def brute_force(qf, ql, gf, gl, qc, gc, query, metric, leave_self_out):
    """Sort the whole gallery by (distance, index), drop junk, read off the first of each kind."""
    q = qf[query].astype(np.float64)
    order = []
    for j, g in enumerate(gf.astype(np.float64)):
        if metric == "cosine":
            d = 1.0 - q @ g / (np.linalg.norm(q) * np.linalg.norm(g))
        else:
            d = float(np.sqrt(((q - g) ** 2).sum()))
        junk = (qc is not None and ql[query] == gl[j] and qc[query] == gc[j]) or (
            leave_self_out and j == query
        )
        if not junk:
            order.append((d, j))
    order.sort()
    ranked = [j for _, j in order]
    false = next((j for j in ranked if gl[j] != ql[query]), None)
    true = next((j for j in ranked if gl[j] == ql[query]), None)
    return (
        false,
        None if false is None else ranked.index(false) + 1,
        true,
        None if true is None else ranked.index(true) + 1,
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("cameras", [False, True])
def test_against_a_full_sort(metric, cameras):
    rng = np.random.default_rng(0)
    # Integer features: many exact ties, settled by gallery index.
    qf, gf = rng.integers(-2, 3, (30, 3)).astype(np.float32), rng.integers(-2, 3, (80, 3))
    gf = gf.astype(np.float32)
    ql, gl = rng.integers(0, 4, 30), rng.integers(0, 4, 80)
    qc, gc = (rng.integers(0, 3, 30), rng.integers(0, 3, 80)) if cameras else (None, None)
    qf[qf.sum(1) == 0] += 1  # no zero vectors for cosine
    gf[gf.sum(1) == 0] += 1
    chosen = np.arange(30)
    found = query_pairs(qf, ql, gf, gl, chosen, metric=metric, query_cameras=qc, gallery_cameras=gc)
    for pair in found:
        expected = brute_force(qf, ql, gf, gl, qc, gc, pair.query, metric, False)
        assert (pair.false_match, pair.false_rank, pair.true_match, pair.true_rank) == expected
    # The same ranking as the metrics: a true match at rank 1 is a rank-1 hit.
    metrics = reid_metrics(qf, ql, gf, gl, qc, gc, metric=metric)
    hits = [pair.true_rank == 1 for pair in found]
    assert np.mean(hits) == pytest.approx(metrics.cmc[0])


def test_leave_one_out_skips_the_query_itself():
    features = np.array([[0.0], [0.1], [5.0]])
    labels = np.array([1, 2, 1])
    (pair,) = query_pairs(features, labels, features, labels, [0], query_in_gallery=True)
    assert (pair.false_match, pair.false_rank, pair.true_match, pair.true_rank) == (1, 1, 2, 2)
    with pytest.raises(PlpEvalError, match="query_in_gallery needs the same rows"):
        query_pairs(features, labels, features[:2], labels[:2], [0], query_in_gallery=True)


def test_no_match_and_bad_input():
    (pair,) = query_pairs([[0.0]], [3], [[1.0], [2.0]], [1, 2], [0])
    assert pair.true_match is None and pair.true_rank is None and pair.false_match == 0
    with pytest.raises(PlpEvalError, match="queries must index the 1 queries"):
        query_pairs([[0.0]], [3], [[1.0]], [1], [1])
    with pytest.raises(PlpEvalError, match="unknown metric"):
        query_pairs([[0.0]], [3], [[1.0]], [1], [0], metric="l1")
    assert doctest.testmod(_query_pairs, raise_on_error=True).attempted >= 2
