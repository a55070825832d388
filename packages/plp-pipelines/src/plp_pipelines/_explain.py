"""The explain pipeline: captum attributions of test images, drawn as overlays."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import plp_viz
from plp_pipelines._config import override_config
from plp_pipelines._protocols import (
    EmbeddingModel,
    SplitDataModule,
    as_embedding_model,
    check_datamodule,
    check_model,
)
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT

__all__ = ["EXPLAIN_SECTIONS", "explain"]

EXPLAIN_SECTIONS = ("explain",)
"""The config sections ``explain --set`` may change (the run's data and model are fixed)."""


def explain(
    run: str | Path | None = None,
    *,
    algorithm: str | None = None,
    samples: int | None = None,
    layer: str | None = None,
    checkpoint: str | Path | None = None,
    runs_root: str | Path = RUNS_ROOT,
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Draw attributions for test images of a run and return the PNG's path.

    ``samples`` test images are drawn with the run's seed (the same images every time). For a
    model with a classifier the attribution target is its predicted class; for an embedding
    model it is the cosine similarity of the image's evaluation feature (``model.embed``, with
    gradients) to the centroid of the image's class in trainval (in the test split for a class
    that trainval lacks, as in class-disjoint benchmarks). Layer methods default to the model's
    last ``Conv2d``.

    Args:
        run: The run directory; the newest run when None.
        algorithm: A name from ``plp_viz.available_attributions()``; default ``[explain]``'s.
        samples: How many test images; default ``[explain] samples``.
        layer: Dotted module name for layer methods (``layer_gradcam``, ...), e.g.
            ``backbone.features.6``; default ``[explain] layer``, else the last ``Conv2d``.
        checkpoint: A checkpoint instead of the run's best.
        runs_root: Folder holding the run directories.
        model: A model object to load the checkpoint's weights into (for runs trained from
            objects rather than a config).
        datamodule: The datamodule whose ``split_dataloader("test")`` gives the images; its
            ``class_names`` (when it has them) title the rows.
        overrides: ``explain.key=value`` settings for this call only (``--set``); the
            arguments above still win over them. Other sections are refused.

    Raises:
        ConfigError: An override outside ``[explain]``, an unknown key or a bad value.
    """
    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    paths = opened.paths
    config = override_config(opened.config, overrides, EXPLAIN_SECTIONS, "explain")
    algorithm = algorithm or config.explain.algorithm
    samples = samples or config.explain.samples
    layer = layer if layer is not None else config.explain.layer
    network = opened.load_model(checkpoint, model).eval()
    explained = as_embedding_model(network)
    facts = check_model(network)
    datamodule = opened.build_datamodule(datamodule)
    data = check_datamodule(datamodule)
    datamodule.setup("test")
    test = datamodule.split_dataloader("test").dataset
    size = len(test)
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(size, size=min(samples, size), replace=False))
    items = [test[int(i)] for i in chosen]
    images = torch.stack([item[0] for item in items])
    labels = torch.stack([torch.as_tensor(item[1]) for item in items])

    predicted: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    output: Callable[[torch.Tensor], torch.Tensor] | None = None
    if facts.has_classifier:
        with torch.no_grad():
            predicted = explained(images).argmax(dim=1)
    else:
        reference = _class_centroids(explained, datamodule, labels)
        output = _embedding_with_gradients(explained)
    attributions = plp_viz.explain(
        network,
        images,
        predicted,
        algorithm=algorithm,
        layer=layer,
        reference=reference,
        output=output,
    )
    path = paths.plots / f"explain_{algorithm}.png"
    plp_viz.plot_attributions(
        images,
        attributions,
        path,
        true_labels=labels.tolist(),
        predicted_labels=None if predicted is None else predicted.tolist(),
        class_names=data.class_names,
    )
    return path


def _embedding_with_gradients(model: EmbeddingModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``images -> model.embed(images)`` with gradients (``embed`` may be no_grad-decorated).

    ``inspect.unwrap`` takes the body from under ``torch.no_grad()``'s wrapper.
    """
    function = inspect.unwrap(type(model).embed)

    def embedding(images: torch.Tensor) -> torch.Tensor:
        return function(model, images)

    return embedding


def _class_centroids(
    model: EmbeddingModel, datamodule: SplitDataModule, labels: torch.Tensor
) -> torch.Tensor:
    """Return, per label, the mean trainval feature of its class (the test split's if absent)."""
    from plp_pipelines._features import extract_features

    wanted = set(labels.tolist())
    centroids: dict[int, torch.Tensor] = {}
    for split in ("trainval", "test"):
        if wanted <= centroids.keys():
            break
        features = extract_features(model, datamodule.split_dataloader(split), with_logits=False)
        for label in wanted - centroids.keys():
            members = features.features[features.labels == label]
            if len(members):
                centroids[label] = torch.from_numpy(members.mean(axis=0))
    return torch.stack([centroids[label] for label in labels.tolist()])
