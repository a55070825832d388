"""Confusion matrices: row-normalised, with class names where they fit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plp_viz import _plots
from plp_viz._errors import PlpVizError
from plp_viz._names import shorten

__all__ = ["confusion_ticks", "confusion_values", "plot_confusion_matrix"]

_MAX_ANNOTATED_CLASSES = 20
_MAX_TICKS = 40


def confusion_values(matrix: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Return what :func:`plot_confusion_matrix` draws: the counts, or each row over its sum.

    Args:
        matrix: ``(K, K)`` non-negative counts, rows true classes, columns predicted ones.
        normalize: Divide each row by its sum (rows of a class never seen stay 0).

    Returns:
        ``(K, K)`` float64.

    Raises:
        PlpVizError: If ``matrix`` is not square, empty, negative or not finite.
    """
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlpVizError(f"matrix must be a square array of counts: {error}") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise PlpVizError(f"matrix must be square (K, K) with K >= 1, got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise PlpVizError("matrix must hold finite, non-negative counts")
    if not normalize:
        return array
    sums = array.sum(axis=1, keepdims=True)
    return np.divide(array, sums, out=np.zeros_like(array), where=sums > 0)


def confusion_ticks(num_classes: int, max_ticks: int = _MAX_TICKS) -> list[int]:
    """Return the classes named on a confusion matrix's axes: all, or every n-th of them.

    Example:
        >>> confusion_ticks(100)[:3], len(confusion_ticks(100))
        ([0, 3, 6], 34)
    """
    step = -(-num_classes // max_ticks)  # ceil: at most max_ticks labels
    return list(range(0, num_classes, step))


def plot_confusion_matrix(
    matrix: np.ndarray,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
) -> Path:
    """Draw a confusion matrix as a heat-map; the title gives the accuracy (trace over total).

    Args:
        matrix: ``(K, K)`` counts, rows true classes, columns predicted ones.
        path: Where to write the figure; parent folders are created.
        class_names: Names of the classes, indexed by class (at least ``K``; long names are
            shortened); None numbers the classes from 0.
        normalize: Draw each row divided by its sum (the per-class recall on the diagonal).

    Returns:
        The path written. Cells carry their values when there are at most 20 classes; past
        that, every :func:`confusion_ticks` class is named, so that labels never overlap.

    Raises:
        PlpVizError: If the matrix is not square, empty, negative or not finite, or
            ``class_names`` has fewer than ``K`` entries.
    """
    values = confusion_values(matrix, normalize=normalize)
    counts = confusion_values(matrix, normalize=False)
    size = len(values)
    if class_names is not None and len(class_names) < size:
        raise PlpVizError(f"class_names has {len(class_names)} names for {size} classes")
    names = (
        [shorten(str(n)) for n in class_names[:size]]
        if class_names is not None
        else [str(i) for i in range(size)]
    )
    total = counts.sum()
    accuracy = np.trace(counts) / total if total > 0 else float("nan")
    side = min(14.0, max(4.5, 0.45 * size + 2.5))
    figure, axis = _plots.pyplot().subplots(figsize=(side + 1.0, side))
    image = axis.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    if size <= _MAX_ANNOTATED_CLASSES:
        integral = not normalize and bool(np.all(values == np.round(values)))
        high = values.max() or 1.0
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                axis.text(
                    column,
                    row,
                    f"{int(value)}" if integral else f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if value > 0.5 * high else "black",
                )
    ticks = confusion_ticks(size)
    font = 8 if size <= _MAX_ANNOTATED_CLASSES else 6
    axis.set_xticks(
        ticks,
        [names[i] for i in ticks],
        rotation=45 if font == 8 else 90,
        ha="right" if font == 8 else "center",
        fontsize=font,
    )
    axis.set_yticks(ticks, [names[i] for i in ticks], fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    kind = "row-normalised" if normalize else "counts"
    axis.set_title(f"confusion matrix ({kind}), accuracy {accuracy:.1%}")
    return _plots._save(figure, path)
