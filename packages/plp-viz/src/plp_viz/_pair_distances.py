"""Pair-distance histograms: positive against negative pairs, on shared bins.

The pairs come from ``plp_eval.pair_distances``: the query-gallery pairs the metrics rank,
junk left out, sampled with stated totals. This module only draws them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plp_core import RANKING_METRICS, check_choice
from plp_viz import _plots
from plp_viz._errors import PlpVizError
from plp_viz._rank_list import MATCH_COLOUR, MISMATCH_COLOUR

__all__ = ["plot_distance_histogram"]


def _distances(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlpVizError(f"{name} must be a 1-D array of distances: {error}") from None
    if array.ndim != 1:
        raise PlpVizError(f"{name} must be a 1-D array of distances, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise PlpVizError(f"{name} has NaN or inf values")
    return array


def _count_text(shown: int, total: int | None) -> str:
    if total is None or total == shown:
        return f"{shown:,} pairs"
    return f"{shown:,} of {total:,} pairs (uniform sample)"


def plot_distance_histogram(
    positive: Any,
    negative: Any,
    path: str | Path,
    *,
    metric: str = "euclidean",
    num_positive: int | None = None,
    num_negative: int | None = None,
    title: str | None = None,
) -> Path:
    """Draw histograms of positive and negative pair distances on shared bins.

    Well-trained embeddings show positives to the left of negatives with little overlap.
    Each histogram is normalised to unit area so that the far more numerous negatives do not
    flatten the positives; the legend says how many pairs each shows, and of how many when
    they are a sample (``num_positive`` / ``num_negative``: the totals, e.g. of a
    ``plp_eval.PairDistances``).

    Args:
        positive: Distances of the positive pairs (same label).
        negative: Distances of the negative pairs (other label).
        path: Where to write the figure; parent folders are created.
        metric: ``"euclidean"`` or ``"cosine"`` (the axis label).
        num_positive: How many positive pairs there are in all (None: those given).
        num_negative: How many negative pairs there are in all.
        title: Figure title; None draws "pair distances (<metric>)".

    Returns:
        The path written.

    Raises:
        PlpVizError: Distances that are not 1-D finite numbers, none at all, an unknown
            metric, or a total below the number of pairs given.
    """
    check_choice(metric, RANKING_METRICS, kind="metric", error=PlpVizError)
    positive = _distances(positive, "positive")
    negative = _distances(negative, "negative")
    both = np.concatenate([positive, negative])
    if len(both) == 0:
        raise PlpVizError("no pair distances to draw (positive and negative are both empty)")
    for name, values, total in (
        ("num_positive", positive, num_positive),
        ("num_negative", negative, num_negative),
    ):
        if total is not None and total < len(values):
            raise PlpVizError(f"{name} = {total} is below the {len(values)} distances given")
    low, high = float(both.min()), float(both.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 51)
    figure, axis = _plots.pyplot().subplots(figsize=(6.0, 4.0))
    for values, total, name, colour in (
        (positive, num_positive, "positive (same label)", MATCH_COLOUR),
        (negative, num_negative, "negative (other label)", MISMATCH_COLOUR),
    ):
        label = f"{name}: {_count_text(len(values), total)}"
        if len(values):
            label += f", mean {values.mean():.3g}"
            axis.hist(values, bins=bins, density=True, alpha=0.5, color=colour, label=label)
        else:
            axis.plot([], [], color=colour, label=label)
    axis.set_xlabel("L2 distance" if metric == "euclidean" else "cosine distance (1 - cos)")
    axis.set_ylabel("density")
    # An explicit place: loc="best" searches the histogram's data, and warns when that is slow.
    axis.legend(fontsize=8, loc="upper right")
    axis.set_title(title if title is not None else f"pair distances ({metric})")
    return _plots._save(figure, path)
