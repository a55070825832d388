"""Camera matrix, per-class AP and per-category metrics, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from plp_eval import (
    PlpEvalError,
    camera_matrix,
    class_average_precision,
    metrics_by_category,
    reid_metrics,
)

# Points on a line. Labels A=0, B=1, C=2; cameras 1, 2, 3.
QUERIES = np.array([[0.0], [10.0], [6.0], [19.0]])
QUERY_LABELS = np.array([0, 1, 0, 2])
QUERY_CAMERAS = np.array([1, 2, 2, 3])
GALLERY = np.array([[0.1], [1.0], [0.5], [3.0], [9.0], [10.2], [0.7], [20.0]])
GALLERY_LABELS = np.array([0, 0, 1, 0, 1, 1, 0, 2])
GALLERY_CAMERAS = np.array([1, 2, 2, 3, 1, 3, 2, 1])


def test_camera_matrix_hand_computed():
    # Row camera 1 (query 0, A at 0):
    #   vs camera 2 (items 1 A@1, 2 B@0.5, 6 A@0.7): ranked 2, 6, 1 -> A at ranks 2, 3:
    #   AP = (1/2 + 2/3) / 2 = 7/12.  vs camera 3 (3 A@3, 5 B@10.2): A first -> 1.
    #   vs camera 1: its only A (item 0) has its camera -> no match: NaN.
    # Row camera 2 (query 1, B at 10; query 2, A at 6):
    #   vs camera 1 (0 A@0.1, 4 B@9, 7 C@20): query 1 -> B first (1); query 2 -> B@9 (d 3)
    #   before A@0.1 (d 5.9): A at rank 2 (1/2); mAP 0.75.  vs camera 3: query 1 -> B@10.2
    #   first (1); query 2 -> A@3 (d 3) before B@10.2 (d 4.2): 1; mAP 1.
    # Row camera 3 (query 3, C at 19): vs camera 1 -> C@20 first (1); cameras 2 and 3 hold
    #   no C (and camera 3 is its own): NaN.
    result = camera_matrix(
        QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, QUERY_CAMERAS, GALLERY_CAMERAS
    )
    assert result.query_cameras.tolist() == result.gallery_cameras.tolist() == [1, 2, 3]
    nan = float("nan")
    expected = [[nan, 7 / 12, 1.0], [0.75, nan, 1.0], [1.0, nan, nan]]
    np.testing.assert_allclose(result.mean_average_precision, expected, rtol=1e-15)
    assert result.num_valid_queries.tolist() == [[0, 1, 1], [2, 0, 2], [1, 0, 0]]
    assert result.to_dict()["mAP"][0] == [None, pytest.approx(7 / 12), 1.0]


def test_camera_matrix_cells_agree_with_the_whole_ranking_restricted_by_hand():
    # Independent check on random data: cell (i, j) equals reid_metrics on the rows of
    # camera i against the items of camera j (selected by hand), valid queries only.
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(60, 4)), rng.normal(size=(150, 4))
    query_labels, gallery_labels = rng.integers(0, 12, 60), rng.integers(0, 12, 150)
    query_cameras, gallery_cameras = rng.integers(0, 3, 60), rng.integers(0, 3, 150)
    result = camera_matrix(
        queries, query_labels, gallery, gallery_labels, query_cameras, gallery_cameras,
        metric="cosine",
    )  # fmt: skip
    for i in range(3):
        for j in range(3):
            rows, items = query_cameras == i, gallery_cameras == j
            has_match = np.isin(query_labels, gallery_labels[items]) & rows
            if i == j or not has_match.any():
                assert np.isnan(result.mean_average_precision[i, j])
                continue
            expected = reid_metrics(
                queries[has_match], query_labels[has_match], gallery[items],
                gallery_labels[items], metric="cosine",
            )  # fmt: skip
            assert result.mean_average_precision[i, j] == expected.mean_average_precision
            assert result.num_valid_queries[i, j] == has_match.sum()


def test_camera_matrix_needs_cameras():
    with pytest.raises(PlpEvalError, match="camera_matrix needs query_cameras and gallery_cameras"):
        camera_matrix(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS, None, GALLERY_CAMERAS)


def test_class_average_precision_and_categories_hand_computed():
    # Without cameras. Query 0 (A@0): ranking 0 A, 2 B, 6 A, 1 A, 3 A, ... -> A at 1, 3, 4, 5:
    # AP = (1 + 2/3 + 3/4 + 4/5) / 4. Query 2 (A@6): ranking 4 B@9 (3), 3 A@3 (3): tie, lower
    # index first -> 3 A, 4 B, then 5 B@10.2 (4.2), 1 A@1 (5), 6 A@0.7, 2 B@0.5, 0 A@0.1:
    # A at 1, 4, 5, 7 -> AP = (1 + 2/4 + 3/5 + 4/7) / 4.
    result = reid_metrics(QUERIES, QUERY_LABELS, GALLERY, GALLERY_LABELS)
    ap_0 = (1 + 2 / 3 + 3 / 4 + 4 / 5) / 4
    ap_2 = (1 + 2 / 4 + 3 / 5 + 4 / 7) / 4
    assert result.average_precision[[0, 2]] == pytest.approx([ap_0, ap_2], abs=1e-15)
    classes = class_average_precision(result)
    assert classes.labels.tolist() == [0, 1, 2]
    assert classes.num_queries.tolist() == [2, 1, 1]
    assert classes.mean_average_precision[0] == pytest.approx((ap_0 + ap_2) / 2, abs=1e-15)
    np.testing.assert_array_equal(
        classes.mean_average_precision[1:], result.average_precision[[1, 3]]
    )
    worst, best = classes.extremes(1)
    assert classes.labels[worst].tolist() == [0] and classes.mean_average_precision[best] == 1.0
    rows = classes.to_rows(["person A", "person B", "person C"])
    assert rows[0] == {"label": 0, "name": "person A", "mAP": pytest.approx(0.5 * (ap_0 + ap_2)),
                       "queries": 2}  # fmt: skip
    by_category = metrics_by_category(result, ["x", "y", "x", "z"])
    assert sorted(by_category) == ["x", "y", "z"]
    assert by_category["x"].mean_average_precision == pytest.approx((ap_0 + ap_2) / 2)
    assert by_category["x"].num_queries == 2
    assert by_category["y"].to_dict()["rank-1"] == 1.0
    with pytest.raises(PlpEvalError, match=r"one entry per query \(4\), got shape \(3,\)"):
        metrics_by_category(result, ["x", "y", "z"])
