import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from plp_eval import PlpEvalError, accuracy_metrics, clustering_metrics, kmeans


def test_well_separated_blobs_are_recovered():
    features, labels = make_blobs(
        n_samples=1200, centers=12, cluster_std=0.3, center_box=(-40, 40), random_state=0
    )
    result = clustering_metrics(features, labels, seed=0)
    assert result.nmi == pytest.approx(1.0, abs=1e-9) and result.purity == 1.0
    assert result.num_clusters == 12


def test_scores_agree_with_sklearn_on_the_same_assignment():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 5))
    labels = rng.integers(0, 4, 300)
    result = clustering_metrics(features, labels, seed=1)
    predicted = kmeans(features, 4, seed=1)
    assert result.nmi == pytest.approx(normalized_mutual_info_score(labels, predicted))
    counts = np.zeros((4, 4))
    np.add.at(counts, (predicted, labels), 1)
    assert result.purity == pytest.approx(counts.max(axis=1).sum() / 300)
    assert set(result.to_dict()) == {
        "nmi",
        "ami",
        "ari",
        "homogeneity",
        "completeness",
        "v_measure",
        "purity",
        "num_clusters",
        "n_init",
        "inertia",
    }
    assert result.n_init == 10


def test_clustering_bad_input():
    with pytest.raises(PlpEvalError, match="num_clusters must be between 1 and 3"):
        clustering_metrics(np.zeros((3, 2)), [0, 1, 2], num_clusters=5)
    with pytest.raises(PlpEvalError, match="labels has 2 items, expected 3"):
        clustering_metrics(np.zeros((3, 2)), [0, 1])


def test_accuracy_hand_computed():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    labels = [0, 2, 1, 2]
    result = accuracy_metrics(logits, labels, top_k=(1, 2))
    assert result.top_k == {1: 0.5, 2: 0.75}  # 2nd guesses: sample 1 right, sample 2 wrong
    np.testing.assert_allclose(result.per_class_accuracy, [1.0, 0.0, 0.5])
    assert result.confusion_matrix.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert result.to_dict()["mean_per_class_accuracy"] == pytest.approx(0.5)


def test_accuracy_from_predictions_and_bad_shapes():
    result = accuracy_metrics(np.array([0, 1, 1]), [0, 1, 0], num_classes=3)
    assert result.to_dict()["top-1"] == pytest.approx(2 / 3)
    assert np.isnan(result.per_class_accuracy[2])  # class 2 never occurs
    with pytest.raises(PlpEvalError, match="must be 1-D or 2-D"):
        accuracy_metrics(np.zeros((2, 2, 2)), [0, 1])


def grid_blobs(spread: float) -> tuple[np.ndarray, np.ndarray]:
    """25 classes of 20 points around a 5 x 5 grid of centres 10 apart: one k-means run can
    merge two neighbours and split another; the best of ten runs finds the grid."""
    rng = np.random.default_rng(0)
    centres = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2) * 10.0
    labels = np.repeat(np.arange(25), 20)
    return centres[labels] + spread * rng.normal(size=(len(labels), 2)), labels


@pytest.mark.parametrize("spread", [1.0, 1.5])
def test_best_of_ten_runs_equals_scikit_learn_kmeans_n_init_10(spread):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    features, labels = grid_blobs(spread)
    reference = KMeans(25, n_init=10, random_state=0).fit(features)
    expected_nmi = normalized_mutual_info_score(labels, reference.labels_)
    expected_ari = adjusted_rand_score(labels, reference.labels_)
    for seed in range(3):
        result = clustering_metrics(features, labels, seed=seed)
        assert result.n_init == 10
        assert result.nmi == pytest.approx(expected_nmi, abs=1e-12)
        assert result.ari == pytest.approx(expected_ari, abs=1e-12)
        assert result.inertia == pytest.approx(reference.inertia_, rel=1e-6)
    # Single runs do miss (else this test would prove nothing): the failure mode.
    singles = [
        adjusted_rand_score(labels, kmeans(features, 25, seed=seed, n_init=1)) for seed in range(20)
    ]
    assert min(singles) < expected_ari - 0.01


def test_n_init_is_seeded_and_checked():
    features, labels = grid_blobs(1.5)
    first = kmeans(features, 25, seed=4, n_init=3)
    assert np.array_equal(first, kmeans(features, 25, seed=4, n_init=3))
    assert clustering_metrics(features, labels, n_init=1).n_init == 1
    with pytest.raises(PlpEvalError, match="n_init must be an integer >= 1, got 0"):
        kmeans(features, 25, n_init=0)


def test_accuracy_per_sample_values_average_to_top_k():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(200, 7)))
    labels = rng.integers(0, 7, 200)
    result = accuracy_metrics(logits, labels, top_k=(1, 3))
    table = result.per_query()
    assert table.names == ("top-1", "top-3")
    # Independent per-sample check: the label among the k largest logits.
    order = np.argsort(-logits.numpy(), axis=1)
    for column, k in enumerate((1, 3)):
        expected = (order[:, :k] == labels[:, None]).any(axis=1)
        np.testing.assert_array_equal(table.values[:, column], expected)
        assert table.means()[f"top-{k}"] == pytest.approx(result.top_k[k], abs=1e-6)
    assert np.array_equal(table.identities, labels) and table.valid.all()
