"""Why two images match: the similarity of a pair attributed to both images, side by side.

For a query q and a gallery image g with embeddings f(q), f(g), the similarity s(q, g)
(:func:`~plp_viz._attributions.similarity`: cosine, or minus the L2 distance) is attributed to
q with f(g) held fixed, then to g with f(q) held fixed, by any attribution of
:func:`~plp_viz.explain` (integrated gradients, Grad-CAM on a layer, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plp_core import RANKING_METRICS, check_choice
from plp_viz._attributions import explain, similarity
from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text
from plp_viz._plots import _save, pyplot
from plp_viz._rank_list import MATCH_COLOUR, MISMATCH_COLOUR, display_image

__all__ = ["PairAttribution", "explain_pairs", "plot_pair_attributions"]


@dataclass(frozen=True)
class PairAttribution:
    """The attributions of ``s(query[i], gallery[i])`` to each image of each pair.

    Attributes:
        query: ``(N, C, H, W)`` attribution of the similarity to the query image (gallery fixed).
        gallery: ``(N, C, H, W)`` attribution to the gallery image (query fixed).
        similarity: ``(N,)`` the similarity of each pair.
        metric: ``cosine`` (similarity = cosine similarity) or ``euclidean`` (= - L2 distance).
    """

    query: torch.Tensor
    gallery: torch.Tensor
    similarity: torch.Tensor
    metric: str


@torch.no_grad()
def _embed(
    model: nn.Module,
    output: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [output(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
        )
    finally:
        model.train(was_training)


def explain_pairs(
    model: nn.Module,
    query_images: torch.Tensor,
    gallery_images: torch.Tensor,
    *,
    algorithm: str = "integrated_gradients",
    metric: str = "cosine",
    layer: str | None = None,
    output: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
    **kwargs: Any,
) -> PairAttribution:
    """Return the attribution of each pair's similarity to both of its images.

    Pair ``i`` is ``(query_images[i], gallery_images[i])``. Its similarity is attributed to the
    query with the gallery image's embedding as the fixed reference, and to the gallery image
    with the query's embedding fixed (:func:`~plp_viz.explain` with ``reference``), so each
    heat-map says which pixels of that image make it look like the other one. Integrated
    gradients start from a black image: the query's attributions sum to
    ``s(q, g) - s(black, g)``, the gallery's to ``s(q, g) - s(q, black)``.

    Args:
        model: The model; layers are looked up in it.
        query_images: ``(N, C, H, W)``.
        gallery_images: ``(N, C, H, W)``, one per query.
        algorithm: Any of :func:`~plp_viz.available_attributions`, e.g. ``layer_gradcam``.
        metric: ``cosine`` or ``euclidean`` (:data:`plp_core.RANKING_METRICS`): what the
            ranking compares embeddings by.
        layer: For layer methods (default: the last ``Conv2d``).
        output: The embedding function (default ``model``; e.g. ``model.embed`` for a model
            whose forward gives logits).
        batch_size: Images attributed at a time.
        **kwargs: Passed to captum's ``attribute``.

    Raises:
        PlpVizError: Query and gallery images of different shapes or counts, an unknown metric,
            and whatever :func:`~plp_viz.explain` refuses.
    """
    check_choice(metric, RANKING_METRICS, kind="metric", error=PlpVizError)
    if query_images.dim() != 4 or query_images.shape != gallery_images.shape:
        raise PlpVizError(
            "query_images and gallery_images must both be (N, C, H, W) with one gallery image "
            f"per query, got {tuple(query_images.shape)} and {tuple(gallery_images.shape)}"
        )
    if batch_size < 1:
        raise PlpVizError(f"batch_size must be >= 1, got {batch_size}")
    embed = output if output is not None else model
    query_embeddings = _embed(model, embed, query_images, batch_size)
    gallery_embeddings = _embed(model, embed, gallery_images, batch_size)
    common: dict[str, Any] = {
        "algorithm": algorithm,
        "layer": layer,
        "output": output,
        "metric": metric,
        "batch_size": batch_size,
        **kwargs,
    }
    return PairAttribution(
        query=explain(model, query_images, None, reference=gallery_embeddings, **common),
        gallery=explain(model, gallery_images, None, reference=query_embeddings, **common),
        similarity=similarity(query_embeddings, gallery_embeddings, metric).detach(),
        metric=metric,
    )


def _heat(attribution: torch.Tensor) -> np.ndarray:
    """Return the absolute attribution summed over channels, ``(H, W)``."""
    return attribution.detach().cpu().abs().sum(0).numpy()


def plot_pair_attributions(
    query_images: torch.Tensor,
    gallery_images: torch.Tensor,
    attributions: PairAttribution,
    path: str | Path,
    *,
    query_labels: Sequence[int] | None = None,
    gallery_labels: Sequence[int] | None = None,
    captions: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Draw one row per pair: query, its heat-map, the gallery image's heat-map, the gallery.

    Heat-maps are the absolute attributions summed over channels, blended over the greyed
    image, on one colour scale per pair (the larger of the two maxima), so the two sides of a
    pair compare. With labels the gallery image is framed green (same label as the query) or
    red. A row's title gives the labels (named by ``class_names``), the similarity and its
    caption (e.g. "false top-1", "best true match").

    Raises:
        PlpVizError: Shapes of images and attributions that differ, label or caption counts
            that are not the pair count, or a label that does not index ``class_names``.
    """
    count = len(query_images)
    if (
        query_images.shape != attributions.query.shape
        or gallery_images.shape != attributions.gallery.shape
    ):
        raise PlpVizError(
            f"images {tuple(query_images.shape)}, {tuple(gallery_images.shape)} and "
            f"attributions {tuple(attributions.query.shape)}, "
            f"{tuple(attributions.gallery.shape)} differ"
        )
    for name, values in (
        ("query_labels", query_labels),
        ("gallery_labels", gallery_labels),
        ("captions", captions),
    ):
        if values is not None and len(values) != count:
            raise PlpVizError(f"{name} has {len(values)} items for {count} pairs")
    names = check_class_names(
        [*(query_labels or []), *(gallery_labels or [])], class_names, "the labels"
    )
    plt = pyplot()
    figure, axes = plt.subplots(count, 4, figsize=(7.2, 2.1 * count), squeeze=False)
    for row in range(count):
        query = display_image(query_images[row].detach().cpu().numpy())
        gallery = display_image(gallery_images[row].detach().cpu().numpy())
        heats = _heat(attributions.query[row]), _heat(attributions.gallery[row])
        scale = max(float(heats[0].max()), float(heats[1].max())) or 1.0
        cells = axes[row]
        cells[0].imshow(query)
        for cell, image, heat in ((cells[1], query, heats[0]), (cells[2], gallery, heats[1])):
            cell.imshow(image.mean(-1), cmap="gray")
            cell.imshow(heat, cmap="inferno", alpha=0.6, vmin=0.0, vmax=scale)
        cells[3].imshow(gallery)
        if query_labels is not None and gallery_labels is not None:
            match = query_labels[row] == gallery_labels[row]
            for spine in cells[3].spines.values():
                spine.set_edgecolor(MATCH_COLOUR if match else MISMATCH_COLOUR)
                spine.set_linewidth(3)
        title = [
            f"query {label_text(query_labels[row], names)}" if query_labels is not None else "",
            f"gallery {label_text(gallery_labels[row], names)}"
            if gallery_labels is not None
            else "",
            f"s = {float(attributions.similarity[row]):.3f} ({attributions.metric})",
            captions[row] if captions is not None else "",
        ]
        cells[0].set_title(", ".join(t for t in title if t), fontsize=8, loc="left")
        for cell in cells:
            cell.set_xticks([])
            cell.set_yticks([])
    for column, text in enumerate(("query", "its attribution", "gallery's attribution", "gallery")):
        axes[-1][column].set_xlabel(text, fontsize=7)
    return _save(figure, path)
