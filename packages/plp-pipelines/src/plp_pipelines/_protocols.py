"""What a pipeline needs from a model and from a datamodule, checked when it starts.

Pipelines meet models and datamodules through these small protocols, not through plp's own
classes: any object that has the members works, and one that lacks one is refused with a line
naming the member, before a run folder exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import DataLoader

from plp_pipelines._errors import ConfigError

__all__ = [
    "EmbeddingModel",
    "SplitDataModule",
    "check_datamodule",
    "check_model",
    "has_classifier",
]


@runtime_checkable
class EmbeddingModel(Protocol):
    """A model plp can evaluate: ``embed(images)`` gives the features ranked and clustered.

    ``has_classifier = True`` (optional) says ``model(images)`` gives class logits too.
    """

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return ``(N, D)`` features of ``(N, C, H, W)`` images."""
        ...


@runtime_checkable
class SplitDataModule(Protocol):
    """A datamodule plp can evaluate on: a loader per named split, in a fixed order.

    ``split_dataloader`` must serve ``trainval`` and ``test`` (and ``query``/``gallery`` for the
    query/gallery protocol) unshuffled. To size a model from a config it also needs
    ``num_classes``, ``in_channels`` and ``image_size``.
    """

    def setup(self, stage: str) -> None:
        """Load the splits."""
        ...

    def split_dataloader(self, split: str) -> DataLoader[Any]:
        """Return the unshuffled loader of ``split``."""
        ...


# What building a model from a config reads off the datamodule.
SIZES = ("num_classes", "in_channels", "image_size")


def has_classifier(model: object) -> bool:
    """Return whether ``model(images)`` gives class logits (``model.has_classifier``)."""
    return bool(getattr(model, "has_classifier", False))


def check_model(model: object, *, for_training: bool = False) -> None:
    """Raise ConfigError naming what ``model`` lacks for a pipeline.

    A plain ``nn.Module`` is an embedding network and needs nothing else (the train pipeline
    wraps it); a LightningModule must have ``embed(images)``.
    """
    import pytorch_lightning as pl

    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {name} is not a torch.nn.Module")
    if isinstance(model, pl.LightningModule) and not callable(getattr(model, "embed", None)):
        raise ConfigError(
            f"model: {name} has no embed(images) method: plp evaluates the features it returns "
            "(or pass the plain nn.Module embedding network and plp trains it)"
        )
    if (
        for_training
        and isinstance(model, pl.LightningModule)
        and type(model).training_step is pl.LightningModule.training_step
    ):
        raise ConfigError(f"model: {name} has no training_step")


def check_datamodule(datamodule: object, needs: Sequence[str] = ()) -> None:
    """Raise ConfigError naming the first member ``datamodule`` lacks.

    Args:
        datamodule: The datamodule object.
        needs: Attributes needed besides ``setup`` and ``split_dataloader`` (e.g. :data:`SIZES`).
    """
    name = type(datamodule).__name__
    for member in ("setup", "split_dataloader"):
        if not callable(getattr(datamodule, member, None)):
            raise ConfigError(
                f"datamodule: {name} has no {member}(): plp reads the trainval and test splits "
                'with split_dataloader("trainval" | "test")'
            )
    for member in needs:
        if getattr(datamodule, member, None) is None:
            raise ConfigError(f"datamodule: {name} has no {member!r}: needed to size the model")
