"""Feature extraction: run ``model.embed`` over an evaluation split, in dataset order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from plp_pipelines._errors import RunError
from plp_pipelines._protocols import EmbeddingModel, ModelFacts
from plp_pipelines._runs import atomic_write

__all__ = ["SplitFeatures", "extract_features", "load_features", "save_features"]


@dataclass
class SplitFeatures:
    """The features of one split, row ``i`` being sample ``i`` of the split's dataset.

    Attributes:
        features: ``(N, D)`` float32 embeddings from ``model.embed``.
        labels: ``(N,)`` int64 class or identity labels.
        cameras: ``(N,)`` int64 camera ids, or None when the dataset has none.
        logits: ``(N, C)`` float32 classifier outputs, or None for models without a classifier.
        sample_ids: ``(N,)`` int64 index of each row in the split's dataset.
        paths: ``(N,)`` each row's image file relative to the data root, or None for datasets
            without files.
        groups: ``(N,)`` int64 group of each row (a dataset CSV's sequences: gallery items of a
            query's group are left out of its ranking), or None.
    """

    features: np.ndarray
    labels: np.ndarray
    cameras: np.ndarray | None = None
    logits: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    paths: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.sample_ids is None:
            self.sample_ids = np.arange(len(self.labels), dtype=np.int64)


def extract_features(
    model: EmbeddingModel, loader: DataLoader[Any], *, with_logits: bool = True
) -> SplitFeatures:
    """Return ``model.embed`` (and ``model(images)`` logits if asked) over ``loader``, in order.

    Under ``torch.distributed`` with several processes every rank embeds one contiguous shard of
    the dataset (no padding, no duplicates) and the shards are gathered in rank order, so every
    rank gets the features of every sample exactly once, in dataset order: the same arrays as a
    single process computes. The model is put in eval mode for the pass and restored afterwards.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return _extract(model, loader, with_logits)
    world_size, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    if world_size == 1:
        return _extract(model, loader, with_logits)
    size = len(loader.dataset)  # type: ignore[arg-type]
    shard = range(rank * size // world_size, (rank + 1) * size // world_size)
    shard_loader = DataLoader(
        Subset(loader.dataset, list(shard)),
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
    )
    local = _extract(model, shard_loader, with_logits) if len(shard) else None
    gathered: list[SplitFeatures | None] = [None] * world_size
    torch.distributed.all_gather_object(gathered, local)
    parts = [part for part in gathered if part is not None]
    if not parts:
        raise RunError("the split is empty: no features to extract")

    def join(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        present = [array for array in arrays if array is not None]
        return np.concatenate(present) if len(present) == len(arrays) else None

    return SplitFeatures(
        features=np.concatenate([part.features for part in parts]),
        labels=np.concatenate([part.labels for part in parts]),
        cameras=join([part.cameras for part in parts]),
        logits=join([part.logits for part in parts]),
    )


@torch.no_grad()
def _extract(model: EmbeddingModel, loader: DataLoader[Any], with_logits: bool) -> SplitFeatures:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features, labels, cameras, logits = [], [], [], []
    facts = ModelFacts.of(model)
    has_classifier = with_logits and facts.has_classifier
    # Features and logits from one backbone pass where the model offers it (plp's models).
    one_pass = facts.outputs_and_features if has_classifier else None
    try:
        for batch in loader:
            images = batch[0].to(device)
            if one_pass is not None:
                embedding, batch_logits, batch_features = one_pass(images)
                features.append(batch_features.float().cpu())
                # model(images): the logits, or the embedding when there are none
                logits.append((embedding if batch_logits is None else batch_logits).float().cpu())
            else:
                features.append(model.embed(images).float().cpu())
                if has_classifier:
                    logits.append(model(images).float().cpu())
            labels.append(batch[1].cpu())
            if len(batch) > 2:
                cameras.append(batch[2].cpu())
    finally:
        model.train(was_training)
    if not features:
        raise RunError("the split is empty: no features to extract")
    return SplitFeatures(
        features=torch.cat(features).numpy(),
        labels=torch.cat(labels).long().numpy(),
        cameras=torch.cat(cameras).long().numpy() if cameras else None,
        logits=torch.cat(logits).numpy() if logits else None,
    )


def save_features(path: str | Path, split: SplitFeatures) -> None:
    """Write ``split`` to ``path`` (``.npz``) through a temporary file and a rename."""
    arrays = {"features": split.features, "labels": split.labels, "sample_ids": split.sample_ids}
    if split.cameras is not None:
        arrays["cameras"] = split.cameras
    if split.logits is not None:
        arrays["logits"] = split.logits
    if split.paths is not None:
        arrays["paths"] = np.asarray(split.paths, dtype=str)
    if split.groups is not None:
        arrays["groups"] = split.groups
    atomic_write(path, lambda file: np.savez(file, **arrays))  # type: ignore[arg-type]


def load_features(path: str | Path) -> SplitFeatures:
    """Return the features saved at ``path`` by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"feature file {path} not found: run `invoke evaluate` first")
    with np.load(path, allow_pickle=False) as data:
        return SplitFeatures(
            features=data["features"],
            labels=data["labels"],
            cameras=data.get("cameras"),
            logits=data.get("logits"),
            sample_ids=data["sample_ids"],
            paths=data.get("paths"),
            groups=data.get("groups"),
        )
