"""Pairwise attributions: a model that looks at one region is explained by that region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from plp_viz import PlpVizError, explain_pairs, plot_pair_attributions
from plp_viz._attributions import similarity

SIDE = 12
# The model sees rows 2..5 and columns 6..11 only: off-centre and not square (a transposed or
# flipped map would miss it), aligned to its stride-2 convolution's cells.
ROWS, COLUMNS = slice(2, 6), slice(6, 12)
METRICS = ["cosine", "euclidean"]


class RegionEmbedder(nn.Module):
    """An embedding-only model: mask -> conv 2x2 stride 2 -> ReLU -> global average.

    The mask is 1 on the region and 0 elsewhere, so the embedding, and any similarity of two
    embeddings, depends on the region's pixels only; Grad-CAM's 6 x 6 maps are resized to the
    12 x 12 image. ``smooth``: a biased conv and tanh, so that the embedding is not positively
    homogeneous (a ReLU net without biases has f(a x) = a f(x): its cosine similarity is
    constant along integrated gradients' path from black, and jumps at black itself).
    """

    def __init__(self, smooth: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        mask = torch.zeros((1, 1, SIDE, SIDE), dtype=torch.float64)
        mask[..., ROWS, COLUMNS] = 1.0
        self.register_buffer("mask", mask)
        conv = nn.Conv2d(3, 16, 2, stride=2, bias=smooth)
        self.features = nn.Sequential(conv, nn.Tanh() if smooth else nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images * self.mask).mean(dim=(2, 3))


class WithClassifier(nn.Module):
    """The same embedding behind a classifier: forward gives logits, ``embed`` embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.body = RegionEmbedder()
        self.classifier = nn.Linear(16, 3)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(images))


def pairs(count: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and gallery images with random pixels everywhere, the region included."""
    generator = torch.Generator().manual_seed(3)
    shape = (count, 3, SIDE, SIDE)
    return (
        torch.randn(shape, generator=generator, dtype=torch.float64),
        torch.randn(shape, generator=generator, dtype=torch.float64),
    )


def region_share(attribution: torch.Tensor) -> torch.Tensor:
    """Per image, the share of the absolute attribution inside the region (NaN for none)."""
    mass = attribution.abs().sum(dim=(1, 2, 3))
    return attribution[..., ROWS, COLUMNS].abs().sum(dim=(1, 2, 3)) / mass


@pytest.mark.parametrize("metric", METRICS)
def test_the_region_carries_the_integrated_gradients_of_both_images(metric):
    model = RegionEmbedder().double().eval()
    queries, gallery = pairs()
    result = explain_pairs(model, queries, gallery, metric=metric, n_steps=32)
    assert result.query.shape == queries.shape and result.gallery.shape == gallery.shape
    # The region is 24 of 144 pixels; outside it the gradient is 0, so is the attribution.
    for side in (result.query, result.gallery):
        torch.testing.assert_close(region_share(side), torch.ones(len(side), dtype=side.dtype))
    with torch.no_grad():
        expected = similarity(model(queries), model(gallery), metric)
    torch.testing.assert_close(result.similarity, expected)


@pytest.mark.parametrize("metric", METRICS)
def test_the_region_carries_the_gradcam_of_both_images(metric):
    model = RegionEmbedder().double().eval()
    queries, gallery = pairs()
    result = explain_pairs(model, queries, gallery, metric=metric, algorithm="layer_gradcam")
    for side in (result.query, result.gallery):
        shares = region_share(side)
        drawn = ~shares.isnan()
        # Grad-CAM keeps positive evidence only (its ReLU): a pair may have none at all.
        assert drawn.sum() >= len(side) // 2
        # Bilinear resizing of the 6 x 6 map spreads at most a quarter of a cell's mass into
        # the ring of pixels around the region: three quarters at least stay inside.
        assert (shares[drawn] >= 0.75).all(), shares


@pytest.mark.parametrize("metric", METRICS)
def test_integrated_gradients_hold_the_other_image_fixed(metric):
    # Completeness: the query's attributions sum to s(q, g) - s(black, g), the gallery's to
    # s(q, g) - s(q, black): each side is explained against the other one's embedding.
    model = RegionEmbedder(smooth=True).double().eval()
    queries, gallery = pairs()
    result = explain_pairs(model, queries, gallery, metric=metric, n_steps=128)
    with torch.no_grad():
        q, g, black = model(queries), model(gallery), model(torch.zeros_like(queries))
        s = similarity(q, g, metric)
        query_gain = s - similarity(black, g, metric)
        gallery_gain = s - similarity(q, black, metric)
    totals = result.query.sum(dim=(1, 2, 3)), result.gallery.sum(dim=(1, 2, 3))
    torch.testing.assert_close(totals[0], query_gain, rtol=0, atol=1e-3)
    torch.testing.assert_close(totals[1], gallery_gain, rtol=0, atol=1e-3)
    assert not torch.allclose(query_gain, gallery_gain, atol=1e-2)  # the two sides differ


@pytest.mark.parametrize("metric", METRICS)
def test_gradcam_on_the_similarity_by_hand(metric):
    # Grad-CAM of s(., g) on the conv: weights = spatial mean of ds/dA, map = ReLU(sum w A).
    model = RegionEmbedder().double().eval()
    queries, gallery = pairs(4)
    result = explain_pairs(model, queries, gallery, algorithm="layer_gradcam", metric=metric)
    captured = {}
    hook = model.features[0].register_forward_hook(lambda m, a, out: captured.update(out=out))
    drawn = 0
    try:
        for side, images, others in (("query", queries, gallery), ("gallery", gallery, queries)):
            for i in range(len(images)):
                reference = model(others[i : i + 1]).detach()
                value = similarity(model(images[i : i + 1]), reference, metric)
                (grad,) = torch.autograd.grad(value.sum(), captured["out"])
                weights = grad.mean(dim=(2, 3), keepdim=True)
                cam = (weights * captured["out"]).sum(dim=1, keepdim=True).clamp(min=0)
                cam = F.interpolate(cam, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
                expected = cam[0, 0].detach()
                for channel in range(3):  # the map is repeated over the image's channels
                    torch.testing.assert_close(getattr(result, side)[i, channel], expected)
                drawn += int(expected.abs().sum() > 0)
    finally:
        hook.remove()
    assert drawn >= 2  # the comparison is not between empty maps only


def test_models_with_a_classifier_are_explained_through_their_embedding():
    queries, gallery = pairs(2)
    plain = RegionEmbedder().double().eval()
    with_head = WithClassifier().double().eval()
    with_head.body.load_state_dict(plain.state_dict())
    expected = explain_pairs(plain, queries, gallery, n_steps=16)
    got = explain_pairs(with_head, queries, gallery, output=with_head.embed, n_steps=16)
    torch.testing.assert_close(got.query, expected.query)
    torch.testing.assert_close(got.gallery, expected.gallery)


def test_bad_input():
    model = RegionEmbedder().double().eval()
    queries, gallery = pairs(2)
    with pytest.raises(PlpVizError, match="unknown metric 'manhattan'"):
        explain_pairs(model, queries, gallery, metric="manhattan")
    with pytest.raises(PlpVizError, match="one gallery image per query"):
        explain_pairs(model, queries, gallery[:1])
    with pytest.raises(PlpVizError, match="batch_size must be >= 1"):
        explain_pairs(model, queries, gallery, batch_size=0)
    with pytest.raises(PlpVizError, match="unknown attribution 'gradcam'"):
        explain_pairs(model, queries, gallery, algorithm="gradcam")
    result = explain_pairs(model, queries, gallery, n_steps=4)
    with pytest.raises(PlpVizError, match="query_labels has 1 items for 2 pairs"):
        plot_pair_attributions(queries, gallery, result, "x.png", query_labels=[0])
    with pytest.raises(PlpVizError, match="differ"):
        plot_pair_attributions(queries[:1], gallery[:1], result, "x.png")


def test_plot_draws_one_row_per_pair(tmp_path: Path):
    model = RegionEmbedder().double().eval()
    queries, gallery = pairs(3)
    result = explain_pairs(model, queries, gallery, n_steps=8)
    path = plot_pair_attributions(
        queries,
        gallery,
        result,
        tmp_path / "pairs.png",
        query_labels=[0, 1, 2],
        gallery_labels=[0, 2, 2],
        captions=["best true match", "false top-1", "best true match"],
        class_names=["zero", "one", "two"],
    )
    with Image.open(path) as image:
        width, height = image.size
    assert height > 2 * width / 4  # three rows of four square cells
    single = plot_pair_attributions(
        queries[:1],
        gallery[:1],
        explain_pairs(model, queries[:1], gallery[:1], n_steps=8),
        tmp_path / "one.png",
    )
    with Image.open(single) as image:
        assert image.size[1] < height / 2
    assert np.asarray(Image.open(path)).std() > 0
