"""Scatter plots of 2-D embeddings: one view, or aligned panels on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_core import atomic_write
from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text

__all__ = ["MAX_LEGEND_ENTRIES", "plot_aligned", "plot_embedding", "pyplot"]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MAX_LEGEND_ENTRIES = 20
"""Legends list at most this many classes (the most frequent ones) and say how many are left."""


def _scatter(
    axis: Any, points: np.ndarray, labels: np.ndarray, names: Sequence[str] | None
) -> None:
    classes = np.unique(labels)
    colours = pyplot().get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for position, label in enumerate(classes):
        chosen = labels == label
        axis.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=6,
            color=colours(position % colours.N),
            label=label_text(label, names),
            alpha=0.8,
            linewidths=0,
        )


def _legend(axis: Any, labels: np.ndarray) -> None:
    """Draw the legend of the classes in ``labels``: the most frequent ones when there are many."""
    handles, texts = axis.get_legend_handles_labels()
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) > MAX_LEGEND_ENTRIES:
        # the most frequent classes, shown in label order; ties go to the lower label
        kept = np.sort(np.argsort(-counts, kind="stable")[:MAX_LEGEND_ENTRIES])
        handles = [handles[i] for i in kept]
        texts = [texts[i] for i in kept]
        handles.append(pyplot().Line2D([], [], linestyle="none"))
        texts.append(f"… {len(classes) - len(kept)} more classes")
    axis.legend(
        handles,
        texts,
        markerscale=3,
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        ncol=1 if len(texts) <= 12 else 2,
    )


def _save(figure: Any, path: str | Path) -> Path:
    """Save ``figure`` to ``path`` (its suffix names the format) atomically; close it; return path.

    Raises:
        PlpVizError: The file cannot be written (a full or read-only disk, a folder in the way,
            a path through a file): one line naming it.
    """
    path = Path(path)
    image_format = path.suffix.lstrip(".").lower() or "png"
    try:
        atomic_write(
            path,
            lambda file: figure.savefig(file, format=image_format, dpi=110, bbox_inches="tight"),
            error=PlpVizError,
        )
    finally:
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
    """Draw ``points`` ``(N, 2)`` coloured by class with a legend; return the PNG's path.

    The legend names the classes by ``class_names`` (indexed by label; long names shortened)
    or by their labels, and lists at most :data:`MAX_LEGEND_ENTRIES` classes, the most
    frequent ones, with a last entry counting the others.

    Raises:
        PlpVizError: If ``points`` is not ``(N, 2)`` with ``N`` labels, or a label does not
            index ``class_names``.
    """
    points, labels = np.asarray(points), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise PlpVizError(
            f"points must be (N, 2) with N labels, got {points.shape} and {labels.shape}"
        )
    names = check_class_names(labels, class_names, "labels")
    figure, axis = pyplot().subplots(figsize=(6.5, 5.5))
    _scatter(axis, points, labels, names)
    _legend(axis, labels)
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
    class_names: Sequence[str] | None = None,
) -> Path:
    """Draw one panel per embedding, all on the same axis limits; return the PNG's path.

    The last panel carries the legend, as in :func:`plot_embedding`.
    """
    arrays = [np.asarray(e) for e in embeddings]
    labels = np.asarray(labels)
    if not arrays or any(a.shape != (len(labels), 2) for a in arrays):
        raise PlpVizError("every embedding must be (N, 2) with one label per row")
    names = check_class_names(labels, class_names, "labels")
    stacked = np.concatenate(arrays)
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    margin = 0.05 * (high - low + 1e-9)
    figure, axes = pyplot().subplots(
        1, len(arrays), figsize=(4 * len(arrays), 4.2), sharex=True, sharey=True, squeeze=False
    )
    for index, (axis, points) in enumerate(zip(axes[0], arrays, strict=True)):
        _scatter(axis, points, labels, names)
        axis.set_xlim(low[0] - margin[0], high[0] + margin[0])
        axis.set_ylim(low[1] - margin[1], high[1] + margin[1])
        axis.set_title(titles[index] if titles else f"model {index}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    _legend(axes[0][-1], labels)
    return _save(figure, path)
