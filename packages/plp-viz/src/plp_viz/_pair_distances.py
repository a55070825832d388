"""Pair-distance histograms: positive against negative pairs, on shared bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plp_core import RANKING_METRICS, check_choice
from plp_viz import _plots
from plp_viz._errors import PlpVizError
from plp_viz._rank_list import MATCH_COLOUR, MISMATCH_COLOUR

__all__ = ["DISTANCE_METRICS", "pair_distances", "plot_distance_histogram"]

DISTANCE_METRICS = RANKING_METRICS
"""Metrics :func:`pair_distances` accepts: L2, and 1 - cosine similarity."""

_CHUNK_PAIRS = 8192


def _pairs(count: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return rows ``(i, j)``, ``i < j``: all pairs, or ``max_pairs`` drawn without repeats."""
    total = count * (count - 1) // 2
    if total <= max_pairs:
        return np.triu_indices(count, k=1)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    # Pair number p counts row by row through the upper triangle: row i starts at starts[i].
    rows = np.arange(count, dtype=np.int64)
    starts = rows * (2 * count - rows - 1) // 2
    first = np.searchsorted(starts, chosen, side="right") - 1
    second = chosen - starts[first] + first + 1
    return first, second


def pair_distances(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    metric: str = "euclidean",
    max_pairs: int = 100_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the distances of positive (same label) and negative pairs of rows.

    All pairs ``i < j`` are used when there are at most ``max_pairs`` of them; otherwise
    ``max_pairs`` distinct pairs are drawn uniformly with ``numpy.random.default_rng(seed)``
    and returned in pair order (row ``i``, then ``j``).

    Args:
        features: ``(N, D)`` with ``N >= 2``.
        labels: ``(N,)``.
        metric: ``"euclidean"`` (L2) or ``"cosine"`` (1 - cosine similarity; zero vectors are
            treated as orthogonal to everything).
        max_pairs: Cap on the number of pairs.
        seed: Seed of the pair sampling.

    Returns:
        ``(positive, negative)`` float64 distances; either may be empty.

    Raises:
        PlpVizError: On wrong shapes, mismatched lengths, fewer than two rows, non-finite
            features, an unknown metric or ``max_pairs < 1``.
    """
    check_choice(metric, DISTANCE_METRICS, kind="metric", error=PlpVizError)
    if max_pairs < 1:
        raise PlpVizError(f"max_pairs must be >= 1, got {max_pairs}")
    try:
        data = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlpVizError(f"features must be a (N, D) array of numbers: {error}") from None
    if data.ndim != 2 or len(data) < 2 or data.shape[1] == 0:
        raise PlpVizError(f"features must be (N, D) with N >= 2 and D >= 1, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise PlpVizError("features have NaN or inf values")
    names = np.asarray(labels)
    if names.ndim != 1 or len(names) != len(data):
        raise PlpVizError(
            f"labels must be 1-D with one label per row of features ({len(data)}), "
            f"got shape {names.shape}"
        )
    if metric == "cosine":
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        data = data / np.maximum(norms, 1e-12)
    first, second = _pairs(len(data), max_pairs, seed)
    distances = np.empty(len(first), dtype=np.float64)
    for start in range(0, len(first), _CHUNK_PAIRS):
        left = data[first[start : start + _CHUNK_PAIRS]]
        right = data[second[start : start + _CHUNK_PAIRS]]
        if metric == "cosine":
            distances[start : start + len(left)] = 1.0 - np.einsum("ij,ij->i", left, right)
        else:
            distances[start : start + len(left)] = np.linalg.norm(left - right, axis=1)
    same = names[first] == names[second]
    return distances[same], distances[~same]


def plot_distance_histogram(
    features: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    metric: str = "euclidean",
    max_pairs: int = 100_000,
    seed: int = 0,
) -> Path:
    """Draw histograms of positive and negative pair distances on shared bins.

    Well-trained embeddings show positives to the left of negatives with little overlap.
    Pairs are as in :func:`pair_distances`; each histogram is normalised to unit area so
    that the far more numerous negatives do not flatten the positives.

    Args:
        features: ``(N, D)`` embeddings with ``N >= 2``.
        labels: ``(N,)`` their labels.
        path: Where to write the figure; parent folders are created.
        metric: ``"euclidean"`` or ``"cosine"``.
        max_pairs: Cap on the number of pairs (seeded uniform sample above it).
        seed: Seed of the pair sampling.

    Returns:
        The path written.

    Raises:
        PlpVizError: As :func:`pair_distances`.
    """
    positive, negative = pair_distances(
        features, labels, metric=metric, max_pairs=max_pairs, seed=seed
    )
    both = np.concatenate([positive, negative])
    low, high = float(both.min()), float(both.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 51)
    figure, axis = _plots.pyplot().subplots(figsize=(6.0, 4.0))
    for values, name, colour in (
        (positive, "positive (same label)", MATCH_COLOUR),
        (negative, "negative (other label)", MISMATCH_COLOUR),
    ):
        label = f"{name}: {len(values)} pairs"
        if len(values):
            label += f", mean {values.mean():.3g}"
            axis.hist(values, bins=bins, density=True, alpha=0.5, color=colour, label=label)
        else:
            axis.plot([], [], color=colour, label=label)
    axis.set_xlabel("L2 distance" if metric == "euclidean" else "cosine distance (1 - cos)")
    axis.set_ylabel("density")
    # An explicit place: loc="best" searches the histogram's data, and warns when that is slow.
    axis.legend(fontsize=8, loc="upper right")
    axis.set_title(f"pair distances ({metric})")
    return _plots._save(figure, path)
