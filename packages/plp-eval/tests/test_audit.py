"""The audit: injected faults on digits found at the top, scores against a brute-force loop."""

from __future__ import annotations

import doctest
import tracemalloc

import numpy as np
import pytest
from sklearn.datasets import load_digits

from plp_eval import (
    AuditSplit,
    PlpEvalError,
    _audit_result,
    _class_geometry,
    _leakage,
    audit,
    pixel_hash,
)

METRICS = ["euclidean", "cosine"]


def faulty_digits(seed: int = 0) -> dict:
    """Digits (pixels as features) split in trainval / test with three kinds of injected faults.

    10 trainval labels flipped to another digit; digit 3 split into two identities (3 and 10)
    in both splits; 5 test images copied to the end of trainval.
    """
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    images, labels = digits.images[order], digits.target[order].copy()
    features = images.reshape(len(images), -1).astype(np.float32)
    trainval, test = slice(0, 1400), slice(1400, None)
    train_labels, test_labels = labels[trainval].copy(), labels[test].copy()
    flipped = rng.choice(1400, 10, replace=False)
    train_labels[flipped] = (train_labels[flipped] + rng.integers(1, 10, 10)) % 10
    for split_labels in (train_labels, test_labels):
        threes = np.flatnonzero(split_labels == 3)
        split_labels[threes[::2]] = 10
    copied = rng.choice(len(test_labels), 5, replace=False)
    return {
        "trainval": (
            np.concatenate([features[trainval], features[test][copied]]),
            np.concatenate([train_labels, test_labels[copied]]),
            np.concatenate([images[trainval], images[test][copied]]),
        ),
        "test": (features[test], test_labels, images[test]),
        "flipped": flipped,
        "copies": {(1400 + i, int(c)) for i, c in enumerate(copied)},
    }


@pytest.fixture(scope="module")
def digits() -> dict:
    return faulty_digits()


def splits_of(data: dict, hashes: bool) -> dict[str, AuditSplit]:
    return {
        name: AuditSplit(
            features,
            labels,
            hashes=[pixel_hash(image) for image in images] if hashes else None,
        )
        for name, (features, labels, images) in ((n, data[n]) for n in ("trainval", "test"))
    }


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("hashes", [True, False], ids=["hashes", "embeddings-only"])
def test_injected_faults_top_their_lists(digits, metric, hashes):
    result = audit(splits_of(digits, hashes), leakage_pairs=[("trainval", "test")], metric=metric)
    top20 = {(m.image.split, m.image.index) for m in result.mislabeled[:20]}
    assert {("trainval", int(i)) for i in digits["flipped"]} <= top20
    assert set(result.duplicate_identities[0].labels) == {3, 10}
    leaked = {(leak.first.index, leak.second.index) for leak in result.leakage[:5]}
    assert leaked == {(c, t) for c, t in digits["copies"]}
    assert all(leak.first.split == "trainval" for leak in result.leakage[:5])
    assert all(leak.distance == 0.0 for leak in result.leakage[:5])
    assert all(leak.identical_pixels is hashes for leak in result.leakage[:5])
    for listed in (result.mislabeled, result.duplicate_identities, result.outliers):
        scores = [entry.score for entry in listed]
        assert scores == sorted(scores, reverse=True)


def brute_force(features: np.ndarray, labels: np.ndarray, metric: str, k: int) -> dict:
    """Every image's scores by explicit loops: leave-one-out centroids, neighbours by sorting."""
    data = features.astype(np.float64)
    if metric == "cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        if metric == "cosine":
            return 1.0 - float(a @ b) / np.linalg.norm(b)
        return float(np.linalg.norm(a - b))

    classes = sorted(set(labels.tolist()))
    centroid = {c: data[labels == c].mean(0) for c in classes}
    spread = {
        c: np.sqrt(np.mean([distance(x, centroid[c]) ** 2 for x in data[labels == c]]))
        for c in classes
    }
    mislabel, outlier = {}, {}
    for i, x in enumerate(data):
        own_label = labels[i]
        others = [j for j in range(len(data)) if labels[j] == own_label and j != i]
        own = distance(x, data[others].mean(0))
        away = {c: distance(x, centroid[c]) for c in classes if c != own_label}
        nearest_other = min(away, key=lambda c: (away[c], c))
        everything = {**away, own_label: own}
        in_spreads = {c: everything[c] / spread[c] for c in classes}
        outlier[i] = min(in_spreads.values())
        row = [distance(x, y) for y in data]
        near = [j for j in sorted(range(len(data)), key=lambda j: (row[j], j)) if j != i][:k]
        votes = {c: sum(labels[j] == c for j in near) for c in classes}
        agreement = votes[own_label] / k
        outvoted = max(v for c, v in votes.items() if c != own_label) > votes[own_label]
        if away[nearest_other] < own or outvoted:
            score = 0.5 * own / (own + away[nearest_other]) + 0.5 * (1 - agreement)
            mislabel[i] = (score, nearest_other)
    return {"mislabel": mislabel, "outlier": outlier}


@pytest.mark.parametrize("metric", METRICS)
def test_scores_match_a_brute_force_loop(metric, monkeypatch):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 12)
    centres = rng.normal(scale=2.0, size=(5, 4))
    features = (centres[labels] + rng.normal(size=(60, 4))).astype(np.float32)
    expected = brute_force(features, labels, metric, k=6)
    monkeypatch.setattr(_class_geometry, "BLOCK_CELLS", 7)  # several blocks of one row or two
    result = audit(
        {"all": AuditSplit(features, labels)}, metric=metric, neighbours=6, max_entries=60
    )
    got = {m.image.index: (m.score, m.suggested_label) for m in result.mislabeled}
    assert got.keys() == expected["mislabel"].keys()
    assert result.totals["mislabeled"] == len(expected["mislabel"])
    for index, (score, suggested) in expected["mislabel"].items():
        assert got[index][0] == pytest.approx(score, rel=1e-6)  # unit rows kept in float32
        assert got[index][1] == suggested
    assert len(result.outliers) == 60
    for outlier in result.outliers:
        assert outlier.score == pytest.approx(expected["outlier"][outlier.image.index], rel=1e-6)


def test_duplicate_identities_hand_checked_with_cameras():
    # Four 1-D classes: 0 and 1 are one identity seen in cameras 1 and 2 (disjoint),
    # 2 and 3 are far apart. Centroids: 0 -> 0.0, 1 -> 0.5, 2 -> 10.0, 3 -> 20.0.
    features = np.array([[-1.0], [1.0], [0.0], [1.0], [9.0], [11.0], [19.0], [21.0]])
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    cameras = np.array([1, 1, 2, 2, 1, 3, 2, 3])
    result = audit({"gallery": AuditSplit(features, labels, cameras)}, max_entries=10)
    # Nearest centroids: 0 <-> 1 (0.5), 2 -> 1 (9.5 < 10), 3 -> 2: one mutual pair.
    assert [pair.labels for pair in result.duplicate_identities] == [(0, 1)]
    pair = result.duplicate_identities[0]
    spread = 0.5 * (1.0 + 0.5)  # RMS distances to the centroids: 1 and 0.5
    assert pair.gap == pytest.approx(0.5)
    assert pair.score == pytest.approx(spread / (spread + 0.5))
    assert pair.cameras == ((1,), (2,)) and pair.shared_cameras == ()
    assert pair.sizes == (2, 2)
    assert {ref.index for ref in pair.examples[0]} == {0, 1}
    as_json = result.to_dict()["duplicate_identities"][0]
    assert as_json["shared_cameras"] == [] and as_json["labels"] == [0, 1]


def test_leakage_within_one_split_lists_each_pair_once():
    features = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0], [5.0, 0.0]])
    result = audit(
        {"test": AuditSplit(features, [0, 1, 2, 3, 1], hashes=list("abcdb"))},
        leakage_pairs=[("test", "test")],
    )
    assert [(leak.first.index, leak.second.index) for leak in result.leakage] == [(1, 4)]
    assert result.leakage[0].identical_pixels
    # Nearest other image: 5, 0, 5, 5, 0; the default threshold is a tenth of the median.
    assert result.leakage_thresholds["test/test"] == pytest.approx(0.5)


def test_leakage_threshold_given_and_label_groups_kept_apart():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(20, 3)).astype(np.float32)
    query = train[:4] + 0.01
    gallery = rng.normal(size=(15, 3)).astype(np.float32)
    splits = {
        "trainval": AuditSplit(train, np.arange(20) % 4),
        "query": AuditSplit(query, [0, 1, 2, 3]),
        "gallery": AuditSplit(gallery, np.arange(15) % 4),
    }
    result = audit(
        splits,
        label_groups=[["trainval"], ["query", "gallery"]],
        leakage_pairs=[("trainval", "query")],
        leakage_threshold=0.05,
    )
    assert result.leakage_thresholds == {"trainval/query": 0.05}
    assert {(leak.first.index, leak.second.index) for leak in result.leakage} == {
        (i, i) for i in range(4)
    }


def test_label_groups_keep_label_spaces_apart():
    # Label 0 is a class at +10 in trainval and another one at -10 in the test group.
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 10)
    spots = np.where(labels == 0, 10.0, 0.0)[:, None]
    train = AuditSplit(spots + rng.normal(size=(20, 2)), labels)
    test = AuditSplit(-spots + rng.normal(size=(20, 2)), labels)
    apart = audit({"trainval": train, "test": test}, label_groups=[["trainval"], ["test"]])
    pooled = audit({"trainval": train, "test": test})
    assert apart.totals["mislabeled"] == 0
    assert max(o.score for o in apart.outliers) < 3
    # Pooled, class 0's centroid lies between the two spots, near class 1: all of class 0
    # is nearer class 1's centroid.
    assert pooled.totals["mislabeled"] >= 20


def test_bad_input():
    ok = AuditSplit(np.zeros((3, 2)), [0, 1, 1])
    with pytest.raises(PlpEvalError, match="no splits to audit"):
        audit({})
    with pytest.raises(PlpEvalError, match="unknown metric 'l1'"):
        audit({"a": ok}, metric="l1")
    with pytest.raises(PlpEvalError, match="neighbours must be >= 1"):
        audit({"a": ok}, neighbours=0)
    with pytest.raises(PlpEvalError, match="max_entries must be >= 1"):
        audit({"a": ok}, max_entries=0)
    with pytest.raises(PlpEvalError, match="leakage_threshold must be >= 0 and finite"):
        audit({"a": ok}, leakage_threshold=float("nan"))
    with pytest.raises(PlpEvalError, match="leakage_pairs names split 'b', which is not"):
        audit({"a": ok}, leakage_pairs=[("a", "b")])
    with pytest.raises(PlpEvalError, match="label_groups name split 'a' twice"):
        audit({"a": ok}, label_groups=[["a"], ["a"]])
    with pytest.raises(PlpEvalError, match="feature dimensions differ between splits"):
        audit({"a": ok, "b": AuditSplit(np.zeros((2, 3)), [0, 1])})
    with pytest.raises(PlpEvalError, match="split 'a' has 2 hashes, expected one per image"):
        audit({"a": AuditSplit(np.zeros((3, 2)), [0, 1, 1], hashes=["x", "y"])})
    with pytest.raises(PlpEvalError, match="labels of split 'a' has 2 items, expected 3"):
        audit({"a": AuditSplit(np.zeros((3, 2)), [0, 1])})
    with pytest.raises(PlpEvalError, match="cameras of split 'a' has 1 items"):
        audit({"a": AuditSplit(np.zeros((3, 2)), [0, 1, 1], cameras=[0])})


def test_pixel_hash_and_doctests():
    assert doctest.testmod(_leakage, raise_on_error=True).attempted >= 2
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert pixel_hash(image) == pixel_hash(image.copy())
    assert pixel_hash(image) != pixel_hash(image.reshape(4, 3))
    changed = image.copy()
    changed[2, 3] += 1
    assert pixel_hash(image) != pixel_hash(changed)


def test_audit_json_is_plain_and_states_its_scores(digits):
    result = audit(splits_of(digits, True), leakage_pairs=[("trainval", "test")], max_entries=3)
    as_dict = result.to_dict()
    assert as_dict["scores"] == _audit_result.SCORES
    assert list(as_dict) == [
        "metric",
        "neighbours",
        "leakage_thresholds",
        "scores",
        "totals",
        "mislabeled",
        "duplicate_identities",
        "leakage",
        "outliers",
    ]
    for name in ("mislabeled", "leakage", "outliers"):  # cut at max_entries; totals count all
        assert len(as_dict[name]) == 3 < as_dict["totals"][name]
    assert len(as_dict["duplicate_identities"]) == as_dict["totals"]["duplicate_identities"] == 2
    import json

    assert json.loads(json.dumps(as_dict)) == as_dict


def test_memory_stays_within_blocks(monkeypatch):
    # 6,000 images x 1,500 classes: one images x classes float64 matrix would be 72 MB.
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 1500, 6000)
    features = rng.normal(size=(6000, 8)).astype(np.float32)
    warm_up = {"warm-up": AuditSplit(features[:50], labels[:50])}
    audit(warm_up, leakage_pairs=[("warm-up", "warm-up")])  # first-call imports and caches
    monkeypatch.setattr(_class_geometry, "BLOCK_CELLS", 1 << 17)  # 1 MiB blocks
    tracemalloc.start()
    audit({"all": AuditSplit(features, labels)}, leakage_pairs=[("all", "all")])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A few blocks, the O(images) arrays (the neighbour lists: 6,000 x 11 x 8 bytes, twice)
    # and the centroids: about 6 MiB (200 MiB with blocks of all images at once).
    assert peak < 8 * 2**20


def test_groups_do_not_vote_for_their_own_and_are_not_leakage_where_ranked():
    # Class 0 near (0, 0), class 1 near (10, 0), one image per group; a sequence (group 99)
    # of four frames near (9.9, 0) labelled 0: its own frames are its nearest images.
    rng = np.random.default_rng(5)
    spread = rng.normal(scale=0.3, size=(12, 2))
    centres = np.repeat([[0.0, 0.0], [10.0, 0.0]], 6, axis=0)
    frames = np.array([[9.9, 0.0]]) + rng.normal(scale=0.01, size=(4, 2))
    features = np.concatenate([centres + spread, frames]).astype(np.float32)
    labels = np.array([0] * 6 + [1] * 6 + [0] * 4)
    groups = np.array([*range(12), 99, 99, 99, 99])
    plain = audit({"test": AuditSplit(features, labels)}, neighbours=3)
    grouped = audit({"test": AuditSplit(features, labels, groups=groups)}, neighbours=3)
    frame_rows = set(range(12, 16))
    agreement = {m.image.index: m.neighbour_agreement for m in plain.mislabeled}
    assert all(agreement[row] == 1.0 for row in frame_rows)  # its frames vote for it
    agreement = {m.image.index: m.neighbour_agreement for m in grouped.mislabeled}
    # The three nearest images outside the sequence are class 1's: brute force says so.
    for row in frame_rows:
        distances = np.linalg.norm(features - features[row], axis=1)
        others = [i for i in np.argsort(distances, kind="stable") if groups[i] != 99][:3]
        assert labels[others].tolist() == [1, 1, 1] and agreement[row] == 0.0

    # Leakage: a gallery frame of the query's own sequence is the protocol's junk, not a leak;
    # one of another group is; between trainval and query (not ranked) the sequence still leaks.
    query = AuditSplit(features[12:13], [0], groups=[99])
    gallery_features = np.concatenate([features[13:14], features[12:13] + 0.001, features[:12]])
    gallery = AuditSplit(gallery_features, [0, 0, *labels[:12]], groups=[99, 7, *range(12)])
    trainval = AuditSplit(features[14:16], [0, 0], groups=[99, 99])
    result = audit(
        {"trainval": trainval, "query": query, "gallery": gallery},
        label_groups=[["trainval"], ["query", "gallery"]],
        leakage_pairs=[("query", "gallery"), ("trainval", "query")],
        leakage_threshold=0.1,
    )
    found = {(leak.first.split, leak.first.index, leak.second.index) for leak in result.leakage}
    assert found == {("query", 0, 1), ("trainval", 0, 0), ("trainval", 1, 0)}
    with pytest.raises(PlpEvalError, match="groups of split 'query'"):
        audit({"query": AuditSplit(features[:2], [0, 1], groups=[1])})


def test_nearest_others_leave_out_the_own_group_exactly():
    rng = np.random.default_rng(6)
    features = rng.normal(size=(30, 4)).astype(np.float32)
    groups = rng.integers(0, 4, 30)  # large groups: many of the nearest are left out
    indices, distances = _leakage.nearest_others(
        features, features, k=5, metric="euclidean", same_split=True,
        first_groups=groups, second_groups=groups,
    )  # fmt: skip
    for row in range(30):
        gaps = np.linalg.norm(features.astype(np.float64) - features[row], axis=1)
        others = [i for i in np.lexsort((np.arange(30), gaps)) if groups[i] != groups[row]]
        assert indices[row].tolist() == others[:5]
        assert distances[row] == pytest.approx(gaps[others[:5]], abs=1e-5)
