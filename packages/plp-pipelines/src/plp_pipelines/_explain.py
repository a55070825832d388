"""The explain pipeline: captum attributions of test images, drawn as overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import plp_viz
from plp_pipelines._build import build_datamodule
from plp_pipelines._checkpoints import load_model
from plp_pipelines._config import load_config
from plp_pipelines._evaluate import resolve_checkpoint
from plp_pipelines._runs import RunPaths, resolve_run

__all__ = ["explain"]


def explain(
    run: str | Path | None = None,
    *,
    algorithm: str | None = None,
    samples: int | None = None,
    layer: str | None = None,
    checkpoint: str | Path | None = None,
    runs_root: str | Path = "runs",
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
) -> Path:
    """Draw attributions for test images of a run and return the PNG's path.

    ``samples`` test images are drawn with the run's seed (the same images every time). For a
    model with a classifier the attribution target is its predicted class; for an embedding
    model it is the cosine similarity to the centroid of the image's class in trainval.

    Args:
        run: The run directory; the newest run when None.
        algorithm: A name from ``plp_viz.available_attributions()``; default ``[explain]``'s.
        samples: How many test images; default ``[explain] samples``.
        layer: Dotted module name for layer methods (``layer_gradcam``), e.g.
            ``backbone.features.6``.
        checkpoint: A checkpoint instead of the run's best.
        runs_root: Folder holding the run directories.
        model: A model object to load the checkpoint's weights into (for runs trained from
            objects rather than a config).
        datamodule: The datamodule whose ``split_dataloader("test")`` gives the images.
    """
    paths = RunPaths(resolve_run(run, runs_root))
    config = load_config(paths.config)
    algorithm = algorithm or config.explain.algorithm
    samples = samples or config.explain.samples
    layer = layer if layer is not None else config.explain.layer
    model = load_model(
        resolve_checkpoint(paths, checkpoint), model, config, f"the config of run {paths.root}"
    ).eval()
    if datamodule is None:
        datamodule = build_datamodule(config, str(paths.config))
    datamodule.setup("test")
    test = datamodule.split_dataloader("test").dataset
    size = len(test)
    rng = np.random.default_rng(config.trainer.seed)
    chosen = np.sort(rng.choice(size, size=min(samples, size), replace=False))
    items = [test[int(i)] for i in chosen]
    images = torch.stack([item[0] for item in items])
    labels = torch.stack([torch.as_tensor(item[1]) for item in items])

    reference = None
    with torch.no_grad():
        if getattr(model, "has_classifier", False):
            predicted = model(images).argmax(dim=1)
            targets: torch.Tensor | None = predicted
        else:
            predicted = None
            targets = None
            reference = _class_centroids(model, datamodule, labels)
    attributions = plp_viz.explain(
        model, images, targets, algorithm=algorithm, layer=layer, reference=reference
    )
    path = paths.plots / f"explain_{algorithm}.png"
    plp_viz.plot_attributions(
        images,
        attributions,
        path,
        true_labels=labels.tolist(),
        predicted_labels=None if predicted is None else predicted.tolist(),
    )
    return path


def _class_centroids(
    model: torch.nn.Module, datamodule: object, labels: torch.Tensor
) -> torch.Tensor:
    """Return, for each label, the mean trainval embedding of that class (the reference)."""
    from plp_pipelines._features import extract_features

    trainval = extract_features(model, datamodule.split_dataloader("trainval"), with_logits=False)  # type: ignore[attr-defined]
    centroids = []
    for label in labels.tolist():
        members = trainval.features[trainval.labels == label]
        centroids.append(torch.from_numpy(members.mean(axis=0)))
    return torch.stack(centroids)
