"""Rows of captioned thumbnails: lists of images to look at (an audit's suspects, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plp_viz._errors import PlpVizError
from plp_viz._plots import _save, pyplot
from plp_viz._rank_list import display_image

__all__ = ["ImageRow", "plot_image_rows"]


@dataclass(frozen=True)
class ImageRow:
    """One row of :func:`plot_image_rows`: a title, images and one caption per image.

    Images are ``(C, H, W)`` with C 1 or 3, or ``(H, W)``, in any range (each is stretched from
    its own min to max, as the rank lists draw them).
    """

    title: str
    images: Sequence[Any]
    captions: Sequence[str]


def plot_image_rows(rows: Sequence[ImageRow], path: str | Path) -> Path:
    """Draw each row's title, then its images with their captions; return the path.

    Rows may differ in length (the grid is as wide as the longest); a row without images says
    "none".

    Raises:
        PlpVizError: No rows, a row whose caption count is not its image count, or an image
            that is not ``(C, H, W)`` / ``(H, W)``.
    """
    if not rows:
        raise PlpVizError("no rows to draw")
    for row in rows:
        if len(row.captions) != len(row.images):
            raise PlpVizError(
                f"row {row.title!r} has {len(row.images)} images and {len(row.captions)} captions"
            )
    columns = max(1, *(len(row.images) for row in rows))
    plt = pyplot()
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.3 * columns, 1.75 * len(rows)), squeeze=False
    )
    for number, row in enumerate(rows):
        for column in range(columns):
            axis = axes[number][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(row.images):
                axis.imshow(display_image(_numpy(row.images[column])))
                axis.set_xlabel(row.captions[column], fontsize=6)
            else:
                axis.axis("off")
        axes[number][0].set_title(
            row.title if row.images else f"{row.title}: none", fontsize=8, loc="left"
        )
    return _save(figure, path)


def _numpy(image: Any) -> Any:
    return image.detach().cpu().numpy() if hasattr(image, "detach") else image
