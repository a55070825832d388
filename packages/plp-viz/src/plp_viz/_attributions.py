"""Captum attributions of images and their overlays."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plp_viz._errors import PlpVizError
from plp_viz._plots import _save, pyplot

__all__ = ["ALGORITHMS", "available_attributions", "explain", "find_layer", "plot_attributions"]

ALGORITHMS = (
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "gradient_shap",
    "occlusion",
    "layer_gradcam",
)


def available_attributions() -> list[str]:
    """Return the names :func:`explain` accepts."""
    return list(ALGORITHMS)


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module called ``name`` (dotted, as in ``named_modules``), or raise."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise PlpVizError(f"no layer named {name!r} in {type(model).__name__}{hint}")
    return modules[name]


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None,
    *,
    algorithm: str = "integrated_gradients",
    layer: str | None = None,
    reference: torch.Tensor | None = None,
    batch_size: int = 32,
    **kwargs: Any,
) -> torch.Tensor:
    """Return attributions with the shape of ``images`` for ``algorithm`` (captum).

    For a classifier, ``targets`` are the class indices to explain. For an embedding model
    give ``reference`` (an embedding, or one per image): the explained output is then the
    cosine similarity of the model's output to it, and ``targets`` is ignored.
    ``layer_gradcam`` needs ``layer`` (a dotted module name); its map is upsampled to the
    image size and repeated over channels. ``kwargs`` go to captum's ``attribute``.

    Images are explained ``batch_size`` at a time (each sample's attribution depends only on
    that sample), with a tqdm progress bar on stderr when it is a terminal and there is more
    than one batch.
    """
    from tqdm import tqdm

    if algorithm not in ALGORITHMS:
        raise PlpVizError(f"unknown attribution {algorithm!r}; available: {', '.join(ALGORITHMS)}")
    if images.dim() != 4:
        raise PlpVizError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if batch_size < 1:
        raise PlpVizError(f"batch_size must be >= 1, got {batch_size}")
    if algorithm == "layer_gradcam" and not layer:
        raise PlpVizError("layer_gradcam needs a layer name, e.g. backbone.features.6")
    target: torch.Tensor | None = None
    if targets is not None and reference is None:
        target = torch.as_tensor(targets)
        if target.dim() > 0 and len(target) != len(images):
            raise PlpVizError(f"{len(target)} targets for {len(images)} images")
    if reference is not None:
        reference = reference.detach()
    per_image_reference = (
        reference is not None and reference.dim() == 2 and len(reference) == len(images) > 1
    )
    was_training = model.training
    model.eval()
    starts = range(0, len(images), batch_size)
    parts = []
    try:
        for start in tqdm(
            starts,
            desc=f"attributions ({algorithm})",
            unit="batch",
            disable=len(starts) < 2 or not sys.stderr.isatty(),
        ):
            chunk = slice(start, start + batch_size)
            chunk_target = target[chunk] if target is not None and target.dim() > 0 else target
            chunk_reference = reference
            if per_image_reference and reference is not None:
                chunk_reference = reference[chunk]
            parts.append(
                _explain_batch(
                    model, images[chunk], chunk_target, algorithm, layer, chunk_reference, kwargs
                )
            )
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros_like(images)


def _explain_batch(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor | None,
    algorithm: str,
    layer: str | None,
    reference: torch.Tensor | None,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """Attribute one batch of ``images`` (the model already in eval mode)."""
    import captum.attr as attr

    kwargs = dict(kwargs)
    forward: Callable[..., torch.Tensor] = model
    if reference is not None:
        fixed = reference

        def forward(x: torch.Tensor) -> torch.Tensor:
            output = model(x)
            return F.cosine_similarity(output, fixed.expand_as(output), dim=1)

    images = images.detach().clone().requires_grad_(True)
    if algorithm == "integrated_gradients":
        result = attr.IntegratedGradients(forward).attribute(
            images, target=target, baselines=torch.zeros_like(images), **kwargs
        )
    elif algorithm == "saliency":
        result = attr.Saliency(forward).attribute(images, target=target, abs=True, **kwargs)
    elif algorithm == "input_x_gradient":
        result = attr.InputXGradient(forward).attribute(images, target=target, **kwargs)
    elif algorithm == "gradient_shap":
        generator = torch.Generator().manual_seed(0)
        baselines = torch.cat(
            [
                torch.zeros_like(images[:1]),
                0.1 * torch.randn(images[:1].shape, generator=generator),
            ]
        )
        kwargs.setdefault("n_samples", 16)
        result = attr.GradientShap(forward).attribute(
            images, baselines=baselines, target=target, **kwargs
        )
    elif algorithm == "occlusion":
        size = max(1, min(images.shape[2:]) // 8)
        kwargs.setdefault("sliding_window_shapes", (images.shape[1], size, size))
        result = attr.Occlusion(forward).attribute(images, target=target, **kwargs)
    else:
        assert layer is not None
        cam = attr.LayerGradCam(forward, find_layer(model, layer)).attribute(
            images, target=target, **kwargs
        )
        upsampled = attr.LayerAttribution.interpolate(cam, tuple(images.shape[2:]))
        result = upsampled.expand(-1, images.shape[1], -1, -1)
    return result.detach()


def _displayable(image: np.ndarray) -> np.ndarray:
    image = image.transpose(1, 2, 0) if image.shape[0] in (1, 3) else image
    image = image - image.min()
    image = image / (image.max() or 1.0)
    return image[..., 0] if image.shape[-1] == 1 else image


def plot_attributions(
    images: torch.Tensor,
    attributions: torch.Tensor,
    path: str | Path,
    *,
    true_labels: Sequence[int] | None = None,
    predicted_labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Draw, per sample, the image, the attribution heat-map and their blend; return the path."""
    if images.shape != attributions.shape:
        raise PlpVizError(
            f"images {tuple(images.shape)} and attributions {tuple(attributions.shape)} differ"
        )

    def name(label: int) -> str:
        return class_names[label] if class_names is not None else str(label)

    plt = pyplot()
    count = len(images)
    figure, axes = plt.subplots(count, 3, figsize=(6.6, 2.2 * count), squeeze=False)
    for row in range(count):
        image = _displayable(images[row].detach().cpu().numpy())
        heat = attributions[row].detach().cpu().abs().sum(0).numpy()
        heat = heat / (heat.max() or 1.0)
        grey = image if image.ndim == 2 else image.mean(-1)
        axes[row][0].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[row][1].imshow(heat, cmap="inferno")
        axes[row][2].imshow(grey, cmap="gray")
        axes[row][2].imshow(heat, cmap="inferno", alpha=0.55)
        title = []
        if true_labels is not None:
            title.append(f"true {name(int(true_labels[row]))}")
        if predicted_labels is not None:
            title.append(f"predicted {name(int(predicted_labels[row]))}")
        axes[row][0].set_title(", ".join(title), fontsize=8)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0][1].set_title("attribution", fontsize=8)
    axes[0][2].set_title("overlay", fontsize=8)
    return _save(figure, path)
