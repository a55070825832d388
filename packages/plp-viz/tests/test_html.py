"""Self-contained HTML pieces: data URIs, the interactive embedding, rank lists, the page.

What a browser does with the page is tested in tests/test_html_report.py (headless Chromium).
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plp_viz import (
    PlpVizError,
    file_uri,
    html_page,
    html_rank_lists,
    image_uri,
    interactive_embedding,
)


def decode(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_image_uri_keeps_small_images_and_scales_large_ones_down():
    digit = np.arange(64, dtype=np.float64).reshape(8, 8)
    small = decode(image_uri(digit, max_side=32))
    assert small.size == (8, 8) and small.format == "PNG"
    pixels = np.asarray(small.convert("L"))
    assert pixels[0, 0] == 0 and pixels[7, 7] == 255  # stretched from min to max
    person = torch.rand(3, 128, 64)
    thumb = decode(image_uri(person, max_side=32, image_format="jpeg"))
    assert thumb.size == (16, 32) and thumb.format == "JPEG"
    with pytest.raises(PlpVizError, match="image_format must be 'png' or 'jpeg'"):
        image_uri(digit, image_format="gif")
    with pytest.raises(PlpVizError, match=r"an image must be \(C, H, W\)"):
        image_uri(np.zeros((5, 4, 4)))


def test_file_uri(tmp_path: Path):
    path = tmp_path / "plot.png"
    Image.new("RGB", (3, 2), "red").save(path)
    assert decode(file_uri(path)).size == (3, 2)
    with pytest.raises(PlpVizError, match=r"only \.png, \.jpg, \.jpeg, \.svg files can be inlined"):
        file_uri(tmp_path / "notes.txt")
    with pytest.raises(PlpVizError, match=r"missing\.png: cannot be read"):
        file_uri(tmp_path / "missing.png")


def test_page_without_figures_has_no_script():
    page = html_page("a <b> title", ["<h1>hello</h1>"])
    assert "<title>a &lt;b&gt; title</title>" in page and "<h1>hello</h1>" in page
    assert "<script" not in page


def test_page_with_an_embedding_inlines_bokeh_and_keeps_the_order():
    rng = np.random.default_rng(0)
    thumbs = [image_uri(rng.random((8, 8))) for _ in range(5)]
    figure = interactive_embedding(
        rng.normal(size=(5, 2)),
        [0, 1, 1, 0, 2],
        thumbs,
        links=[f"#q-{i}" for i in range(5)],
        class_names=["zero", "one", "two"],
    )
    page = html_page("run", ["<h2>first</h2>", figure, "<h2>last</h2>"])
    assert page.index("<h2>first</h2>") < page.index("data-root-id") < page.index("<h2>last</h2>")
    # Bokeh's core bundle is inlined, not linked: no script or stylesheet has a src or href.
    assert re.search(r"<script[^>]*\bsrc=", page) is None
    assert re.search(r"<link[^>]*\bhref=", page) is None
    assert "Bokeh" in page and all(thumb in page for thumb in thumbs)
    assert 0.5e6 < len(page) < 3e6  # the core bundle only, no widgets, tables or MathJax
    # A stored fragment of the figure makes the same page: Bokeh's JS is inlined for it too.
    stored = html_page("run", ["<h2>first</h2>", figure.to_html(), "<h2>last</h2>"])
    assert len(stored) == pytest.approx(len(page), rel=0.01) and "Bokeh" in stored


def test_embedding_bad_input():
    thumbs = ["data:,"] * 3
    with pytest.raises(PlpVizError, match=r"points must be \(N, 2\)"):
        interactive_embedding(np.zeros((3, 3)), [0, 1, 2], thumbs)
    with pytest.raises(PlpVizError, match="thumbnails has 2 items for 3 points"):
        interactive_embedding(np.zeros((3, 2)), [0, 1, 2], thumbs[:2])
    with pytest.raises(PlpVizError, match="links has 1 items for 3 points"):
        interactive_embedding(np.zeros((3, 2)), [0, 1, 2], thumbs, links=["#a"])
    with pytest.raises(PlpVizError, match="labels holds label 2 but class_names has 2 names"):
        interactive_embedding(np.zeros((3, 2)), [0, 1, 2], thumbs, class_names=["a", "b"])


def test_rank_lists_frame_matches_and_hide_until_targeted():
    block = html_rank_lists(
        ["query-7"],
        ["data:q"],
        [1],
        [["data:a", "data:b", "data:c"]],
        [[1, 0, 1]],
        titles=["AP 0.83"],
        class_names=["cat", "dog"],
    )
    assert block.count('class="match"') == 2 and block.count('class="mismatch"') == 1
    assert 'id="query-7"' in block and "query dog" in block and "2: cat" in block
    assert "<code>" not in block  # no files, no file lines
    named = html_rank_lists(
        ["query-7"],
        ["data:q"],
        [1],
        [["data:a", "data:b"]],
        [[1, 0]],
        query_files=["query/0001_c1<s1>.jpg"],
        gallery_files=[["gallery/0001_c2.jpg", "gallery/0002_c1.jpg"]],
    )
    assert "query 1<code>query/0001_c1&lt;s1&gt;.jpg</code>" in named  # escaped
    assert "1: 1<code>gallery/0001_c2.jpg</code>" in named
    assert "2: 0<code>gallery/0002_c1.jpg</code>" in named
    page = html_page("lists", [block])
    assert ".rank-list { display: none;" in page and ".rank-list:target { display: block; }" in page
    with pytest.raises(PlpVizError, match="query_labels has 2 items for 1 rank lists"):
        html_rank_lists(["a"], ["data:q"], [1, 2], [["data:a"]], [[1]])
    with pytest.raises(PlpVizError, match="gallery_files has 2 items for 1 rank lists"):
        html_rank_lists(["a"], ["data:q"], [1], [["data:a"]], [[1]], gallery_files=[[], []])
    with pytest.raises(PlpVizError, match="rank list 0: gallery_files has 0 items for 1 gallery"):
        html_rank_lists(["a"], ["data:q"], [1], [["data:a"]], [[1]], gallery_files=[[]])
    with pytest.raises(PlpVizError, match="rank list 0: gallery_labels has 2 items for 1 gallery"):
        html_rank_lists(["a"], ["data:q"], [1], [["data:a"]], [[1, 0]])
