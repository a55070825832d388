"""Conversion and validation of the arrays every metric takes."""

from __future__ import annotations

from typing import Any

import numpy as np

from plp_eval._errors import PlpEvalError

__all__ = ["as_features", "as_labels", "as_query_gallery"]


def as_features(array: Any, name: str) -> np.ndarray:
    """Return ``array`` (numpy or CPU tensor) as a finite 2-D float array, or raise."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise PlpEvalError(f"{name} must be 2-D (samples, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise PlpEvalError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    # In chunks of rows, so that the check's temporary memory does not grow with the rows;
    # the rows counted only if some value is not finite.
    chunks = [array[start : start + 4096] for start in range(0, len(array), 4096)]
    if not all(np.isfinite(chunk).all() for chunk in chunks):
        bad = sum(int((~np.isfinite(chunk)).any(axis=1).sum()) for chunk in chunks)
        raise PlpEvalError(f"{name} has {bad} rows with NaN or inf")
    return array


def as_labels(array: Any, name: str, length: int) -> np.ndarray:
    """Return ``array`` as a 1-D int64 array of ``length`` items, or raise."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 1:
        raise PlpEvalError(f"{name} must be 1-D, got shape {array.shape}")
    if len(array) != length:
        raise PlpEvalError(f"{name} has {len(array)} items, expected {length}")
    return array.astype(np.int64, copy=False)


def as_query_gallery(query_features: Any, gallery_features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return both feature arrays (see :func:`as_features`), or raise if their dimensions differ."""
    queries = as_features(query_features, "query_features")
    gallery = as_features(gallery_features, "gallery_features")
    if queries.shape[1] != gallery.shape[1]:
        raise PlpEvalError(
            f"query_features have dimension {queries.shape[1]}, gallery_features {gallery.shape[1]}"
        )
    return queries, gallery
