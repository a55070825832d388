"""Evaluation plots: CMC curves, rank-list grids, confusion matrices, pair-distance histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text, shorten
from plp_viz._plots import _save, pyplot

__all__ = [
    "DISTANCE_METRICS",
    "MATCH_COLOUR",
    "MISMATCH_COLOUR",
    "confusion_ticks",
    "confusion_values",
    "display_image",
    "pair_distances",
    "plot_cmc",
    "plot_confusion_matrix",
    "plot_distance_histogram",
    "plot_rank_list",
    "rank_list_matches",
    "rank_list_queries",
    "rank_list_tile",
]

DISTANCE_METRICS = ("euclidean", "cosine")
"""Metrics :func:`pair_distances` accepts: L2, and 1 - cosine similarity."""

MATCH_COLOUR = (0.0, 0.75, 0.0)
"""RGB border of a gallery image whose label equals the query's (green)."""

MISMATCH_COLOUR = (0.9, 0.0, 0.0)
"""RGB border of a gallery image with another label than the query's (red)."""

_QUERY_COLOUR = (1.0, 1.0, 1.0)
_MAX_ANNOTATED_CLASSES = 20
_MAX_TICKS = 40
_CHUNK_PAIRS = 8192


# --------------------------------------------------------------------------------- CMC curves


def _cmc_curves(cmc: np.ndarray | Mapping[str, np.ndarray], max_rank: int) -> dict[str, np.ndarray]:
    if max_rank < 1:
        raise PlpVizError(f"max_rank must be >= 1, got {max_rank}")
    named: Mapping[str, Any] = cmc if isinstance(cmc, Mapping) else {"": cmc}
    if not named:
        raise PlpVizError("cmc mapping is empty: give at least one curve")
    curves: dict[str, np.ndarray] = {}
    for name, values in named.items():
        where = f"cmc[{name!r}]" if name else "cmc"
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PlpVizError(f"{where} must be a 1-D array of numbers: {error}") from None
        if array.ndim != 1 or len(array) == 0:
            raise PlpVizError(f"{where} must be a non-empty 1-D array, got shape {array.shape}")
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0 + 1e-9:
            raise PlpVizError(
                f"{where} must hold fractions in [0, 1] (not percentages), "
                f"got values from {np.nanmin(array):g} to {np.nanmax(array):g}"
            )
        curves[str(name)] = array[:max_rank]
    return curves


def plot_cmc(
    cmc: np.ndarray | Mapping[str, np.ndarray],
    path: str | Path,
    *,
    max_rank: int = 50,
    title: str | None = None,
) -> Path:
    """Draw a cumulative matching characteristic curve and save it as an image.

    Args:
        cmc: ``(R,)`` fractions in ``[0, 1]``, ``cmc[k - 1]`` being the share of queries with a
            correct match within the first ``k`` results; or a mapping of names to such arrays,
            drawn as one labelled line each (for comparing models or checkpoints).
        path: Where to write the figure (PNG by its suffix); parent folders are created.
        max_rank: Last rank drawn; each curve shows ranks ``1..min(max_rank, R)``.
        title: Figure title; None draws "CMC".

    Returns:
        The path written.

    Raises:
        PlpVizError: If a curve is empty, not 1-D, or holds values outside ``[0, 1]``, if the
            mapping is empty, or if ``max_rank < 1``.
    """
    curves = _cmc_curves(cmc, max_rank)
    figure, axis = pyplot().subplots(figsize=(6.0, 4.5))
    longest = 1
    for name, values in curves.items():
        ranks = np.arange(1, len(values) + 1)
        longest = max(longest, len(values))
        label = f"{name + ': ' if name else ''}rank-1 {values[0]:.1%}"
        axis.plot(
            ranks, values, marker="o" if len(values) <= 20 else None, markersize=3, label=label
        )
    axis.set_xlim(1, max(longest, 2))
    axis.set_ylim(0.0, 1.0)
    axis.set_xlabel("rank")
    axis.set_ylabel("matching rate")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(title if title is not None else "CMC")
    return _save(figure, path)


# --------------------------------------------------------------------------------- rank lists


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
        indices: ``(Q, k)`` gallery rows ranked for each query (e.g. ``plp_eval.rank_lists``).
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
    figure, axes = pyplot().subplots(
        len(rows), k + 1, figsize=(1.3 * (k + 1), 1.6 * len(rows)), squeeze=False
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
        for rank in range(k):
            axis = axes[line][rank + 1]
            item = ranked[query, rank]
            if item >= 0:
                colour = MATCH_COLOUR if matches[query, rank] else MISMATCH_COLOUR
                axis.imshow(rank_list_tile(gallery[item], colour))
                axis.set_title(f"{rank + 1}: {label_text(g_labels[item], names)}", fontsize=7)
        for axis in axes[line]:
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
    figure.tight_layout()
    return _save(figure, path)


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


# --------------------------------------------------------------------------- confusion matrix


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
    figure, axis = pyplot().subplots(figsize=(side + 1.0, side))
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
    return _save(figure, path)


# ------------------------------------------------------------------ pair-distance histograms


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
    if metric not in DISTANCE_METRICS:
        raise PlpVizError(
            f"unknown metric {metric!r}; expected one of {', '.join(DISTANCE_METRICS)}"
        )
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
    figure, axis = pyplot().subplots(figsize=(6.0, 4.0))
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
    return _save(figure, path)
