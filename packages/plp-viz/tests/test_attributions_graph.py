import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from plp_viz import (
    PlpVizError,
    available_attributions,
    explain,
    layer_summary,
    model_graph,
    plot_attributions,
)


def grey_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


class OnePixel(nn.Module):
    """Class 0's score is pixel (2, 5); class 1's is constant."""

    def forward(self, x):
        return torch.stack([x[:, 0, 2, 5] * 3.0, torch.zeros(len(x))], dim=1)


@pytest.mark.parametrize("algorithm", available_attributions())
def test_every_algorithm_gives_attributions_of_image_shape(algorithm, tmp_path: Path):
    model, images = TinyNet(), torch.randn(3, 1, 8, 8)
    layer = "features.0" if algorithm == "layer_gradcam" else None
    result = explain(model, images, [0, 1, 2], algorithm=algorithm, layer=layer)
    assert result.shape == images.shape and torch.isfinite(result).all()
    path = plot_attributions(
        images,
        result,
        tmp_path / f"{algorithm}.png",
        true_labels=[0, 1, 2],
        predicted_labels=[0, 1, 1],
    )
    assert grey_pixels(path).std() > 5


def test_integrated_gradients_completeness():
    model = TinyNet().double()
    images = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    attributions = explain(model, images, [1, 1], n_steps=200)
    with torch.no_grad():
        gain = model(images)[:, 1] - model(torch.zeros_like(images))[:, 1]
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), gain, rtol=1e-3, atol=1e-3)


def test_occlusion_highlights_the_one_pixel_the_model_reads():
    images = torch.rand(2, 1, 8, 8) + 0.5
    attributions = explain(
        OnePixel(), images, [0, 0], algorithm="occlusion", sliding_window_shapes=(1, 1, 1)
    )
    for row in attributions:
        assert tuple(np.unravel_index(row.abs().argmax().item(), row.shape)) == (0, 2, 5)
        assert row.abs().sum() == pytest.approx(row.abs()[0, 2, 5].item())


def test_embedding_model_with_reference():
    model, images = TinyNet(), torch.randn(2, 1, 8, 8)
    reference = model(images[:1]).detach()
    result = explain(model, images, None, algorithm="saliency", reference=reference)
    assert result.shape == images.shape and result.abs().sum() > 0


def test_errors():
    model, images = TinyNet(), torch.randn(1, 1, 8, 8)
    with pytest.raises(
        PlpVizError, match=r"unknown attribution 'ig'; available: integrated_gradients"
    ):
        explain(model, images, [0], algorithm="ig")
    with pytest.raises(
        PlpVizError, match=r"no layer named 'features\.9'.*close names: .*features\.0"
    ):
        explain(model, images, [0], algorithm="layer_gradcam", layer="features.9")
    with pytest.raises(PlpVizError, match="needs a layer name"):
        explain(model, images, [0], algorithm="layer_gradcam")
    with pytest.raises(PlpVizError, match=r"images must be \(N, C, H, W\)"):
        explain(model, images[0], [0])
    with pytest.raises(PlpVizError, match="differ"):
        plot_attributions(images, torch.zeros(1, 1, 4, 4), "unused.png")


def test_graph_writes_source_and_drawings_when_dot_exists(tmp_path: Path, monkeypatch, capsys):
    model = TinyNet()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    files = model_graph(model, torch.zeros(1, 1, 8, 8), tmp_path / "nodot" / "model")
    assert files.gv.is_file() and files.svg is None and not files.dot_found
    assert "features.0.weight" in files.gv.read_text()
    assert "Graphviz's `dot` was not found" in capsys.readouterr().err
    monkeypatch.undo()
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed here (CI installs it)")
    files = model_graph(model, torch.zeros(1, 1, 8, 8), tmp_path / "dot" / "model")
    assert files.dot_found and files.gv.is_file() and files.png.is_file()
    assert "classifier.weight" in files.svg.read_text()


def test_layer_summary_counts_parameters():
    summary = layer_summary(TinyNet())
    assert "features.0  Conv2d" in summary and "40" in summary  # 4*1*3*3 + 4
    assert "classifier  Linear" in summary and "15" in summary  # 4*3 + 3
    assert summary.splitlines()[-1].startswith("total") and "55 (55 trainable)" in summary
