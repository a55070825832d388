"""Captum attributions of images and their overlays."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plp_core import RANKING_METRICS, Registry, check_choice
from plp_viz._errors import PlpVizError
from plp_viz._names import check_class_names, label_text
from plp_viz._plots import _save, pyplot

__all__ = [
    "ALGORITHMS",
    "ATTRIBUTIONS",
    "LAYER_ALGORITHMS",
    "available_attributions",
    "default_layer",
    "explain",
    "find_layer",
    "plot_attributions",
    "similarity",
]


@dataclass(frozen=True)
class _Batch:
    """One batch to attribute: what captum's ``attribute`` needs besides the method."""

    forward: Callable[..., torch.Tensor]
    images: torch.Tensor
    target: torch.Tensor | None
    extra: tuple[torch.Tensor, ...] | None  # captum's additional_forward_args
    layer: nn.Module | None
    layer_name: str | None


_Method = Callable[[_Batch, dict[str, Any]], torch.Tensor]
ATTRIBUTIONS: Registry[torch.Tensor] = Registry(
    "attribution", error=PlpVizError, filled=("batch", "options")
)


def _zeros(batch: _Batch) -> torch.Tensor:
    return torch.zeros_like(batch.images)


@ATTRIBUTIONS.register("integrated_gradients")
def _integrated_gradients(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017) from a black image by default."""
    import captum.attr as attr

    options = {"baselines": _zeros(batch), **options}
    return attr.IntegratedGradients(batch.forward).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )


@ATTRIBUTIONS.register("saliency")
def _saliency(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Absolute gradient of the output (Simonyan et al. 2014)."""
    import captum.attr as attr

    options = {"abs": True, **options}
    return attr.Saliency(batch.forward).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )


@ATTRIBUTIONS.register("input_x_gradient")
def _input_x_gradient(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """The input times the gradient of the output."""
    import captum.attr as attr

    return attr.InputXGradient(batch.forward).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )


@ATTRIBUTIONS.register("gradient_shap")
def _gradient_shap(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Expected gradients (Lundberg and Lee 2017) from black and faintly noisy baselines."""
    import captum.attr as attr

    if "baselines" not in options:
        generator = torch.Generator().manual_seed(0)
        first = batch.images[:1]
        noise = 0.1 * torch.randn(first.shape, generator=generator, dtype=first.dtype)
        options["baselines"] = torch.cat([torch.zeros_like(first), noise.to(first.device)])
    options = {"n_samples": 16, **options}
    return attr.GradientShap(batch.forward).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )


@ATTRIBUTIONS.register("occlusion")
def _occlusion(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Output drop when a square patch (1/8 of the shorter side) is set to 0 (Zeiler 2014)."""
    import captum.attr as attr

    channels, height, width = batch.images.shape[1:]
    size = max(1, min(height, width) // 8)
    options = {"sliding_window_shapes": (channels, size, size), **options}
    return attr.Occlusion(batch.forward).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )


@ATTRIBUTIONS.register("layer_gradcam", needs_layer=True)
def _layer_gradcam(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU of the gradient-weighted sum of the layer's maps."""
    import captum.attr as attr

    options = {"relu_attributions": True, **options}
    cam = attr.LayerGradCam(batch.forward, batch.layer).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )
    return _layer_map(cam, batch)


@ATTRIBUTIONS.register("layer_integrated_gradients", needs_layer=True)
def _layer_integrated_gradients(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Integrated gradients of the layer's output, summed over its channels."""
    import captum.attr as attr

    options = {"baselines": _zeros(batch), **options}
    result = attr.LayerIntegratedGradients(batch.forward, batch.layer).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )
    return _layer_map(result, batch)


@ATTRIBUTIONS.register("layer_conductance", needs_layer=True)
def _layer_conductance(batch: _Batch, options: dict[str, Any]) -> torch.Tensor:
    """Conductance of the layer's units (Dhamdhere et al. 2018), summed over its channels."""
    import captum.attr as attr

    options = {"baselines": _zeros(batch), **options}
    result = attr.LayerConductance(batch.forward, batch.layer).attribute(
        batch.images, target=batch.target, additional_forward_args=batch.extra, **options
    )
    return _layer_map(result, batch)


def _layer_map(result: torch.Tensor | tuple[torch.Tensor, ...], batch: _Batch) -> torch.Tensor:
    """Return a layer attribution summed over channels, resized to the images, per channel."""
    if isinstance(result, tuple | list):  # captum's answer for a layer that outputs a tuple
        raise PlpVizError(
            f"layer {batch.layer_name!r} outputs a tuple of {len(result)} tensors; layer methods "
            "need a layer with one (N, C, H, W) output, e.g. a convolution inside it"
        )
    if result.dim() != 4:
        raise PlpVizError(
            f"layer {batch.layer_name!r} gives attributions of shape {tuple(result.shape)}; "
            "layer methods need a layer with a (N, C, H, W) output, e.g. a convolution"
        )
    summed = result.sum(dim=1, keepdim=True)
    size = tuple(batch.images.shape[2:])
    if tuple(summed.shape[2:]) != size:
        summed = F.interpolate(summed, size=size, mode="bilinear", align_corners=False)
    return summed.expand(-1, batch.images.shape[1], -1, -1)


ALGORITHMS = tuple(ATTRIBUTIONS.available())
"""Names :func:`explain` accepts, in registration order."""

LAYER_ALGORITHMS = tuple(ATTRIBUTIONS.available(needs_layer=True))
"""The algorithms that attribute a layer's output (they need ``layer``)."""


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


def default_layer(model: nn.Module) -> str:
    """Return the dotted name of the model's last ``Conv2d`` (Grad-CAM's usual layer), or raise."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise PlpVizError(
            f"{type(model).__name__} has no Conv2d to attribute by default: "
            "give a layer name (a module with a (N, C, H, W) output)"
        )
    return names[-1]


def similarity(embeddings: torch.Tensor, references: torch.Tensor, metric: str) -> torch.Tensor:
    """Return the similarity of each row to its reference: higher is more alike.

    ``cosine``: the cosine similarity (1 - the cosine distance); ``euclidean``: minus the L2
    distance. Either way the similarity ranks a gallery as the distance of
    :data:`plp_core.RANKING_METRICS` does.
    """
    if metric == "cosine":
        return F.cosine_similarity(embeddings, references, dim=1)
    return -torch.linalg.vector_norm(embeddings - references, dim=1)


def _similarity(
    output: Callable[[torch.Tensor], torch.Tensor], metric: str
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return ``(images, references) -> similarity of output(images) to references``.

    The references travel as captum's ``additional_forward_args``, which captum repeats along
    with the inputs (the steps of integrated gradients, the samples of gradient SHAP, the
    patches of occlusion), so each expanded row meets its own image's reference.
    """

    def scored(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        return similarity(output(images), references, metric)

    return scored


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None,
    *,
    algorithm: str = "integrated_gradients",
    layer: str | None = None,
    reference: torch.Tensor | None = None,
    output: Callable[[torch.Tensor], torch.Tensor] | None = None,
    metric: str = "cosine",
    batch_size: int = 32,
    **kwargs: Any,
) -> torch.Tensor:
    """Return attributions with the shape of ``images`` for ``algorithm`` (captum).

    What is explained:

    - a classifier: the score of class ``targets[i]`` for image ``i``;
    - an embedding model (``reference`` given, ``targets`` ignored): the similarity of image
      ``i``'s embedding to ``reference[i]`` (one embedding for all images, or one per image),
      e.g. the centroid of the image's class or another image's embedding: the cosine
      similarity, or minus the L2 distance for ``metric="euclidean"`` (:func:`similarity`).

    ``output`` is the function explained, by default ``model`` itself (e.g. give a
    gradient-enabled embedding function when the model's forward returns logits); layers are
    looked up in ``model``. The layer methods (:data:`LAYER_ALGORITHMS`) attribute the output
    of ``layer`` (a dotted module name; default: :func:`default_layer`, the last ``Conv2d``),
    sum it over the layer's channels, resize it bilinearly to the image size and repeat it over
    the image's channels. Grad-CAM keeps only the positive part (ReLU), as in its paper.
    Integrated gradients and the layer methods start from a black (all-zero) image.
    ``kwargs`` go to captum's ``attribute`` and override these defaults.

    Images are explained ``batch_size`` at a time (each sample's attribution depends only on
    that sample), with a tqdm progress bar on stderr when it is a terminal and there is more
    than one batch.

    Raises:
        PlpVizError: On an unknown algorithm, metric or layer, a layer given to an algorithm
            that takes none, images not ``(N, C, H, W)``, a target or reference count that is
            not the image count, neither targets nor reference, a layer without one
            ``(N, C, H, W)`` output (a tuple, a vector), or ``batch_size < 1``.
    """
    from tqdm import tqdm

    if algorithm not in ATTRIBUTIONS:
        raise PlpVizError(ATTRIBUTIONS.unknown_message(algorithm))
    check_choice(metric, RANKING_METRICS, kind="metric", error=PlpVizError)
    if images.dim() != 4:
        raise PlpVizError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if batch_size < 1:
        raise PlpVizError(f"batch_size must be >= 1, got {batch_size}")
    count = len(images)
    target: torch.Tensor | None = None
    references: torch.Tensor | None = None
    if reference is not None:
        references = reference.detach().to(images.device)
        references = references.reshape(1, -1) if references.dim() == 1 else references
        if references.dim() != 2 or len(references) not in (1, count):
            raise PlpVizError(
                f"reference must be (D,), (1, D) or one row per image ({count}, D), "
                f"got {tuple(reference.shape)}"
            )
        references = references.expand(count, -1)
    elif targets is not None:
        target = torch.as_tensor(targets, device=images.device).reshape(-1)
        if len(target) == 1:
            target = target.expand(count)
        if len(target) != count:
            raise PlpVizError(f"{len(target)} targets for {count} images")
    else:
        raise PlpVizError(
            "give targets (the classes to explain) or a reference (an embedding to compare with)"
        )
    layer_module = None
    if ATTRIBUTIONS.entry(algorithm).metadata.get("needs_layer"):
        layer = layer or default_layer(model)
        layer_module = find_layer(model, layer)
    elif layer is not None:
        raise PlpVizError(
            f"{algorithm} attributes the input and takes no layer (given: {layer!r}); the "
            f"algorithms that take one are {', '.join(LAYER_ALGORITHMS)}"
        )
    explained = output if output is not None else model
    forward = _similarity(explained, metric) if references is not None else explained
    was_training = model.training
    model.eval()
    starts = range(0, count, batch_size)
    parts = []
    try:
        for start in tqdm(
            starts,
            desc=f"attributions ({algorithm})",
            unit="batch",
            disable=len(starts) < 2 or not sys.stderr.isatty(),
        ):
            chunk = slice(start, start + batch_size)
            batch = _Batch(
                forward=forward,
                images=images[chunk].detach().clone().requires_grad_(True),
                target=None if target is None else target[chunk],
                extra=None if references is None else (references[chunk],),
                layer=layer_module,
                layer_name=layer,
            )
            parts.append(ATTRIBUTIONS.get(algorithm)(batch, dict(kwargs)).detach())
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros_like(images)


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
    """Draw, per sample, the image, the attribution heat-map and their blend; return the path.

    Rows are titled with the true and predicted labels, named by ``class_names[label]`` when
    given. The heat-map is the absolute attribution summed over channels, scaled to its maximum.

    Raises:
        PlpVizError: If the shapes of images and attributions differ, or a label does not
            index ``class_names``.
    """
    if images.shape != attributions.shape:
        raise PlpVizError(
            f"images {tuple(images.shape)} and attributions {tuple(attributions.shape)} differ"
        )

    names = check_class_names(
        [*(true_labels or []), *(predicted_labels or [])], class_names, "the labels"
    )

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
            title.append(f"true {label_text(true_labels[row], names)}")
        if predicted_labels is not None:
            title.append(f"predicted {label_text(predicted_labels[row], names)}")
        axes[row][0].set_title(", ".join(title), fontsize=8)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0][1].set_title("attribution", fontsize=8)
    axes[0][2].set_title("overlay", fontsize=8)
    return _save(figure, path)
