"""Rank lists: queries with their top-k gallery images, matches framed green."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz import _plots
from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text

__all__ = [
    "MATCH_COLOUR",
    "MISMATCH_COLOUR",
    "display_image",
    "plot_rank_list",
    "rank_list_matches",
    "rank_list_queries",
    "rank_list_tile",
]

MATCH_COLOUR = (0.0, 0.75, 0.0)
"""RGB border of a gallery image whose label equals the query's (green)."""

MISMATCH_COLOUR = (0.9, 0.0, 0.0)
"""RGB border of a gallery image with another label than the query's (red)."""

_QUERY_COLOUR = (1.0, 1.0, 1.0)


def _images(images: Any, name: str) -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise PlpVizError(
            f"{name} must be (N, C, H, W) with C = 1 or 3, or (N, H, W), got {np.shape(images)}"
        )
    if len(array) == 0 or array.shape[2] == 0 or array.shape[3] == 0:
        raise PlpVizError(f"{name} is empty: shape {np.shape(images)}")
    if not np.isfinite(array).all():
        raise PlpVizError(f"{name} has NaN or inf values")
    return array


def _labels(labels: Any, count: int, name: str, images_name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) != count:
        raise PlpVizError(
            f"{name} must be 1-D with one label per image of {images_name} ({count}), "
            f"got shape {array.shape}"
        )
    return array


def display_image(image: np.ndarray) -> np.ndarray:
    """Return one image as ``(H, W, 3)`` RGB in ``[0, 1]``, stretched from its own min to max.

    Args:
        image: ``(C, H, W)`` with ``C`` 1 or 3, or ``(H, W)``, in any float range.

    Returns:
        The displayable image; a constant image becomes mid-grey.

    Raises:
        PlpVizError: If the shape is not one of the above.
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise PlpVizError(
            f"an image must be (C, H, W) with C = 1 or 3, or (H, W), got {array.shape}"
        )
    low, high = array.min(), array.max()
    scaled = (array - low) / (high - low) if high > low else np.full_like(array, 0.5)
    rgb = np.repeat(scaled, 3, axis=0) if scaled.shape[0] == 1 else scaled
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def _border_width(image: np.ndarray) -> int:
    return max(2, round(0.08 * max(image.shape[0], image.shape[1])))


def rank_list_tile(image: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """Return ``image`` (as :func:`display_image` makes it) framed by a border of ``colour``.

    Args:
        image: ``(C, H, W)`` or ``(H, W)``, any float range.
        colour: RGB in ``[0, 1]``, e.g. :data:`MATCH_COLOUR` or :data:`MISMATCH_COLOUR`.

    Returns:
        ``(H + 2b, W + 2b, 3)`` with ``b = max(2, 8% of the longer side)`` border pixels.
    """
    rgb = display_image(image)
    width = _border_width(rgb)
    framed = np.empty((rgb.shape[0] + 2 * width, rgb.shape[1] + 2 * width, 3))
    framed[...] = colour
    framed[width:-width, width:-width] = rgb
    return framed


def rank_list_matches(
    query_labels: np.ndarray, gallery_labels: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """Return whether each ranked gallery item has its query's label.

    Args:
        query_labels: ``(Q,)`` labels of the queries.
        gallery_labels: ``(G,)`` labels of the gallery.
        indices: ``(Q, k)`` gallery rows ranked for each query; negative entries (no result)
            count as no match.

    Returns:
        ``(Q, k)`` bool: True where the border is :data:`MATCH_COLOUR`, False where it is
        :data:`MISMATCH_COLOUR`.

    Raises:
        PlpVizError: If the shapes disagree or an index is past the gallery's end.
    """
    queries, gallery = np.asarray(query_labels), np.asarray(gallery_labels)
    ranked = _indices(indices, len(queries), len(gallery))
    found = ranked >= 0
    matches = np.zeros(ranked.shape, dtype=bool)
    rows = np.nonzero(found)
    matches[rows] = gallery[ranked[rows]] == queries[rows[0]]
    return matches


def _indices(indices: Any, num_queries: int, num_gallery: int) -> np.ndarray:
    array = np.asarray(indices)
    if array.ndim != 2 or len(array) != num_queries or array.shape[1] == 0:
        raise PlpVizError(
            f"indices must be (num_queries, k) = ({num_queries}, k >= 1), got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise PlpVizError(f"indices must be integers, got dtype {array.dtype}")
    if array.size and array.max() >= num_gallery:
        raise PlpVizError(
            f"indices point past the gallery: max {array.max()} with {num_gallery} gallery images"
        )
    return array.astype(np.int64)


def rank_list_queries(
    query_average_precision: Any, *, num_worst: int, num_random: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return the worst queries (lowest AP) and a seeded random draw from the others.

    Queries whose AP is NaN (no match in the gallery: nothing to find) are neither worst nor
    drawn.

    Args:
        query_average_precision: ``(Q,)`` AP of each query, NaN where it has no match.
        num_worst: How many of the lowest-AP queries (fewer if fewer queries are valid).
        num_random: How many further queries to draw uniformly, without repeats, with
            ``numpy.random.default_rng(seed)`` from the valid ones not among the worst.
        seed: Seed of the draw.

    Returns:
        ``(worst, random)`` int64 query indices: ``worst`` by increasing AP (equal APs by
        index), ``random`` by increasing index.

    Raises:
        PlpVizError: If the AP array is not 1-D, holds values outside ``[0, 1]``, has no
            finite value, or a count is negative.

    Example:
        >>> ap = [0.9, 0.2, float("nan"), 0.2, 1.0]
        >>> worst, random = rank_list_queries(ap, num_worst=2, num_random=1, seed=0)
        >>> worst.tolist(), random.tolist() in ([0], [4])
        ([1, 3], True)
    """
    if num_worst < 0 or num_random < 0:
        raise PlpVizError(
            f"num_worst and num_random must be >= 0, got {num_worst} and {num_random}"
        )
    try:
        values = np.asarray(query_average_precision, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlpVizError(f"query_average_precision must be numbers: {error}") from None
    if values.ndim != 1:
        raise PlpVizError(f"query_average_precision must be 1-D, got shape {values.shape}")
    valid = np.flatnonzero(np.isfinite(values))
    if len(valid) == 0:
        raise PlpVizError(
            "query_average_precision has no finite value: no query has a match in the gallery"
        )
    if values[valid].min() < 0.0 or values[valid].max() > 1.0:
        raise PlpVizError(
            f"query_average_precision must be in [0, 1], got values from "
            f"{values[valid].min():g} to {values[valid].max():g}"
        )
    order = valid[np.argsort(values[valid], kind="stable")]
    worst = order[:num_worst]
    rest = order[num_worst:]
    drawn = np.random.default_rng(seed).choice(
        len(rest), size=min(num_random, len(rest)), replace=False
    )
    return worst.astype(np.int64), np.sort(rest[drawn]).astype(np.int64)


def plot_rank_list(
    query_images: np.ndarray,
    query_labels: np.ndarray,
    gallery_images: np.ndarray,
    gallery_labels: np.ndarray,
    indices: np.ndarray,
    path: str | Path,
    *,
    max_queries: int = 8,
    class_names: Sequence[str] | None = None,
    query_average_precision: np.ndarray | None = None,
    worst_queries: int | None = None,
    seed: int = 0,
) -> Path:
    """Draw each query followed by its top-k gallery images, framed green (match) or red.

    Every image is stretched from its own minimum to maximum for display, so any input
    normalisation works. Negative indices (no result) leave their cell empty.

    Without ``query_average_precision`` the first ``max_queries`` queries are drawn. With it,
    the rows are the ``worst_queries`` queries of lowest AP (labelled "worst"), then random
    others (labelled "random") up to ``max_queries`` rows, chosen by
    :func:`rank_list_queries`; each row shows its query's AP. To draw from many queries
    without loading all their images, pick the rows with :func:`rank_list_queries` first and
    pass those queries, worst first: the same rows come out.

    Args:
        query_images: ``(Q, C, H, W)`` with ``C`` 1 or 3, or ``(Q, H, W)``.
        query_labels: ``(Q,)`` labels of the queries.
        gallery_images: ``(G, C, H, W)`` or ``(G, H, W)``.
        gallery_labels: ``(G,)`` labels of the gallery.
        indices: ``(Q, k)`` gallery rows ranked for each query, as the metrics rank them:
            ``plp_eval.protocol_rank_lists`` leaves out the protocol's junk (same label and
            camera, same sequence, the query itself), so rank ``r`` drawn is rank ``r`` of
            the metrics; plain nearest neighbours would show excluded items as matches.
        path: Where to write the figure; parent folders are created.
        max_queries: How many queries to draw (one row each).
        class_names: Names of the labels (``class_names[label]``) for the titles; None shows
            the labels.
        query_average_precision: ``(Q,)`` AP of each query over its whole ranking (NaN for a
            query without a match).
        worst_queries: How many of the rows are worst queries; default half of
            ``max_queries``, rounded up.
        seed: Seed of the random rows.

    Returns:
        The path written.

    Raises:
        PlpVizError: On wrong shapes, mismatched lengths, out-of-range indices, empty inputs,
            ``max_queries < 1``, ``worst_queries`` outside ``[0, max_queries]``, labels that do
            not index ``class_names``, or an AP array rejected by :func:`rank_list_queries`.
    """
    queries = _images(query_images, "query_images")
    gallery = _images(gallery_images, "gallery_images")
    q_labels = _labels(query_labels, len(queries), "query_labels", "query_images")
    g_labels = _labels(gallery_labels, len(gallery), "gallery_labels", "gallery_images")
    if max_queries < 1:
        raise PlpVizError(f"max_queries must be >= 1, got {max_queries}")
    names = check_class_names(q_labels, class_names, "query_labels")
    check_class_names(g_labels, class_names, "gallery_labels")
    matches = rank_list_matches(q_labels, g_labels, indices)
    ranked = _indices(indices, len(queries), len(gallery))
    rows, kinds, precision = _rank_list_rows(
        len(queries), max_queries, query_average_precision, worst_queries, seed
    )
    k = ranked.shape[1]
    # One axis per query and one per row of gallery tiles (drawn as a single image): a figure
    # of 2 x rows axes instead of (k + 1) x rows draws and saves several times faster.
    figure, axes = _plots.pyplot().subplots(
        len(rows),
        2,
        figsize=(1.3 * (k + 1), 1.6 * len(rows)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, k]},
    )
    for line, query in enumerate(rows):
        axes[line][0].imshow(rank_list_tile(queries[query], _QUERY_COLOUR))
        title = f"query {label_text(q_labels[query], names)}"
        if precision is not None:
            title += f"\nAP {precision[query]:.2f}"
        axes[line][0].set_title(title, fontsize=7)
        if kinds:
            axes[line][0].set_ylabel(
                kinds[line],
                fontsize=8,
                fontweight="bold",
                color=MISMATCH_COLOUR if kinds[line] == "worst" else "dimgrey",
            )
        _draw_gallery_row(axes[line][1], gallery, g_labels, names, ranked[query], matches[query])
        for axis in axes[line]:
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
    figure.tight_layout()
    return _plots._save(figure, path)


def _rank_list_rows(
    num_queries: int,
    max_queries: int,
    query_average_precision: Any,
    worst_queries: int | None,
    seed: int,
) -> tuple[list[int], list[str], np.ndarray | None]:
    """Return each row's query, each row's kind ("worst"/"random"; none without AP), the APs."""
    if query_average_precision is None:
        return list(range(min(num_queries, max_queries))), [], None
    precision = np.asarray(query_average_precision, dtype=np.float64)
    if precision.shape != (num_queries,):
        raise PlpVizError(
            f"query_average_precision must have one value per query ({num_queries}), "
            f"got shape {precision.shape}"
        )
    num_worst = (max_queries + 1) // 2 if worst_queries is None else worst_queries
    if not 0 <= num_worst <= max_queries:
        raise PlpVizError(f"worst_queries must be in [0, {max_queries}], got {num_worst}")
    worst, random = rank_list_queries(
        precision, num_worst=num_worst, num_random=max_queries - num_worst, seed=seed
    )
    rows = [int(i) for i in worst] + [int(i) for i in random]
    return rows, ["worst"] * len(worst) + ["random"] * len(random), precision


def _draw_gallery_row(
    axis: Any,
    gallery: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] | None,
    ranked: np.ndarray,
    matches: np.ndarray,
) -> None:
    """Draw one query's ranked gallery tiles side by side as one image, each titled above.

    Gaps between the tiles and the cells of missing results (negative indices) are
    transparent, so they show the figure's background as empty cells did.
    """
    tiles = [
        rank_list_tile(gallery[item], MATCH_COLOUR if match else MISMATCH_COLOUR)
        if item >= 0
        else None
        for item, match in zip(ranked, matches, strict=True)
    ]
    height, width = rank_list_tile(gallery[0], _QUERY_COLOUR).shape[:2]
    gap = max(1, round(0.15 * width))
    strip = np.zeros((height, len(tiles) * (width + gap) - gap, 4))
    for rank, tile in enumerate(tiles):
        left = rank * (width + gap)
        if tile is not None:
            strip[:, left : left + width, :3] = tile
            strip[:, left : left + width, 3] = 1.0
            axis.text(
                left + (width - 1) / 2,
                -0.5 - 0.04 * height,
                f"{rank + 1}: {label_text(labels[ranked[rank]], names)}",
                fontsize=7,
                ha="center",
                va="bottom",
            )
    axis.imshow(strip)
