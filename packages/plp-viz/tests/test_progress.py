"""Progress bars of long work: shown on a terminal, quiet otherwise; batching changes nothing."""

import io
import sys

import numpy as np
import pytest
import torch
from torch import nn

from plp_viz import PlpVizError, aligned_umap_2d, explain


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class TinyEmbedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("algorithm", ["saliency", "integrated_gradients", "layer_gradcam"])
def test_explain_in_batches_equals_one_batch(algorithm):
    model, images = TinyEmbedder(), torch.randn(7, 1, 8, 8)
    layer = "features.0" if algorithm == "layer_gradcam" else None
    targets = [0, 1, 2, 3, 4, 0, 1]
    whole = explain(model, images, targets, algorithm=algorithm, layer=layer, batch_size=64)
    batched = explain(model, images, targets, algorithm=algorithm, layer=layer, batch_size=3)
    torch.testing.assert_close(batched, whole, rtol=1e-5, atol=1e-6)


def test_explain_in_batches_with_a_reference_per_image():
    model, images = TinyEmbedder(), torch.randn(5, 1, 8, 8)
    reference = torch.randn(5, 5)
    whole = explain(model, images, None, algorithm="saliency", reference=reference)
    batched = explain(model, images, None, algorithm="saliency", reference=reference, batch_size=2)
    torch.testing.assert_close(batched, whole)
    one = explain(model, images, None, algorithm="saliency", reference=reference[0], batch_size=2)
    assert one.shape == images.shape


def test_explain_bad_batch_size_and_targets():
    model, images = TinyEmbedder(), torch.randn(3, 1, 8, 8)
    with pytest.raises(PlpVizError, match="batch_size"):
        explain(model, images, [0, 1, 2], batch_size=0)
    with pytest.raises(PlpVizError, match="targets"):
        explain(model, images, [0, 1], algorithm="saliency")


def test_explain_progress_bar_only_on_a_terminal(monkeypatch):
    model, images = TinyEmbedder(), torch.randn(4, 1, 8, 8)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    explain(model, images, [0, 1, 2, 3], algorithm="saliency", batch_size=2)
    assert "attributions (saliency)" in terminal.getvalue()
    assert "2/2" in terminal.getvalue()
    pipe = Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    explain(model, images, [0, 1, 2, 3], algorithm="saliency", batch_size=2)
    assert pipe.getvalue() == ""


def test_aligned_umap_progress_bar_only_on_a_terminal(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    sets = [features, features + 0.01 * rng.normal(size=features.shape)]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    first = aligned_umap_2d(sets, seed=1)
    assert "AlignedUMAP" in terminal.getvalue() and "3/3" in terminal.getvalue()
    pipe = Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    second = aligned_umap_2d(sets, seed=1)
    assert pipe.getvalue() == ""
    # The bar changes nothing: same layout with and without it, and umap-learn is restored.
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.points, b.points)
    import umap
    import umap.aligned_umap

    assert umap.aligned_umap.UMAP is umap.UMAP
