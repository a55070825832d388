"""The camera-matrix heat-map and CMC confidence bands."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import plp_viz
from plp_viz import PlpVizError, plot_camera_matrix, plot_cmc


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def test_camera_matrix_draws_nan_cells_grey(tmp_path):
    nan = float("nan")
    values = [[nan, 7 / 12, 1.0], [0.75, nan, 1.0], [1.0, nan, nan]]
    counts = [[0, 1, 1], [2, 0, 2], [1, 0, 0]]
    out = plot_camera_matrix(values, [1, 2, 3], [1, 2, 3], tmp_path / "m.png",
                             num_valid_queries=counts)  # fmt: skip
    drawn = pixels(out)
    grey = (np.abs(drawn - 217).max(axis=2) <= 1).sum()  # the NaN cells' background
    full = plot_camera_matrix(np.full((3, 3), 0.5), [1, 2, 3], [1, 2, 3], tmp_path / "f.png")
    assert grey > 500 and (np.abs(pixels(full) - 217).max(axis=2) <= 1).sum() < grey / 10
    assert "plot_camera_matrix" in plp_viz.__all__


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mean_average_precision": [[1.5]]}, r"values in \[0, 1\] or NaN"),
        ({"mean_average_precision": [1.0, 0.5]}, r"must be \(query cameras, gallery cameras\)"),
        ({"query_cameras": [1, 2]}, "there are 2 query cameras and 1 gallery cameras"),
        ({"num_valid_queries": [[1, 2]]}, r"num_valid_queries has shape \(1, 2\), expected"),
    ],
)
def test_camera_matrix_bad_input(tmp_path, arguments, message):
    given = {"mean_average_precision": [[0.5]], "query_cameras": [1], "gallery_cameras": [2]}
    with pytest.raises(PlpVizError, match=message):
        plot_camera_matrix(path=tmp_path / "x.png", **{**given, **arguments})


def test_cmc_band_is_drawn_around_the_curve(tmp_path):
    cmc = np.minimum(1.0, 0.5 + 0.02 * np.arange(30))
    band = (np.maximum(cmc - 0.15, 0.0), np.minimum(cmc + 0.15, 1.0))
    plain = pixels(plot_cmc(cmc, tmp_path / "plain.png"))
    banded = pixels(plot_cmc(cmc, tmp_path / "band.png", intervals=band))
    assert plain.shape == banded.shape
    # The shaded band (the line's colour at 20% over white) covers many more pixels.
    changed = np.abs(plain - banded).max(axis=2) > 10
    assert changed.sum() > 5000
    named = plot_cmc({"A": cmc, "B": cmc * 0.9}, tmp_path / "two.png", intervals={"A": band})
    assert named.exists()


def test_cmc_band_bad_input(tmp_path):
    cmc = np.full(5, 0.5)
    with pytest.raises(PlpVizError, match="intervals name a curve 'B' that is not in cmc"):
        plot_cmc({"A": cmc}, tmp_path / "x.png", intervals={"B": (cmc, cmc)})
    with pytest.raises(PlpVizError, match=r"intervals\[''\] must be \(low, high\) arrays"):
        plot_cmc(cmc, tmp_path / "x.png", intervals=(cmc[:3], cmc[:3]))
    with pytest.raises(PlpVizError, match="with low <= high"):
        plot_cmc(cmc, tmp_path / "x.png", intervals=(cmc + 0.1, cmc))
