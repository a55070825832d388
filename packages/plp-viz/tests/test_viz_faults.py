"""Bad requests and failed writes in plp-viz: one line each, nothing half-written."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib.figure
import numpy as np
import pytest
import torch
from torch import nn

from plp_viz import (
    PlpVizError,
    explain,
    model_graph,
    plot_attributions,
    plot_embedding,
)
from plp_viz._attributions import LAYER_ALGORITHMS


class TupleLayer(nn.Module):
    """A block whose output is a pair of feature maps (as some backbones' stages are)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, 2 * y


class PairNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pair = TupleLayer()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.pair(x)
        return self.fc((a + b).mean((2, 3)))


@pytest.mark.parametrize("algorithm", LAYER_ALGORITHMS)
def test_a_layer_whose_output_is_a_tuple_is_one_line(algorithm: str) -> None:
    with pytest.raises(PlpVizError) as caught:
        explain(PairNet(), torch.randn(2, 3, 8, 8), [0, 1], algorithm=algorithm, layer="pair")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("layer 'pair' outputs a tuple of 2 tensors; layer methods need")
    # the convolution inside it is a fine layer
    result = explain(
        PairNet(), torch.randn(2, 3, 8, 8), [0, 1], algorithm=algorithm, layer="pair.conv"
    )
    assert result.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("algorithm", ["saliency", "integrated_gradients", "occlusion"])
def test_a_layer_given_to_an_algorithm_that_takes_none_is_one_line(algorithm: str) -> None:
    with pytest.raises(PlpVizError) as caught:
        explain(PairNet(), torch.randn(1, 3, 8, 8), [0], algorithm=algorithm, layer="pair.conv")
    assert str(caught.value) == (
        f"{algorithm} attributes the input and takes no layer (given: 'pair.conv'); the "
        f"algorithms that take one are {', '.join(LAYER_ALGORITHMS)}"
    )


def _points() -> tuple[np.ndarray, np.ndarray]:
    return np.random.default_rng(0).normal(size=(12, 2)), np.arange(12) % 3


def test_a_plot_path_through_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plots").write_text("a file where the plots folder goes")
    with pytest.raises(PlpVizError) as caught:
        plot_embedding(*_points(), tmp_path / "plots" / "umap.png")
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / 'plots' / 'umap.png'}: ")
    assert "\n" not in message


def test_a_plot_on_a_full_disk_is_one_line_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "umap.png"
    plot_embedding(*_points(), path)
    before = path.read_bytes()
    savefig = matplotlib.figure.Figure.savefig

    def full(self: Any, file: Any, **kwargs: Any) -> None:
        savefig(self, file, **kwargs)  # half of it would do: the disk is full at the end
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(PlpVizError, match=rf"^cannot write {path}: disk full"):
        plot_embedding(*_points(), path, title="new")
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(PlpVizError, match=r"attributions\.png: disk full"):
        plot_attributions(images, images, tmp_path / "attributions.png")
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["umap.png"]


def test_plots_keep_their_format_by_suffix(tmp_path: Path) -> None:
    plot_embedding(*_points(), tmp_path / "a.png")
    plot_embedding(*_points(), tmp_path / "a.svg")
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "a.svg").read_bytes()[:1000]


def test_graph_failures_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import graphviz

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    (tmp_path / "graph").write_text("a file where the folder goes")
    with pytest.raises(PlpVizError, match=r"^cannot write .*graph/model\.gv: "):
        model_graph(model, torch.zeros(1, 1, 5, 5), tmp_path / "graph" / "model")

    def broken(self: Any, **kwargs: Any) -> bytes:
        raise graphviz.ExecutableNotFound(("dot", "-Tsvg"))

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graphviz.Digraph, "pipe", broken)
    with pytest.raises(PlpVizError) as caught:
        model_graph(model, torch.zeros(1, 1, 5, 5), tmp_path / "ok" / "model")
    message = str(caught.value)
    assert message.startswith(f"Graphviz's dot cannot draw {tmp_path / 'ok' / 'model.svg'}: ")
    assert "\n" not in message and (tmp_path / "ok" / "model.gv").is_file()
