"""plp-eval: exact re-ID ranking metrics, clustering and accuracy metrics, a dataset audit."""

from plp_eval._accuracy import AccuracyMetrics, accuracy_metrics
from plp_eval._audit import audit
from plp_eval._audit_result import (
    Audit,
    AuditSplit,
    DuplicateIdentities,
    ImageRef,
    Leak,
    MislabeledImage,
    Outlier,
)
from plp_eval._clustering import ClusteringMetrics, clustering_metrics, kmeans
from plp_eval._errors import PlpEvalError
from plp_eval._index import INDEX_KINDS, GalleryIndex, build_index, index_recall, load_index
from plp_eval._leakage import pixel_hash
from plp_eval._open_set import FAR_TARGETS, OpenSetMetrics
from plp_eval._operating_point import OperatingPoint
from plp_eval._query_pairs import QueryPair, query_pairs
from plp_eval._ranking import ReidMetrics, rank_lists, reid_metrics, reid_metrics_from_distances
from plp_eval._rerank import rerank, rerank_reid_metrics
from plp_eval._verification import (
    FMR_TARGETS,
    VerificationMetrics,
    verification_from_distances,
    verification_metrics,
)

__all__ = [
    # re-identification
    "ReidMetrics",
    "rank_lists",
    "reid_metrics",
    "reid_metrics_from_distances",
    "QueryPair",
    "query_pairs",
    "rerank",
    "rerank_reid_metrics",
    # verification and open-set identification
    "FAR_TARGETS",
    "FMR_TARGETS",
    "OpenSetMetrics",
    "OperatingPoint",
    "VerificationMetrics",
    "verification_from_distances",
    "verification_metrics",
    # faiss indexes of a gallery
    "INDEX_KINDS",
    "GalleryIndex",
    "build_index",
    "index_recall",
    "load_index",
    # clustering
    "ClusteringMetrics",
    "clustering_metrics",
    "kmeans",
    # classification
    "AccuracyMetrics",
    "accuracy_metrics",
    # dataset audit
    "Audit",
    "AuditSplit",
    "DuplicateIdentities",
    "ImageRef",
    "Leak",
    "MislabeledImage",
    "Outlier",
    "audit",
    "pixel_hash",
    # errors
    "PlpEvalError",
]
