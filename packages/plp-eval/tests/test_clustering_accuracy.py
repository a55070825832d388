import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from plp_eval import PlpEvalError, accuracy_metrics, clustering_metrics


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
    from plp_eval import kmeans

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
    }


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
