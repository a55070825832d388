"""The query-camera x gallery-camera mAP matrix as a heat-map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz import _plots
from plp_viz._errors import PlpVizError

__all__ = ["plot_camera_matrix"]

_MAX_ANNOTATED = 16  # cameras per side up to which every cell carries its value


def _matrix(values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlpVizError(f"mean_average_precision must be a matrix of numbers: {error}") from None
    if array.ndim != 2 or 0 in array.shape:
        raise PlpVizError(
            f"mean_average_precision must be (query cameras, gallery cameras), got {array.shape}"
        )
    finite = array[np.isfinite(array)]
    if np.isinf(array).any() or (finite.size and (finite.min() < 0.0 or finite.max() > 1.0)):
        raise PlpVizError("mean_average_precision must hold values in [0, 1] or NaN (no match)")
    return array


def plot_camera_matrix(
    mean_average_precision: Any,
    query_cameras: Sequence[Any],
    gallery_cameras: Sequence[Any],
    path: str | Path,
    *,
    num_valid_queries: Any = None,
    title: str | None = None,
) -> Path:
    """Draw the mAP of each query camera (rows) against each gallery camera (columns).

    Takes what ``plp_eval.camera_matrix`` computes. NaN cells (no query of the row camera
    has a match in the column camera; with the Market-1501 rule the whole diagonal) are
    drawn hatched grey and marked "-".

    Args:
        mean_average_precision: ``(R, C)`` mAP values in ``[0, 1]``, NaN where undefined.
        query_cameras: The ``R`` row cameras (their ids or names).
        gallery_cameras: The ``C`` column cameras.
        path: Where to write the figure; parent folders are created.
        num_valid_queries: ``(R, C)`` queries behind each cell, written under its value.
        title: Figure title; None draws "mAP by query camera x gallery camera".

    Returns:
        The path written. Cells carry their values up to 16 cameras a side.

    Raises:
        PlpVizError: A matrix that is not 2-D, holds values outside [0, 1] or infinities,
            or disagrees in shape with the cameras or ``num_valid_queries``.
    """
    values = _matrix(mean_average_precision)
    rows, columns = values.shape
    if len(query_cameras) != rows or len(gallery_cameras) != columns:
        raise PlpVizError(
            f"mean_average_precision is {values.shape}, but there are {len(query_cameras)} "
            f"query cameras and {len(gallery_cameras)} gallery cameras"
        )
    counts = None if num_valid_queries is None else np.asarray(num_valid_queries)
    if counts is not None and counts.shape != values.shape:
        raise PlpVizError(
            f"num_valid_queries has shape {counts.shape}, expected {values.shape} "
            "(one count per cell)"
        )
    plt = _plots.pyplot()
    figure, axis = plt.subplots(
        figsize=(min(14.0, 1.9 + 0.7 * columns), min(14.0, 1.5 + 0.6 * rows))
    )
    axis.set_facecolor((0.85, 0.85, 0.85))
    axis.add_patch(
        plt.Rectangle(
            (-0.5, -0.5), columns, rows, hatch="//", fill=False, edgecolor="white", zorder=0
        )
    )  # seen through the NaN cells only: the image is drawn over it
    image = axis.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=1.0, zorder=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="mAP")
    if max(rows, columns) <= _MAX_ANNOTATED:
        for row in range(rows):
            for column in range(columns):
                value = values[row, column]
                text = "-" if np.isnan(value) else f"{value:.2f}"
                if counts is not None and not np.isnan(value):
                    text += f"\n{int(counts[row, column])} q"
                colour = "black" if np.isnan(value) or value > 0.6 else "white"
                axis.text(column, row, text, ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(columns), [str(c) for c in gallery_cameras], fontsize=8)
    axis.set_yticks(range(rows), [str(c) for c in query_cameras], fontsize=8)
    axis.set_xlabel("gallery camera")
    axis.set_ylabel("query camera")
    axis.set_title(title if title is not None else "mAP by query camera x gallery camera")
    return _plots._save(figure, path)
