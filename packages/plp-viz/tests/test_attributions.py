"""Every attribution algorithm on a classifier and on an embedding model, checked by hand."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from plp_viz import (
    PlpVizError,
    available_attributions,
    default_layer,
    explain,
    plot_attributions,
)
from plp_viz._attributions import ATTRIBUTIONS, LAYER_ALGORITHMS

SIDE = 6


class TinyClassifier(nn.Module):
    """conv (same size) -> ReLU -> global average -> 3 class scores."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class TinyEmbedder(nn.Module):
    """conv (same size) -> tanh (smooth: path integrals converge fast) -> flatten -> 5-d."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh())
        self.embedding = nn.Linear(3 * SIDE * SIDE, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x).flatten(1))


class OnePixel(nn.Module):
    """Class 0's score is pixel (2, 5); class 1's is constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 2, 5] * 3.0, torch.zeros(len(x))], dim=1)


Problem = tuple[nn.Module, torch.Tensor, dict, Callable[[torch.Tensor, int], torch.Tensor]]


def problem(kind: str, count: int = 3) -> Problem:
    """Return (model, images, explain's arguments, f): f(x, i) is the scalar explained for i."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(count, 1, SIDE, SIDE, generator=generator, dtype=torch.float64)
    if kind == "classifier":
        model = TinyClassifier().double().eval()
        targets = torch.arange(count) % 3
        return model, images, {"targets": targets}, lambda x, i: model(x)[:, targets[i]]
    model = TinyEmbedder().double().eval()
    references = torch.randn(count, 5, generator=generator, dtype=torch.float64)

    def similarity(x: torch.Tensor, i: int) -> torch.Tensor:
        return F.cosine_similarity(model(x), references[i : i + 1], dim=1)

    return model, images, {"targets": None, "reference": references}, similarity


def gradient(f: Callable[[torch.Tensor, int], torch.Tensor], image: torch.Tensor, i: int):
    x = image[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x, i).sum(), x)
    return grad[0]


def gain_from_black(f, images: torch.Tensor) -> torch.Tensor:
    """f(x) - f(0) per image: what completeness says the attributions sum to."""
    with torch.no_grad():
        return torch.stack(
            [(f(x[None], i) - f(torch.zeros_like(x[None]), i))[0] for i, x in enumerate(images)]
        )


def check_saliency(result, images, f, model):
    for i, image in enumerate(images):
        torch.testing.assert_close(result[i], gradient(f, image, i).abs())


def check_input_x_gradient(result, images, f, model):
    for i, image in enumerate(images):
        torch.testing.assert_close(result[i], image * gradient(f, image, i))


def check_completeness(result, images, f, model, tolerance=1e-3):
    totals = result.sum(dim=(1, 2, 3))
    torch.testing.assert_close(totals, gain_from_black(f, images), rtol=0, atol=tolerance)


def check_occlusion(result, images, f, model):
    # one-pixel window, zero baseline: attribution = f(x) - f(x with that pixel set to 0)
    with torch.no_grad():
        for i, image in enumerate(images):
            for row in range(SIDE):
                for column in range(SIDE):
                    occluded = image.clone()
                    occluded[0, row, column] = 0.0
                    drop = f(image[None], i) - f(occluded[None], i)
                    assert result[i, 0, row, column].item() == pytest.approx(drop.item(), abs=1e-7)


def check_gradcam(result, images, f, model):
    # Selvaraju et al.: weights = spatial mean of d f / d A, map = ReLU(sum_c weight_c A_c)
    raw_maps = []
    captured = {}
    hook = model.features.register_forward_hook(lambda m, a, out: captured.update(out=out))
    for i, image in enumerate(images):
        value = f(image[None], i)
        (grad,) = torch.autograd.grad(value.sum(), captured["out"])
        weights = grad.mean(dim=(2, 3), keepdim=True)
        raw = (weights * captured["out"]).sum(dim=1)[0].detach()
        raw_maps.append(raw)
        torch.testing.assert_close(result[i, 0], raw.clamp(min=0))
    hook.remove()
    assert min(raw.min().item() for raw in raw_maps) < 0  # the ReLU did remove something


OPTIONS = {
    "integrated_gradients": {"n_steps": 64},
    "layer_integrated_gradients": {"n_steps": 64},
    "layer_conductance": {"n_steps": 256},
    "gradient_shap": {"n_samples": 2000, "baselines": None},  # black baseline, filled in below
    "occlusion": {"sliding_window_shapes": (1, 1, 1)},
}
LAYERS = {name: "features" for name in LAYER_ALGORITHMS}
CHECKS = {
    "integrated_gradients": check_completeness,
    "saliency": check_saliency,
    "input_x_gradient": check_input_x_gradient,
    # expected gradients from a black baseline: completeness holds in expectation only
    "gradient_shap": lambda r, x, f, m: check_completeness(r, x, f, m, tolerance=0.02),
    "occlusion": check_occlusion,
    "layer_gradcam": check_gradcam,
    # the layer's output is the image size: no resizing, so the layer's total is kept
    "layer_integrated_gradients": check_completeness,
    # conductance's chain-rule sum converges as 1 / n_steps
    "layer_conductance": lambda r, x, f, m: check_completeness(r, x, f, m, tolerance=2e-3),
}


def test_every_algorithm_has_a_check():
    assert sorted(CHECKS) == sorted(available_attributions())


def options_for(algorithm: str, images: torch.Tensor) -> dict:
    options = dict(OPTIONS.get(algorithm, {}))
    if "baselines" in options:
        options["baselines"] = torch.zeros_like(images[:1])
    return options


@pytest.mark.parametrize("kind", ["classifier", "embedding"])
@pytest.mark.parametrize("algorithm", available_attributions())
def test_algorithm_on_model(algorithm: str, kind: str):
    torch.manual_seed(0)
    np.random.seed(0)  # captum's gradient SHAP draws with numpy's global generator
    model, images, arguments, f = problem(kind)
    result = explain(
        model,
        images,
        algorithm=algorithm,
        layer=LAYERS.get(algorithm),
        **arguments,
        **options_for(algorithm, images),
    )
    assert result.shape == images.shape and torch.isfinite(result).all()
    assert result.abs().sum() > 0
    CHECKS[algorithm](result, images, f, model)


@pytest.mark.parametrize("kind", ["classifier", "embedding"])
@pytest.mark.parametrize("algorithm", sorted(set(available_attributions()) - {"gradient_shap"}))
def test_batches_give_what_single_images_give(algorithm: str, kind: str):
    model, images, arguments, _ = problem(kind, count=5)
    options = {"n_steps": 8} if "integrated" in algorithm or "conductance" in algorithm else {}
    if algorithm == "occlusion":
        options = {"sliding_window_shapes": (1, 2, 2), "strides": 2}
    batched = explain(model, images, algorithm=algorithm, batch_size=2, **arguments, **options)
    singles = []
    for i in range(len(images)):
        one = {
            "targets": None if arguments["targets"] is None else arguments["targets"][i : i + 1],
            "reference": None if kind == "classifier" else arguments["reference"][i],
        }
        singles.append(explain(model, images[i : i + 1], algorithm=algorithm, **one, **options))
    torch.testing.assert_close(batched, torch.cat(singles))


@pytest.mark.parametrize("algorithm", ["integrated_gradients", "gradient_shap"])
def test_sixteen_images_of_an_embedding_model(algorithm: str):
    # the reported crash: per-image references met 16 x 50 expanded inputs
    model, images, arguments, _ = problem("embedding", count=16)
    result = explain(model, images, algorithm=algorithm, **arguments)
    assert result.shape == images.shape and torch.isfinite(result).all()


def test_saliency_of_a_linear_model_is_the_absolute_weight():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 3))
    images = torch.randn(2, 1, SIDE, SIDE)
    result = explain(model, images, [2, 0], algorithm="saliency")
    weights = model[1].weight.detach()
    torch.testing.assert_close(result[0, 0], weights[2].abs().reshape(SIDE, SIDE))
    torch.testing.assert_close(result[1, 0], weights[0].abs().reshape(SIDE, SIDE))


def test_occlusion_highlights_the_one_pixel_the_model_reads():
    images = torch.rand(2, 1, 8, 8) + 0.5
    attributions = explain(
        OnePixel(), images, [0, 0], algorithm="occlusion", sliding_window_shapes=(1, 1, 1)
    )
    for row in attributions:
        assert tuple(np.unravel_index(row.abs().argmax().item(), row.shape)) == (0, 2, 5)
        assert row.abs().sum() == pytest.approx(row.abs()[0, 2, 5].item())


def test_output_function_is_what_is_explained():
    # a classifier whose embedding is explained through ``output``: the same as a model whose
    # forward is that embedding
    classifier = TinyClassifier().eval()
    images = torch.randn(3, 1, SIDE, SIDE)
    reference = torch.randn(4)

    def embedding(x: torch.Tensor) -> torch.Tensor:
        return classifier.features(x).mean(dim=(2, 3))

    class Embedder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return embedding(x)

    through_output = explain(classifier, images, None, reference=reference, output=embedding)
    direct = explain(Embedder(), images, None, reference=reference)
    torch.testing.assert_close(through_output, direct)


def test_layer_methods_default_to_the_last_convolution():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.Flatten()
    )
    assert default_layer(model) == "2"
    images = torch.randn(2, 1, SIDE, SIDE)
    torch.testing.assert_close(
        explain(model, images, [0, 1], algorithm="layer_gradcam"),
        explain(model, images, [0, 1], algorithm="layer_gradcam", layer="2"),
    )


def test_layer_maps_are_resized_to_the_image():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 9, 3)
    )
    images = torch.randn(2, 3, SIDE, SIDE).mean(dim=1, keepdim=True).expand(-1, 1, -1, -1)
    result = explain(model, images, [0, 1], algorithm="layer_integrated_gradients", n_steps=4)
    assert result.shape == images.shape and torch.isfinite(result).all()


def test_errors():
    model, images = TinyClassifier(), torch.randn(2, 1, SIDE, SIDE)
    with pytest.raises(
        PlpVizError, match=r"unknown attribution 'ig'; available: .*integrated_gradients"
    ):
        explain(model, images, [0, 0], algorithm="ig")
    with pytest.raises(
        PlpVizError, match=r"no layer named 'features\.9'.*close names: .*features\.0"
    ):
        explain(model, images, [0, 0], algorithm="layer_gradcam", layer="features.9")
    with pytest.raises(PlpVizError, match=r"layer 'classifier' gives attributions of shape"):
        explain(model, images, [0, 0], algorithm="layer_conductance", layer="classifier")
    with pytest.raises(PlpVizError, match="OnePixel has no Conv2d"):
        explain(OnePixel(), images, [0, 0], algorithm="layer_gradcam")
    with pytest.raises(PlpVizError, match=r"images must be \(N, C, H, W\)"):
        explain(model, images[0], [0])
    with pytest.raises(PlpVizError, match="3 targets for 2 images"):
        explain(model, images, [0, 1, 2])
    with pytest.raises(PlpVizError, match=r"give targets .* or a reference"):
        explain(model, images, None)
    with pytest.raises(PlpVizError, match=r"reference must be .* got \(3, 3\)"):
        explain(model, images, None, reference=torch.zeros(3, 3))
    with pytest.raises(PlpVizError, match="batch_size must be >= 1, got 0"):
        explain(model, images, [0, 0], batch_size=0)
    with pytest.raises(PlpVizError, match="attribution 'saliency' is already registered"):
        ATTRIBUTIONS.register("saliency")(lambda batch, options: batch.images)
    with pytest.raises(PlpVizError, match="differ"):
        plot_attributions(images, torch.zeros(2, 1, 4, 4), "unused.png")


def grey_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def test_plot_attributions_names_classes(tmp_path: Path, monkeypatch):
    from plp_viz import _attributions

    titles = []
    real_save = _attributions._save

    def spy(figure, path):
        titles.extend(axis.get_title() for axis in figure.axes if axis.get_title())
        return real_save(figure, path)

    monkeypatch.setattr(_attributions, "_save", spy)
    model, images = TinyClassifier(), torch.randn(3, 1, 8, 8)
    result = explain(model, images, [0, 1, 2], algorithm="saliency")
    path = plot_attributions(
        images,
        result,
        tmp_path / "saliency.png",
        true_labels=[0, 1, 2],
        predicted_labels=[0, 1, 1],
        class_names=["cat", "dog", "bird"],
    )
    assert grey_pixels(path).std() > 5
    assert "true cat, predicted cat" in titles and "true bird, predicted dog" in titles
    with pytest.raises(PlpVizError, match="the labels holds label 3 but class_names has 3"):
        plot_attributions(
            images, result, tmp_path / "x.png", true_labels=[0, 1, 3], class_names=["a", "b", "c"]
        )
