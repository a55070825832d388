"""The junk rule's groups (a dataset CSV's sequences) in the ranking, against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest

from plp_eval import PlpEvalError, reid_metrics, reid_metrics_from_distances


def _brute_force(distances, ql, gl, qg, gg, qc=None, gc=None):
    """mAP and rank-1 with every junk item removed by hand: own group; same label and camera."""
    aps, firsts = [], []
    for i, row in enumerate(distances):
        order = sorted(range(len(gl)), key=lambda j: (row[j], j))
        order = [j for j in order if gg[j] != qg[i]]
        if qc is not None:
            order = [j for j in order if not (gl[j] == ql[i] and gc[j] == qc[i])]
        hits = [rank for rank, j in enumerate(order, 1) if gl[j] == ql[i]]
        if hits:
            aps.append(np.mean([(n + 1) / h for n, h in enumerate(hits)]))
            firsts.append(hits[0] == 1)
    return np.mean(aps), np.mean(firsts), len(aps)


@pytest.mark.parametrize("cameras", [False, True])
def test_same_group_items_are_left_out_of_the_ranking(cameras: bool) -> None:
    rng = np.random.default_rng(0)
    ql, gl = rng.integers(0, 4, 25), rng.integers(0, 4, 60)
    # Each group is one label's track (on one camera): group = label * 10 + track.
    qt, gt = rng.integers(0, 3, 25), rng.integers(0, 3, 60)
    qg, gg = ql * 10 + qt, gl * 10 + gt
    qc, gc = (qt % 2, gt % 2) if cameras else (None, None)
    queries, gallery = rng.standard_normal((25, 6)), rng.standard_normal((60, 6))
    distances = np.sqrt(((queries[:, None] - gallery[None]) ** 2).sum(-1))
    mean_ap, rank_1, valid = _brute_force(distances, ql, gl, qg, gg, qc, gc)
    for result in (
        reid_metrics(
            queries, ql, gallery, gl, qc, gc, query_groups=qg, gallery_groups=gg, backend="numba"
        ),
        reid_metrics_from_distances(distances, ql, gl, qc, gc, query_groups=qg, gallery_groups=gg),
    ):
        assert result.mean_average_precision == pytest.approx(mean_ap, abs=1e-12)
        assert result.precision_at_1 == pytest.approx(rank_1, abs=1e-12)
        assert result.num_valid_queries == valid


def test_a_group_with_two_labels_or_cameras_is_refused() -> None:
    features = np.eye(3)
    with pytest.raises(PlpEvalError, match=r"group 1 holds labels 0 and 2"):
        reid_metrics(features, [0, 1, 2], features, [0, 1, 2], query_groups=[1, 2, 3],
                     gallery_groups=[1, 2, 1])  # fmt: skip
    with pytest.raises(PlpEvalError, match=r"group 1 holds cameras 0 and 5"):
        reid_metrics(features, [0, 1, 2], features, [0, 1, 2], [0, 0, 0], [5, 0, 0],
                     query_groups=[1, 2, 3], gallery_groups=[1, 2, 3])  # fmt: skip
    with pytest.raises(PlpEvalError, match=r"query_groups given without"):
        reid_metrics(features, [0, 1, 2], features, [0, 1, 2], query_groups=[1, 2, 3])
