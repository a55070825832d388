"""Clustering metrics: KMeans (faiss, k-means++ seeding) scored against the true labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np
from sklearn import metrics
from sklearn.cluster import kmeans_plusplus

from plp_eval._arrays import as_features, as_labels
from plp_eval._errors import PlpEvalError

__all__ = ["ClusteringMetrics", "clustering_metrics", "kmeans"]


@dataclass(frozen=True)
class ClusteringMetrics:
    """Agreement between KMeans clusters and the true classes (scikit-learn's scores)."""

    nmi: float
    ami: float
    ari: float
    homogeneity: float
    completeness: float
    v_measure: float
    purity: float
    num_clusters: int

    def to_dict(self) -> dict[str, Any]:
        """Return the scores as a flat JSON-serialisable dict."""
        return {k: (int(v) if k == "num_clusters" else float(v)) for k, v in asdict(self).items()}


def kmeans(
    features: np.ndarray, num_clusters: int, seed: int = 0, iterations: int = 50
) -> np.ndarray:
    """Return the cluster of each row: Lloyd's KMeans in faiss, seeded with k-means++.

    faiss's own random initialisation can merge well-separated classes; k-means++ seeding
    (Arthur and Vassilvitskii 2007, scikit-learn's implementation) recovers them.
    """
    data = np.ascontiguousarray(features, dtype=np.float32)
    centroids, _ = kmeans_plusplus(data, num_clusters, random_state=seed)
    model = faiss.Kmeans(data.shape[1], num_clusters, niter=iterations, seed=seed, verbose=False)
    model.train(data, init_centroids=np.ascontiguousarray(centroids, dtype=np.float32))
    _, assignment = model.index.search(data, 1)
    return assignment[:, 0].astype(np.int64)


def clustering_metrics(
    features: Any, labels: Any, num_clusters: int | None = None, seed: int = 0
) -> ClusteringMetrics:
    """Return NMI, AMI, ARI, homogeneity, completeness, V-measure and purity of KMeans clusters.

    KMeans is run with ``num_clusters`` clusters (default: the number of distinct labels).
    Purity is the share of samples whose cluster's most common label is their own.
    """
    data = as_features(features, "features")
    truth = as_labels(labels, "labels", len(data))
    k = num_clusters if num_clusters is not None else len(np.unique(truth))
    if not 1 <= k <= len(data):
        raise PlpEvalError(f"num_clusters must be between 1 and {len(data)}, got {k}")
    predicted = kmeans(data, k, seed=seed)
    contingency = metrics.cluster.contingency_matrix(truth, predicted)
    return ClusteringMetrics(
        nmi=metrics.normalized_mutual_info_score(truth, predicted),
        ami=metrics.adjusted_mutual_info_score(truth, predicted),
        ari=metrics.adjusted_rand_score(truth, predicted),
        homogeneity=metrics.homogeneity_score(truth, predicted),
        completeness=metrics.completeness_score(truth, predicted),
        v_measure=metrics.v_measure_score(truth, predicted),
        purity=float(contingency.max(axis=0).sum() / contingency.sum()),
        num_clusters=k,
    )
