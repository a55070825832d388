"""Clustering metrics: KMeans (faiss, k-means++ seeding, best of several) against the labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_features, as_labels
from plp_eval._errors import PlpEvalError
from plp_eval._threads import thread_controller

__all__ = ["N_INIT", "ClusteringMetrics", "clustering_metrics", "kmeans"]

N_INIT = 10  # k-means runs from different seeds; the one of least inertia is kept (scikit-learn)
SEED_SAMPLE = 10000  # k-means++ seeds are drawn from at most max(this, 100 k) rows
TRAIN_POINTS_PER_CLUSTER = 128  # Lloyd's iterations run on at most this many rows x k
_CHUNK = 65536  # rows converted to float64 at a time


@dataclass(frozen=True)
class ClusteringMetrics:
    """Agreement between KMeans clusters and the true classes (scikit-learn's scores).

    ``n_init`` is the number of k-means runs the clusters are the best (least inertia) of;
    ``inertia`` that run's sum of squared distances of the rows to their centroid.
    """

    nmi: float
    ami: float
    ari: float
    homogeneity: float
    completeness: float
    v_measure: float
    purity: float
    num_clusters: int
    n_init: int = 1
    inertia: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Return the scores as a flat JSON-serialisable dict."""
        return {
            k: (int(v) if k in ("num_clusters", "n_init") else float(v))
            for k, v in asdict(self).items()
        }


def kmeans(
    features: np.ndarray,
    num_clusters: int,
    seed: int = 0,
    iterations: int = 50,
    n_init: int = N_INIT,
) -> np.ndarray:
    """Return the cluster of each row: the best of ``n_init`` k-means runs (faiss Lloyd).

    Each run seeds with greedy k-means++ (Arthur and Vassilvitskii 2007, as in scikit-learn:
    ``2 + log(k)`` candidates per centre, the one that lowers the potential most is kept;
    faiss's own random initialisation can merge well-separated classes), then runs Lloyd's
    iterations in faiss. A single run can still merge two classes and split another; as in
    scikit-learn's ``n_init``, the run of least inertia (sum of squared distances of every
    row to its cluster's mean, in float64; ties: the earlier run) is kept. Run ``i`` draws from
    the ``i``-th child of ``numpy.random.SeedSequence(seed)``: the same seed gives the same
    clusters. Runs on one thread, so the clusters do not depend on the number of cores.
    """
    return _best_kmeans(features, num_clusters, seed, iterations, n_init)[0]


def _best_kmeans(
    features: np.ndarray, num_clusters: int, seed: int, iterations: int, n_init: int
) -> tuple[np.ndarray, float]:
    """Return the clusters and inertia of the best of ``n_init`` runs (see :func:`kmeans`)."""
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise PlpEvalError(f"n_init must be an integer >= 1, got {n_init!r}")
    data = np.ascontiguousarray(features, dtype=np.float32)
    squares = float(
        sum(
            np.einsum("ij,ij->", part, part)
            for part in (
                data[i : i + _CHUNK].astype(np.float64) for i in range(0, len(data), _CHUNK)
            )
        )
    )
    best: tuple[np.ndarray, float] | None = None
    # One thread (OpenMP in faiss, BLAS in the seeding): measured faster on this 2-core machine
    # whenever anything else runs (multithreaded faiss was 5-50x slower under load, spinning at
    # its barriers), and the clusters do not depend on the number of cores.
    with thread_controller().limit(limits=1):
        for child in np.random.SeedSequence(seed).spawn(n_init):
            assignment = _kmeans(data, num_clusters, child, iterations)
            inertia = _inertia(data, assignment, num_clusters, squares)
            if best is None or inertia < best[1]:
                best = (assignment, inertia)
    assert best is not None
    return best


def _inertia(data: np.ndarray, assignment: np.ndarray, num_clusters: int, squares: float) -> float:
    """The clusters' inertia: sum of squared distances of the rows to their cluster's mean.

    The means of the final clusters, not faiss's centroids (which come from a sample of the
    rows), so that runs are compared by their partitions alone: ``sum |x|^2 - sum_k |S_k|^2 /
    n_k`` in float64, ``S_k`` the sum of cluster k's rows, ``squares`` the first term.
    """
    import scipy.sparse  # (with scikit-learn) imported when clustering runs

    sums = np.zeros((num_clusters, data.shape[1]))
    for start in range(0, len(data), _CHUNK):
        rows = assignment[start : start + _CHUNK]
        members = scipy.sparse.csr_matrix(
            (np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(num_clusters, len(rows))
        )
        sums += members @ data[start : start + _CHUNK].astype(np.float64)
    counts = np.bincount(assignment, minlength=num_clusters)
    present = counts > 0
    return squares - float((np.einsum("ij,ij->i", sums, sums)[present] / counts[present]).sum())


def _kmeans(
    data: np.ndarray, num_clusters: int, seed: np.random.SeedSequence, iterations: int
) -> np.ndarray:
    """One k-means run: the cluster of each row."""
    rng = np.random.default_rng(seed)
    # Seeds from a random sample (every class of a balanced problem keeps ~ 100 points in
    # it); Lloyd's iterations then run on a sample of TRAIN_POINTS_PER_CLUSTER rows per
    # centroid (faiss's own sampling); every row is assigned at the end.
    sample_size = max(SEED_SAMPLE, 100 * num_clusters)
    sample = data if len(data) <= sample_size else data[rng.choice(len(data), sample_size, False)]
    centroids = _kmeans_plusplus(sample, num_clusters, rng)
    import faiss  # imported here: `import plp_eval` stays quick

    model = faiss.Kmeans(
        data.shape[1],
        num_clusters,
        niter=iterations,
        seed=int(rng.integers(2**31)),
        verbose=False,
        max_points_per_centroid=TRAIN_POINTS_PER_CLUSTER,
        # faiss warns on stderr below 39 points per centroid; a test split of a few hundred
        # images is a normal input here, and k-means++ seeding already handles it.
        min_points_per_centroid=1,
    )
    model.train(data, init_centroids=centroids)
    _, assignment = model.index.search(data, 1)
    return assignment[:, 0].astype(np.int64)


def _kmeans_plusplus(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds (float32 distances by matmul, float64 sums), ``(k, dim)``."""
    squares = np.einsum("ij,ij->i", data, data)
    trials = 2 + int(np.log(k))
    centroids = np.empty((k, data.shape[1]), dtype=np.float32)
    first = int(rng.integers(len(data)))
    centroids[0] = data[first]
    closest = np.maximum(squares + squares[first] - 2.0 * (data @ data[first]), 0.0)
    for i in range(1, k):
        cumulative = np.cumsum(closest, dtype=np.float64)
        picks = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1])
        picks = np.minimum(picks, len(data) - 1)
        distances = squares[:, None] + squares[picks][None, :]
        distances -= 2.0 * (data @ data[picks].T)
        np.maximum(distances, 0.0, out=distances)
        np.minimum(distances, closest[:, None], out=distances)
        potentials = distances.sum(axis=0, dtype=np.float64)
        best = int(np.argmin(potentials))
        centroids[i] = data[picks[best]]
        closest = np.ascontiguousarray(distances[:, best])
    return centroids


def clustering_metrics(
    features: Any,
    labels: Any,
    num_clusters: int | None = None,
    seed: int = 0,
    n_init: int = N_INIT,
) -> ClusteringMetrics:
    """Return NMI, AMI, ARI, homogeneity, completeness, V-measure and purity of KMeans clusters.

    KMeans (:func:`kmeans`: the best of ``n_init`` seeded runs) is run with ``num_clusters``
    clusters (default: the number of distinct labels). Purity is the share of samples whose
    cluster's most common label is their own.
    """
    data = as_features(features, "features")
    truth = as_labels(labels, "labels", len(data))
    k = num_clusters if num_clusters is not None else len(np.unique(truth))
    if not 1 <= k <= len(data):
        raise PlpEvalError(f"num_clusters must be between 1 and {len(data)}, got {k}")
    predicted, inertia = _best_kmeans(data, k, seed, 50, n_init)
    from sklearn import metrics  # scikit-learn and scipy: imported when needed

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
        n_init=n_init,
        inertia=inertia,
    )
