"""plp-eval ``kmeans`` (faiss, k-means++ seeding) vs scikit-learn ``KMeans`` on gaussian blobs.

Both cluster the same float32 blobs (``make_blobs``: K centres in a 128-d box, one gaussian
per centre) into the true number of classes; the table gives the best time of ``--repeats``
runs (seeds 0, 1, ...; the methods take turns, so that they see the same machine load), the
mean NMI against the true classes, and the ratio scikit-learn time / method time (> 1: plp is
faster). Both keep the best of 10 runs (plp's default ``n_init=10``; scikit-learn
``KMeans(n_init=10)``, ``init="k-means++"``, Lloyd until ``tol=1e-4``).
``plp clustering_metrics`` is the whole public call (KMeans plus the seven scores).

    uv run python bench/clustering.py --sizes small   # make bench
    uv run python bench/clustering.py --sizes all     # the numbers in bench/README.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from plp_eval import clustering_metrics, kmeans

SIZES = {"small": [(10000, 64, 20)], "all": [(10000, 64, 20), (50000, 128, 100)]}
SPREAD = 4.0  # per-dimension std of each blob; centres are uniform in [-10, 10]^dim


def _measure(
    methods: dict[str, Callable[[np.ndarray, np.ndarray, int, int], np.ndarray | float]],
    data: np.ndarray,
    labels: np.ndarray,
    k: int,
    repeats: int,
) -> dict[str, tuple[float, float]]:
    """Best time and mean NMI of each method; the methods take turns (same machine load)."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    scores: dict[str, list[float]] = {name: [] for name in methods}
    for seed in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            out = fn(data, labels, k, seed)  # the clusters, or the NMI (clustering_metrics)
            times[name].append(time.perf_counter() - start)
            nmi = out if isinstance(out, float) else normalized_mutual_info_score(labels, out)
            scores[name].append(float(nmi))
    return {name: (min(times[name]), float(np.mean(scores[name]))) for name in methods}


def _sklearn(data: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(data)


def _plp(data: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    return kmeans(data, k, seed=seed)


def _plp_metrics(data: np.ndarray, labels: np.ndarray, k: int, seed: int) -> float:
    return clustering_metrics(data, labels, num_clusters=k, seed=seed).nmi


def main() -> None:
    """Print a Markdown table of plp and scikit-learn times, NMI and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        "| N x dim, K | method | time s | NMI | sklearn / method |\n|---|---|---|---|---|",
        flush=True,
    )
    for n, dim, k in SIZES[args.sizes]:
        data, labels = make_blobs(
            n_samples=n, n_features=dim, centers=k, cluster_std=SPREAD, random_state=0
        )
        data = data.astype(np.float32)
        _plp(data[:1000], labels[:1000], 4, 0)  # warm-up (imports, thread pools)
        methods = {
            "scikit-learn KMeans": _sklearn,
            "plp kmeans": _plp,
            "plp clustering_metrics": _plp_metrics,
        }
        results = _measure(methods, data, labels, k, args.repeats)
        reference = results["scikit-learn KMeans"][0]
        for method, (seconds, score) in results.items():
            print(
                f"| {n // 1000}k x {dim}, K={k} | {method} | {seconds:.2f} | {score:.4f} "
                f"| {reference / seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
