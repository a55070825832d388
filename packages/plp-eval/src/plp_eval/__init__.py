"""plp-eval: exact re-ID ranking metrics, their uncertainty, clustering, accuracy, an audit."""

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
from plp_eval._bootstrap import BootstrapResult, bootstrap
from plp_eval._breakdowns import (
    CameraMatrix,
    ClassAveragePrecision,
    camera_matrix,
    class_average_precision,
    metrics_by_category,
)
from plp_eval._clustering import ClusteringMetrics, clustering_metrics, kmeans
from plp_eval._compare import Comparison, MetricComparison, compare
from plp_eval._errors import PlpEvalError
from plp_eval._index import INDEX_KINDS, GalleryIndex, build_index, index_recall, load_index
from plp_eval._junk import junk_keys
from plp_eval._leakage import pixel_hash
from plp_eval._open_set import FAR_TARGETS, OpenSetMetrics
from plp_eval._operating_point import OperatingPoint
from plp_eval._per_query import PerQuery
from plp_eval._protocol_pairs import PairDistances, pair_distances, protocol_rank_lists
from plp_eval._query_pairs import QueryPair, query_pairs
from plp_eval._ranking import ReidMetrics, rank_lists, reid_metrics, reid_metrics_from_distances
from plp_eval._repeats import RepeatSummary, summarize_repeats
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
    "junk_keys",
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
    # what the plots draw, under the same protocol
    "PairDistances",
    "pair_distances",
    "protocol_rank_lists",
    # uncertainty and comparison
    "BootstrapResult",
    "Comparison",
    "MetricComparison",
    "PerQuery",
    "RepeatSummary",
    "bootstrap",
    "compare",
    "summarize_repeats",
    # breakdowns
    "CameraMatrix",
    "ClassAveragePrecision",
    "camera_matrix",
    "class_average_precision",
    "metrics_by_category",
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
