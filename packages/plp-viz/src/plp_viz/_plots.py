"""Scatter plots of 2-D embeddings: one view, or aligned panels on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz._errors import PlpVizError

__all__ = ["plot_aligned", "plot_embedding", "pyplot"]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scatter(
    axis: Any, points: np.ndarray, labels: np.ndarray, names: Sequence[str] | None
) -> None:
    classes = np.unique(labels)
    colours = pyplot().get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for position, label in enumerate(classes):
        chosen = labels == label
        name = names[int(label)] if names is not None else str(label)
        axis.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=6,
            color=colours(position % colours.N),
            label=name,
            alpha=0.8,
            linewidths=0,
        )


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return path


def plot_embedding(
    points: Any,
    labels: Any,
    path: str | Path,
    *,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Draw ``points`` ``(N, 2)`` coloured by class with a legend; return the PNG's path."""
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise PlpVizError(
            f"points must be (N, 2) with N labels, got {points.shape} and {labels.shape}"
        )
    figure, axis = pyplot().subplots(figsize=(6.5, 5.5))
    _scatter(axis, points, labels, class_names)
    if len(np.unique(labels)) <= 30:
        axis.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.set_title(title or "")
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def plot_aligned(
    embeddings: Sequence[Any],
    labels: Any,
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
) -> Path:
    """Draw one panel per embedding, all on the same axis limits; return the PNG's path."""
    arrays = [np.asarray(e) for e in embeddings]
    labels = np.asarray(labels)
    if not arrays or any(a.shape != (len(labels), 2) for a in arrays):
        raise PlpVizError("every embedding must be (N, 2) with one label per row")
    stacked = np.concatenate(arrays)
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    margin = 0.05 * (high - low + 1e-9)
    figure, axes = pyplot().subplots(
        1, len(arrays), figsize=(4 * len(arrays), 4.2), sharex=True, sharey=True, squeeze=False
    )
    for index, (axis, points) in enumerate(zip(axes[0], arrays, strict=True)):
        _scatter(axis, points, labels, None)
        axis.set_xlim(low[0] - margin[0], high[0] + margin[0])
        axis.set_ylim(low[1] - margin[1], high[1] + margin[1])
        axis.set_title(titles[index] if titles else f"model {index}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][-1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)
