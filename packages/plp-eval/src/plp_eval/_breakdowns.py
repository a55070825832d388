"""Breakdowns of re-ID metrics: query camera x gallery camera, per class, per category."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels
from plp_eval._errors import PlpEvalError
from plp_eval._match_ranks import ReidMetrics

__all__ = [
    "CameraMatrix",
    "ClassAveragePrecision",
    "camera_matrix",
    "class_average_precision",
    "metrics_by_category",
]


@dataclass(frozen=True)
class CameraMatrix:
    """mAP of the queries of each camera against the gallery of each camera.

    Attributes:
        query_cameras: ``(R,)`` the cameras of the rows (sorted).
        gallery_cameras: ``(C,)`` the cameras of the columns (sorted).
        mean_average_precision: ``(R, C)``; NaN where no query of the row camera has a
            match among the column camera's gallery items.
        num_valid_queries: ``(R, C)`` int64, the queries each cell averages over.
    """

    query_cameras: np.ndarray
    gallery_cameras: np.ndarray
    mean_average_precision: np.ndarray
    num_valid_queries: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Return the matrix as JSON-ready lists (NaN cells as None)."""
        return {
            "query_cameras": [int(c) for c in self.query_cameras],
            "gallery_cameras": [int(c) for c in self.gallery_cameras],
            "mAP": [
                [None if np.isnan(v) else float(v) for v in row]
                for row in self.mean_average_precision
            ],
            "num_valid_queries": self.num_valid_queries.tolist(),
        }


def camera_matrix(
    query_features: Any,
    query_labels: Any,
    gallery_features: Any,
    gallery_labels: Any,
    query_cameras: Any,
    gallery_cameras: Any,
    metric: str = "euclidean",
    *,
    backend: str = "auto",
    device: Any = None,
) -> CameraMatrix:
    """Return the query-camera x gallery-camera mAP matrix.

    Cell ``(i, j)`` ranks the queries of camera ``i`` against the gallery items of camera
    ``j`` only, under the same rules as :func:`plp_eval.reid_metrics` with cameras: items
    with the query's label and camera are left out (so with the Market-1501 rule the
    diagonal has no match: NaN). Its value is the mAP over the queries of camera ``i``
    with at least one match among camera ``j``'s items; the other queries of the row are
    not in that cell. Each cell is ranked exactly, so the matrix costs about one whole
    evaluation (every query x gallery pair is ranked once). With leave-one-out, pass the
    same arrays as queries and gallery: a query is in its own camera, where it is junk.

    Raises:
        PlpEvalError: Bad arrays (as :func:`plp_eval.reid_metrics`), or missing cameras.
    """
    from plp_eval._ranking import reid_metrics

    if query_cameras is None or gallery_cameras is None:
        raise PlpEvalError("camera_matrix needs query_cameras and gallery_cameras")
    q_labels = as_labels(query_labels, "query_labels", len(np.asarray(query_labels)))
    g_labels = as_labels(gallery_labels, "gallery_labels", len(np.asarray(gallery_labels)))
    q_cameras = as_labels(query_cameras, "query_cameras", len(q_labels))
    g_cameras = as_labels(gallery_cameras, "gallery_cameras", len(g_labels))
    rows, columns = np.unique(q_cameras), np.unique(g_cameras)
    matrix = np.full((len(rows), len(columns)), np.nan)
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for j, camera in enumerate(columns):
        in_column = g_cameras == camera
        column_labels = g_labels[in_column]
        present = np.isin(q_labels, column_labels)  # some item has the label here
        for i, query_camera in enumerate(rows):
            chosen = np.flatnonzero((q_cameras == query_camera) & present)
            if query_camera == camera or len(chosen) == 0:
                continue  # the same camera: every match is junk
            result = reid_metrics(
                _rows(query_features, chosen),
                q_labels[chosen],
                _rows(gallery_features, np.flatnonzero(in_column)),
                column_labels,
                metric=metric,
                max_rank=1,
                backend=backend,
                device=device,
            )
            matrix[i, j] = result.mean_average_precision
            counts[i, j] = result.num_valid_queries
    return CameraMatrix(rows, columns, matrix, counts)


def _rows(features: Any, rows: np.ndarray) -> Any:
    """The given rows of a numpy array or tensor (left where it is)."""
    if hasattr(features, "detach"):
        import torch

        return features[torch.as_tensor(rows, device=features.device)]
    return np.asarray(features)[rows]


@dataclass(frozen=True)
class ClassAveragePrecision:
    """Mean AP of each class's valid queries.

    Attributes:
        labels: ``(K,)`` the classes with a valid query, sorted.
        mean_average_precision: ``(K,)`` mean AP of each class's valid queries.
        num_queries: ``(K,)`` int64 valid queries of each class.
    """

    labels: np.ndarray
    mean_average_precision: np.ndarray
    num_queries: np.ndarray

    def extremes(self, count: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Return the positions of the ``count`` worst and best classes (ties: lower label).

        Worst by increasing mAP, best by decreasing mAP; they overlap when there are fewer
        than ``2 * count`` classes.
        """
        worst = np.lexsort((self.labels, self.mean_average_precision))[:count]
        best = np.lexsort((self.labels, -self.mean_average_precision))[:count]
        return worst, best

    def to_rows(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Return one JSON-ready ``{"label", "name", "mAP", "queries"}`` dict per class."""
        return [
            {
                "label": int(label),
                "name": class_names[int(label)]
                if class_names is not None and 0 <= label < len(class_names)
                else str(int(label)),
                "mAP": float(value),
                "queries": int(count),
            }
            for label, value, count in zip(
                self.labels, self.mean_average_precision, self.num_queries, strict=True
            )
        ]


def class_average_precision(metrics: ReidMetrics) -> ClassAveragePrecision:
    """Return the mean AP of each query class (its valid queries' APs), from the per-query APs.

    Raises:
        PlpEvalError: The result carries no per-query values.
    """
    table = metrics.per_query()
    valid = table.valid
    labels, inverse = np.unique(table.identities[valid], return_inverse=True)
    precision = metrics.average_precision[valid]
    counts = np.bincount(inverse, minlength=len(labels))
    sums = np.bincount(inverse, weights=precision, minlength=len(labels))
    return ClassAveragePrecision(labels, sums / counts, counts.astype(np.int64))


def metrics_by_category(metrics: ReidMetrics, categories: Any) -> dict[str, ReidMetrics]:
    """Return the metrics of each category's queries (the same rankings, nothing re-ranked).

    A query's category (e.g. the CSV ``category`` column, or the dataset of a ``concat``)
    chooses which mean it is in; its ranking is against the whole gallery, as in the
    overall metrics. Categories without a valid query are left out. Keys are the
    categories as strings, sorted.

    Raises:
        PlpEvalError: ``categories`` does not have one entry per query.
    """
    array = np.asarray(categories)
    if array.ndim != 1 or len(array) != metrics.num_queries:
        raise PlpEvalError(
            f"categories must be 1-D with one entry per query ({metrics.num_queries}), "
            f"got shape {array.shape}"
        )
    valid = metrics.valid
    return {
        str(category): metrics.select(array == category)
        for category in np.unique(array)
        if valid[array == category].any()
    }
