"""plot_image_rows: rows of captioned thumbnails of different lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plp_viz import ImageRow, PlpVizError, plot_image_rows


def test_rows_of_different_lengths(tmp_path: Path):
    rng = np.random.default_rng(0)
    rows = [
        ImageRow("mislabeled", [rng.random((8, 8)) for _ in range(4)], ["a", "b", "c", "d"]),
        ImageRow("leakage", [torch.rand(3, 16, 8), rng.random((1, 8, 8))], ["x", "y"]),
        ImageRow("outliers", [], []),
    ]
    path = plot_image_rows(rows, tmp_path / "rows.png")
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # images drawn, not a blank page
    one = plot_image_rows(rows[:1], tmp_path / "one.png")
    with Image.open(one) as image:
        assert image.size[1] < height / 2  # one row of three
    narrow = plot_image_rows(rows[1:2], tmp_path / "narrow.png")
    with Image.open(narrow) as image:
        assert image.size[0] < 0.7 * width  # two columns of four


def test_bad_input(tmp_path: Path):
    with pytest.raises(PlpVizError, match="no rows to draw"):
        plot_image_rows([], tmp_path / "x.png")
    with pytest.raises(PlpVizError, match="row 'r' has 1 images and 2 captions"):
        plot_image_rows([ImageRow("r", [np.zeros((4, 4))], ["a", "b"])], tmp_path / "x.png")
    with pytest.raises(PlpVizError, match=r"an image must be \(C, H, W\)"):
        plot_image_rows([ImageRow("r", [np.zeros((5, 4, 4))], ["a"])], tmp_path / "x.png")
