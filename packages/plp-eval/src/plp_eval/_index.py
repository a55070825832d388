"""A faiss index of gallery features, searched in plp's distances: flat (exact), IVF or HNSW.

Distances are those of the rest of plp-eval: ``euclidean`` is the L2 distance (faiss's squared
L2, square-rooted), ``cosine`` is 1 - cosine similarity (the vectors are L2-normalised, faiss's
inner product subtracted from 1; a zero vector has similarity 0 with everything). So a threshold
calibrated by :func:`~plp_eval.verification_metrics` applies to a search's distances as they are.

- ``flat``: exact, brute force (``IndexFlatL2`` / ``IndexFlatIP``); the default, right up to a
  few million vectors.
- ``ivf``: ``IndexIVFFlat``, ``nlist`` k-means cells (default ``sqrt(N)``, at most ``N / 39``)
  trained on at most 64 gallery vectors per cell (drawn with ``seed``), ``nprobe`` cells
  searched per query (default ``nlist / 6``, at least 1). Approximate: check
  :func:`index_recall`.
- ``hnsw``: ``IndexHNSWFlat`` with ``M`` links per node (32), ``efSearch`` 128 (at least 2 k).
  Approximate; its build is not bit-reproducible across thread counts.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plp_core import check_choice
from plp_eval._arrays import as_features
from plp_eval._errors import PlpEvalError
from plp_eval._problem import check_metric

__all__ = ["INDEX_KINDS", "GalleryIndex", "build_index", "index_recall", "load_index"]

INDEX_KINDS = ("flat", "ivf", "hnsw")
# IVF k-means trains on at most this many gallery vectors per cell (faiss advises 30 to 256).
TRAINING_POINTS_PER_CELL = 64


@dataclass
class GalleryIndex:
    """A faiss index of gallery features and how to read its distances.

    Attributes:
        index: The faiss index (its vectors L2-normalised for ``cosine``).
        metric: ``euclidean`` or ``cosine``.
        kind: ``flat``, ``ivf`` or ``hnsw``.
    """

    index: Any
    metric: str
    kind: str

    @property
    def count(self) -> int:
        """The number of gallery vectors."""
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        """The dimension of the vectors."""
        return int(self.index.d)

    def search(self, query_features: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(indices, distances)`` ``(Q, k)`` of each query's ``k`` nearest items.

        Rows are sorted by distance (ties by gallery index). With fewer than ``k`` items found
        (a small gallery, or an approximate index), the rest is index -1 at distance inf.

        Raises:
            PlpEvalError: Bad features, another dimension, or ``k < 1``.
        """
        if k < 1:
            raise PlpEvalError(f"k must be >= 1, got {k}")
        queries = _prepared(query_features, "query_features", self.metric)
        if queries.shape[1] != self.dimension:
            raise PlpEvalError(
                f"query_features have dimension {queries.shape[1]}, the index {self.dimension}"
            )
        scores, indices = self.index.search(queries, k)
        if self.metric == "cosine":
            distances = np.maximum(1.0 - scores.astype(np.float64), 0.0)
        else:
            distances = np.sqrt(np.maximum(scores.astype(np.float64), 0.0))
        distances[indices < 0] = np.inf
        order = np.lexsort((np.where(indices < 0, np.iinfo(np.int64).max, indices), distances))
        return np.take_along_axis(indices, order, 1), np.take_along_axis(distances, order, 1)

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` atomically (a temporary file in its folder, renamed)."""
        import faiss

        target = Path(path)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            faiss.write_index(self.index, str(partial))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _prepared(features: Any, name: str, metric: str) -> np.ndarray:
    array = np.ascontiguousarray(as_features(features, name), dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        array = np.ascontiguousarray(array / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    return array


def build_index(
    gallery_features: Any,
    *,
    metric: str = "euclidean",
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
) -> GalleryIndex:
    """Return a faiss index of ``gallery_features`` (float32) searched in ``metric`` distances.

    Args:
        gallery_features: ``(N, D)`` features (numpy or a CPU tensor).
        metric: ``euclidean`` (L2) or ``cosine`` (1 - cosine similarity).
        kind: ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate).
        nlist: IVF cells (default ``sqrt(N)``, at most ``N / 39``, at least 1).
        nprobe: IVF cells searched per query (default ``nlist / 6``, at least 1).
        hnsw_m: HNSW links per node.
        ef_search: HNSW search breadth.
        seed: Seed of the IVF k-means and of its training sample.

    Raises:
        PlpEvalError: An unknown metric or kind, bad features, or bad parameters.
    """
    import faiss

    check_metric(metric)
    check_choice(kind, INDEX_KINDS, kind="index kind", error=PlpEvalError)
    gallery = _prepared(gallery_features, "gallery_features", metric)
    count, dimension = gallery.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension) if metric == "cosine" else faiss.IndexFlatL2(dimension)
    elif kind == "ivf":
        cells = nlist if nlist is not None else int(min(math.sqrt(count), count // 39))
        cells = max(1, cells)
        if cells > count:
            raise PlpEvalError(f"nlist = {cells} is more than the {count} gallery vectors")
        quantizer = (
            faiss.IndexFlatIP(dimension) if metric == "cosine" else faiss.IndexFlatL2(dimension)
        )
        index = faiss.IndexIVFFlat(quantizer, dimension, cells, faiss_metric)
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1
        rng = np.random.default_rng(seed)
        sample = min(count, TRAINING_POINTS_PER_CELL * cells)
        index.train(gallery[np.sort(rng.choice(count, size=sample, replace=False))])
        index.nprobe = max(1, nprobe if nprobe is not None else round(cells / 6))
    else:
        if hnsw_m < 2 or ef_search < 1:
            raise PlpEvalError(f"hnsw_m must be >= 2 and ef_search >= 1, got {hnsw_m}, {ef_search}")
        index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss_metric)
        index.hnsw.efSearch = ef_search
    index.add(gallery)
    return GalleryIndex(index, metric, kind)


def load_index(path: str | Path, metric: str, kind: str) -> GalleryIndex:
    """Return the index written by :meth:`GalleryIndex.save` at ``path``.

    Raises:
        PlpEvalError: The file does not exist or is not a faiss index (one line naming it).
    """
    import faiss

    check_metric(metric)
    check_choice(kind, INDEX_KINDS, kind="index kind", error=PlpEvalError)
    if not Path(path).is_file():
        raise PlpEvalError(f"index file {path} does not exist")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise PlpEvalError(f"{path}: not a faiss index ({reason[:200]})") from None
    return GalleryIndex(index, metric, kind)


def index_recall(
    index: GalleryIndex,
    gallery_features: Any,
    *,
    k: int = 10,
    sample: int = 1000,
    seed: int = 0,
    query_features: Any = None,
) -> float:
    """Return recall@k of ``index`` against an exact search, over a sample of queries.

    The queries are ``query_features`` when given, else ``sample`` gallery vectors (drawn with
    ``seed``; all when fewer). Recall@k is the share of their exact ``k`` nearest items (a
    ``flat`` index of ``gallery_features``) that ``index`` returns among its ``k``, averaged
    over the queries. 1.0 for a ``flat`` index.
    """
    gallery = np.asarray(as_features(gallery_features, "gallery_features"), dtype=np.float32)
    if query_features is None:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(gallery), size=min(sample, len(gallery)), replace=False))
        queries = gallery[chosen]
    else:
        queries = np.asarray(as_features(query_features, "query_features"), dtype=np.float32)
    k = min(k, len(gallery))
    exact, _ = build_index(gallery, metric=index.metric).search(queries, k)
    found, _ = index.search(queries, k)
    hits = [
        len(set(e.tolist()) & set(f.tolist()) - {-1}) for e, f in zip(exact, found, strict=True)
    ]
    return float(np.mean(hits) / k)
