"""The ROC plot and the search-results grid: what they mark, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plp_viz import PlpVizError, _plots, plot_roc, plot_search_results


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures saved, with their texts readable before they are closed."""
    figures: list[Any] = []
    save = _plots._save

    def keep(figure: Any, path: str | Path) -> Path:
        figures.append([axis.get_title() for axis in figure.axes])
        return save(figure, path)

    monkeypatch.setattr(_plots, "_save", keep)
    return figures


def test_search_grid_marks_results_past_the_threshold(tmp_path: Path, drawn: list[Any]) -> None:
    image = np.zeros((8, 6, 3), dtype=np.uint8)
    grey = np.zeros((8, 6), dtype=np.uint8)
    distances = np.array([[0.0, 0.4, 0.9], [0.7, np.inf, np.inf]])
    path = plot_search_results(
        [image, grey],
        [[image, image, grey], [image]],
        distances,
        tmp_path / "grid.png",
        threshold=0.5,
        query_names=["a.jpg", "b.jpg"],
    )
    assert path.stat().st_size > 0
    (titles,) = drawn
    # Row 1: query, then 0 and 0.4 accepted, 0.9 "no match"; row 2: its nearest is past it.
    assert titles[:4] == ["a.jpg\nquery", "0", "0.4", "0.9\nno match"]
    assert titles[4:6] == ["b.jpg\nNO MATCH", "0.7\nno match"]


def test_roc_plot(tmp_path: Path) -> None:
    path = plot_roc([0.0, 1e-4, 1e-2, 1.0], [0.0, 0.5, 0.9, 1.0], tmp_path / "roc.png",
                    operating_points=[(1e-2, 1e-2, 0.9)])  # fmt: skip
    assert path.stat().st_size > 0
    with pytest.raises(PlpVizError, match="rates in"):
        plot_roc([0.0, 2.0], [0.0, 1.0], tmp_path / "bad.png")
    with pytest.raises(PlpVizError, match="one length"):
        plot_roc([0.0, 1.0], [0.0], tmp_path / "bad.png")


def test_search_grid_bad_input(tmp_path: Path) -> None:
    image = np.zeros((8, 6, 3), dtype=np.uint8)
    with pytest.raises(PlpVizError, match="one row of distances per query"):
        plot_search_results([image], [[image]], np.zeros((2, 1)), tmp_path / "x.png")
    with pytest.raises(PlpVizError, match=r"query_images\[0\] must be"):
        plot_search_results([np.zeros((8, 6, 2))], [[image]], np.zeros((1, 1)), tmp_path / "x.png")
