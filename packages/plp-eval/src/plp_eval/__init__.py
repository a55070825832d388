"""plp-eval: exact re-ID ranking metrics, clustering and accuracy metrics over arrays."""

from plp_eval._accuracy import AccuracyMetrics, accuracy_metrics
from plp_eval._clustering import ClusteringMetrics, clustering_metrics, kmeans
from plp_eval._errors import PlpEvalError
from plp_eval._ranking import ReidMetrics, rank_lists, reid_metrics, reid_metrics_from_distances
from plp_eval._rerank import rerank, rerank_reid_metrics

__all__ = [
    # re-identification
    "ReidMetrics",
    "rank_lists",
    "reid_metrics",
    "reid_metrics_from_distances",
    "rerank",
    "rerank_reid_metrics",
    # clustering
    "ClusteringMetrics",
    "clustering_metrics",
    "kmeans",
    # classification
    "AccuracyMetrics",
    "accuracy_metrics",
    # errors
    "PlpEvalError",
]
