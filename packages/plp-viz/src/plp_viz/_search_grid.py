"""Search results: each query image beside its top-k gallery images, "no match" marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz import _plots
from plp_viz._errors import PlpVizError
from plp_viz._rank_list import MATCH_COLOUR, MISMATCH_COLOUR

__all__ = ["plot_search_results"]


def _picture(image: Any, where: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or array.size == 0:
        raise PlpVizError(f"{where} must be an (H, W) or (H, W, 3) image, got {np.shape(image)}")
    return array


def plot_search_results(
    query_images: Sequence[Any],
    result_images: Sequence[Sequence[Any]],
    distances: Any,
    path: str | Path,
    *,
    threshold: float | None = None,
    query_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw each query with its ranked results and their distances, and save the grid.

    A result farther than ``threshold`` is framed red and labelled "no match"; one within it
    is framed green. A query whose nearest result is past the threshold is titled "no match".

    Args:
        query_images: One ``(H, W)`` or ``(H, W, 3)`` uint8 image per query.
        result_images: Per query, its results' images, nearest first.
        distances: ``(Q, k)`` distances of the results (inf: no result).
        path: Where to write the figure (PNG by its suffix); parent folders are created.
        threshold: The distance past which a result is "no match" (None: none marked).
        query_names: A short name per query (its file), shown above it.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        PlpVizError: No query, mismatched lengths or bad image shapes.
    """
    queries = [_picture(image, f"query_images[{i}]") for i, image in enumerate(query_images)]
    table = np.asarray(distances, dtype=np.float64)
    if not queries or table.ndim != 2 or len(table) != len(queries):
        raise PlpVizError(
            f"need one row of distances per query: {len(queries)} queries, distances of shape "
            f"{table.shape}"
        )
    if len(result_images) != len(queries):
        raise PlpVizError(f"{len(queries)} queries but {len(result_images)} rows of results")
    columns = 1 + max(1, table.shape[1])
    figure, axes = _plots.pyplot().subplots(
        len(queries), columns, figsize=(1.6 * columns, 1.9 * len(queries)), squeeze=False
    )
    for row, query in enumerate(queries):
        nearest = table[row, 0] if table.shape[1] else np.inf
        rejected = threshold is not None and not nearest <= threshold
        name = query_names[row] if query_names is not None else f"query {row}"
        _tile(axes[row, 0], query, f"{name}\n" + ("NO MATCH" if rejected else "query"), None)
        for column in range(1, columns):
            axis = axes[row, column]
            found = column - 1 < len(result_images[row]) and np.isfinite(table[row, column - 1])
            if not found:
                axis.axis("off")
                continue
            distance = table[row, column - 1]
            image = _picture(result_images[row][column - 1], f"result_images[{row}]")
            if threshold is None:
                _tile(axis, image, f"{distance:.3g}", None)
            elif distance <= threshold:
                _tile(axis, image, f"{distance:.3g}", MATCH_COLOUR)
            else:
                _tile(axis, image, f"{distance:.3g}\nno match", MISMATCH_COLOUR)
    if title is not None:
        figure.suptitle(title, y=1.0 + 0.12 / len(queries))
    return _plots._save(figure, path)


def _tile(axis: Any, image: np.ndarray, text: str, frame: tuple[float, ...] | None) -> None:
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(text, fontsize=7)
    for spine in axis.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)
