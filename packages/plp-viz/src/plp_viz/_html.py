"""Self-contained HTML: images as data URIs, an interactive embedding (Bokeh), one page.

Everything a page needs is inside it: images are ``data:`` URIs, Bokeh's JavaScript is
inlined (only the bundles the page's figures use), so it opens from ``file://`` with no
network. The interactive embedding uses Bokeh's own tools: the hover tooltip shows each
point's thumbnail, a click follows the point's link (``#anchor`` of its rank list).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text
from plp_viz._rank_list import MATCH_COLOUR, MISMATCH_COLOUR, display_image

__all__ = [
    "EMBEDDING_NAME",
    "INTERACTIVE_CLASS",
    "Interactive",
    "file_uri",
    "html_page",
    "html_rank_lists",
    "image_uri",
    "interactive_embedding",
]

INTERACTIVE_CLASS = "plp-interactive"
"""CSS class of the element around an interactive figure (:meth:`Interactive.to_html`)."""

EMBEDDING_NAME = "embedding-points"
"""Bokeh name of the scatter renderer of :func:`interactive_embedding` (tests look it up)."""

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
img.plot { max-width: 100%; }
img.thumb { height: 48px; image-rendering: pixelated; margin: 1px; }
.rank-list { display: none; border: 1px solid #999; padding: 0.4em; margin: 0.4em 0; }
.rank-list:target { display: block; }
.rank-list figure { display: inline-block; margin: 0 2px; text-align: center; font-size: 0.75em; }
.rank-list figure.match img { outline: 3px solid rgb(MATCH); }
.rank-list figure.mismatch img { outline: 3px solid rgb(MISMATCH); }
.rank-list figure code { display: block; max-width: 10em; overflow-wrap: anywhere; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def _rgb(colour: tuple[float, float, float]) -> str:
    return ",".join(str(round(255 * c)) for c in colour)


STYLE = _STYLE.replace("MATCH)", f"{_rgb(MATCH_COLOUR)})").replace(
    "MISMATCH)", f"{_rgb(MISMATCH_COLOUR)})"
)


def image_uri(image: Any, *, max_side: int | None = None, image_format: str = "png") -> str:
    """Return an image as a ``data:`` URI, scaled down to ``max_side`` pixels if larger.

    Args:
        image: ``(C, H, W)`` with C 1 or 3, or ``(H, W)``, any range (stretched from its own
            min to max, as the rank lists draw it); a tensor or an array.
        max_side: Longest side of the result; smaller images are kept as they are.
        image_format: ``png`` (exact) or ``jpeg`` (smaller for photographs).

    Raises:
        PlpVizError: A shape that is not an image, or another format.
    """
    from PIL import Image

    if image_format not in ("png", "jpeg"):
        raise PlpVizError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    pixels = (display_image(np.asarray(image)) * 255).round().astype(np.uint8)
    picture = Image.fromarray(pixels)
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(
        buffer, format=image_format.upper(), **({"quality": 85} if image_format == "jpeg" else {})
    )
    return f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def file_uri(path: str | Path) -> str:
    """Return a PNG, JPEG or SVG file as a ``data:`` URI.

    Raises:
        PlpVizError: Another file type, or a file that cannot be read.
    """
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise PlpVizError(f"{path}: only {', '.join(_MIME)} files can be inlined")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PlpVizError(f"{path}: cannot be read ({error.strerror})") from None
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@dataclass(frozen=True)
class Interactive:
    """An interactive figure for :func:`html_page` (a Bokeh model, drawn by Bokeh's JS)."""

    model: Any

    def to_html(self) -> str:
        """Return the figure as an HTML fragment: its element, its data and the call that draws it.

        The fragment can be stored and given to :func:`html_page` later (which then inlines
        Bokeh's JavaScript): a report can be assembled from parts drawn by several commands.
        """
        from bokeh.embed import components

        script, div = components(self.model)
        return f'<div class="{INTERACTIVE_CLASS}">{div}{script}</div>'


def _palette(count: int) -> list[str]:
    from bokeh.palettes import Category10, Category20, Turbo256

    if count <= 10:
        return list(Category10[10][:count])
    if count <= 20:
        return list(Category20[20][:count])
    return [Turbo256[int(i)] for i in np.linspace(0, 255, count)]


def interactive_embedding(
    points: Any,
    labels: Any,
    thumbnails: Sequence[str],
    *,
    links: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    width: int = 720,
    height: int = 540,
) -> Interactive:
    """Return a 2-D scatter whose hover shows each point's thumbnail and label.

    Args:
        points: ``(N, 2)`` coordinates (e.g. :func:`umap_2d`'s).
        labels: ``(N,)`` class of each point: its colour and tooltip text.
        thumbnails: One image URI per point (:func:`image_uri`), shown on hover.
        links: One URL per point followed on a click in the same tab, e.g. ``#query-12``.
        captions: One more line of tooltip text per point.
        class_names: Names of the labels (``class_names[label]``).
        width: Width of the plotting area in pixels.
        height: Its height.

    Raises:
        PlpVizError: Shapes or counts that do not agree, or labels that do not index
            ``class_names``.
    """
    from bokeh.models import ColumnDataSource, HoverTool, OpenURL, Range1d, TapTool
    from bokeh.plotting import figure

    coordinates = np.asarray(points, dtype=np.float64)
    if coordinates.ndim != 2 or coordinates.shape[1] != 2 or len(coordinates) == 0:
        raise PlpVizError(f"points must be (N, 2) with N >= 1, got shape {coordinates.shape}")
    count = len(coordinates)
    classes = np.asarray(labels)
    for name, values in (
        ("labels", classes),
        ("thumbnails", thumbnails),
        ("links", links),
        ("captions", captions),
    ):
        if values is not None and len(values) != count:
            raise PlpVizError(f"{name} has {len(values)} items for {count} points")
    names = check_class_names(classes, class_names, "labels")
    distinct, position = np.unique(classes, return_inverse=True)
    palette = _palette(len(distinct))
    source = ColumnDataSource(
        {
            "x": coordinates[:, 0],
            "y": coordinates[:, 1],
            "label": [label_text(label, names) for label in classes],
            "thumb": list(thumbnails),
            "link": list(links) if links is not None else [""] * count,
            "caption": list(captions) if captions is not None else [""] * count,
            "colour": [palette[i] for i in position],
        }
    )
    low, high = coordinates.min(0), coordinates.max(0)
    margin = np.maximum(0.05 * (high - low), 1e-6)
    plot = figure(
        frame_width=width,
        frame_height=height,
        x_range=Range1d(low[0] - margin[0], high[0] + margin[0]),
        y_range=Range1d(low[1] - margin[1], high[1] + margin[1]),
        tools="pan,wheel_zoom,box_zoom,reset",
        toolbar_location="above",
        min_border=10,
    )
    plot.axis.visible = False
    plot.grid.visible = False
    renderer = plot.scatter(
        "x", "y", source=source, color="colour", size=7, alpha=0.85, name=EMBEDDING_NAME
    )
    plot.add_tools(
        HoverTool(
            renderers=[renderer],
            tooltips=(
                '<div><img src="@thumb" class="thumb" style="height:64px;'
                'image-rendering:pixelated"><div>@label</div><div>@caption</div></div>'
            ),
        )
    )
    if links is not None:
        plot.add_tools(TapTool(renderers=[renderer], callback=OpenURL(url="@link", same_tab=True)))
    return Interactive(plot)


def html_rank_lists(
    anchors: Sequence[str],
    query_thumbnails: Sequence[str],
    query_labels: Sequence[Any],
    gallery_thumbnails: Sequence[Sequence[str]],
    gallery_labels: Sequence[Sequence[Any]],
    *,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    query_files: Sequence[str] | None = None,
    gallery_files: Sequence[Sequence[str]] | None = None,
) -> str:
    """Return one hidden rank list per query, shown when its ``#anchor`` is the page's target.

    Each list is the query's thumbnail then its gallery thumbnails in rank order, outlined
    green (same label) or red; nothing but CSS (``:target``) shows and hides them. With
    ``query_files`` and ``gallery_files`` (one name per thumbnail) each caption names its file.

    Raises:
        PlpVizError: Counts that do not agree.
    """
    count = len(anchors)
    for name, values in (
        ("query_thumbnails", query_thumbnails),
        ("query_labels", query_labels),
        ("gallery_thumbnails", gallery_thumbnails),
        ("gallery_labels", gallery_labels),
        ("titles", titles),
        ("query_files", query_files),
        ("gallery_files", gallery_files),
    ):
        if values is not None and len(values) != count:
            raise PlpVizError(f"{name} has {len(values)} items for {count} rank lists")
    labels = [*query_labels, *(label for row in gallery_labels for label in row)]
    names = check_class_names(np.asarray(labels, dtype=np.int64), class_names, "the labels")
    blocks = []
    for i, anchor in enumerate(anchors):
        title = html.escape(titles[i]) if titles is not None else ""
        files = [None] * len(gallery_thumbnails[i]) if gallery_files is None else gallery_files[i]
        for name, row in (("gallery_labels", gallery_labels[i]), ("gallery_files", files)):
            if len(row) != len(gallery_thumbnails[i]):
                raise PlpVizError(
                    f"rank list {i}: {name} has {len(row)} items for "
                    f"{len(gallery_thumbnails[i])} gallery thumbnails"
                )
        cells = [
            f'<figure><img class="thumb" src="{query_thumbnails[i]}">'
            f"<figcaption>query {html.escape(label_text(query_labels[i], names))}"
            f"{_file_caption(None if query_files is None else query_files[i])}</figcaption>"
            "</figure>"
        ]
        for rank, (thumb, label, file) in enumerate(
            zip(gallery_thumbnails[i], gallery_labels[i], files, strict=True), start=1
        ):
            kind = "match" if label == query_labels[i] else "mismatch"
            cells.append(
                f'<figure class="{kind}"><img class="thumb" src="{thumb}"><figcaption>'
                f"{rank}: {html.escape(label_text(label, names))}{_file_caption(file)}"
                "</figcaption></figure>"
            )
        blocks.append(
            f'<div class="rank-list" id="{html.escape(anchor)}"><div>{title}</div>'
            + "".join(cells)
            + "</div>"
        )
    return "\n".join(blocks)


def _file_caption(file: str | None) -> str:
    """Return a caption's file line (its relative path), or nothing without a file."""
    return "" if file is None else f"<code>{html.escape(file)}</code>"


def html_page(title: str, parts: Sequence[str | Interactive]) -> str:
    """Return one self-contained HTML page: the parts in order, Bokeh's JS inlined if needed.

    Args:
        title: The page's title (escaped here).
        parts: HTML fragments (inserted as they are: escape what they quote) and interactive
            figures (or their stored :meth:`Interactive.to_html` fragments). Bokeh's core
            bundle is inlined once when there is a figure (its scatter, hover and tap tools
            need nothing else).
    """
    body = [part.to_html() if isinstance(part, Interactive) else part for part in parts]
    head = [f'<meta charset="utf-8"><title>{html.escape(title)}</title>', f"<style>{STYLE}</style>"]
    if any(f'class="{INTERACTIVE_CLASS}"' in part for part in body):
        from bokeh.resources import Resources

        resources = Resources(mode="inline", components=["bokeh"])
        head += [resources.render_js(), resources.render_css()]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        + "\n".join(head)
        + "\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
