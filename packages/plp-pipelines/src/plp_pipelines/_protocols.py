"""What a pipeline needs from a model and from a datamodule, checked when it starts.

Pipelines meet models and datamodules through these small protocols, not through plp's own
classes: any object that has the members works, and one that lacks one is refused with a line
naming the member, before a run folder exists.

Each protocol has required members (checked with ``isinstance``, the protocols are
runtime-checkable) and optional ones, declared beside it in :data:`MODEL_OPTIONAL` and
:data:`DATA_OPTIONAL` with their defaults. The optional members are read in one
place, :meth:`ModelFacts.of` and :meth:`DataFacts.of`, into typed records that the pipelines
use; no pipeline probes a model or a datamodule with ``getattr``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from plp_pipelines._errors import ConfigError

__all__ = [
    "DATA_OPTIONAL",
    "MODEL_OPTIONAL",
    "SIZES",
    "DataFacts",
    "EmbeddingModel",
    "ModelFacts",
    "SplitDataModule",
    "as_embedding_model",
    "check_datamodule",
    "check_model",
]


@runtime_checkable
class EmbeddingModel(Protocol):
    """A model plp can evaluate: ``embed(images)`` gives the features ranked and clustered.

    Any ``nn.Module`` with an ``embed`` method is one. Optional members (:data:`MODEL_OPTIONAL`):
    ``has_classifier`` (``model(images)`` gives class logits too; default False) and
    ``hparams`` (the hyper-parameters a checkpoint stores: ``num_classes``, ``in_channels``,
    ``image_size``, ...; default none) and ``outputs_and_features`` (embedding, logits and
    ``embed``'s features from one backbone pass, used to extract features and logits at once).
    """

    training: bool

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return ``(N, D)`` features of ``(N, C, H, W)`` images."""
        ...

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Return the model's output (class logits when it has a classifier)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Return the weights (``nn.Module``'s)."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Set training mode (``nn.Module``'s)."""
        ...

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Move the weights (``nn.Module``'s)."""
        ...

    def eval(self) -> Any:
        """Set evaluation mode (``nn.Module``'s)."""
        ...


@runtime_checkable
class SplitDataModule(Protocol):
    """A datamodule plp can evaluate on: a loader per named split, in a fixed order.

    ``split_dataloader`` must serve ``trainval`` and ``test`` (and ``query``/``gallery`` for the
    query/gallery protocol) unshuffled. Optional members (:data:`DATA_OPTIONAL`): the sizes a model
    built from a config needs (``num_classes``, ``in_channels``, ``image_size``), the dataset's
    ``class_names``, the ``data_pipeline`` that serves training batches, the ``val_fraction``
    held out for validation and ``uses_custom_sampler`` (a sampler Lightning must not replace).
    """

    def setup(self, stage: str) -> None:
        """Load the splits."""
        ...

    def split_dataloader(self, split: str) -> DataLoader[Any]:
        """Return the unshuffled loader of ``split``."""
        ...


# The optional members of each protocol and their defaults (a runtime-checkable protocol
# requires every member it declares, so these are declared here, beside it).
MODEL_OPTIONAL: Mapping[str, Any] = MappingProxyType(
    {"has_classifier": False, "hparams": {}, "outputs_and_features": None}
)
DATA_OPTIONAL: Mapping[str, Any] = MappingProxyType(
    {
        "num_classes": None,
        "in_channels": None,
        "image_size": None,
        "class_names": None,
        "data_pipeline": None,
        "val_fraction": None,
        "has_validation": None,
        "uses_custom_sampler": False,
        "split_paths": None,
        "split_groups": None,
    }
)

# What building a model from a config reads off the datamodule.
SIZES = ("num_classes", "in_channels", "image_size")


def _optional(obj: object, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Return the optional members of ``obj``: each one it has, else its default."""
    return {name: getattr(obj, name, default) for name, default in defaults.items()}


@dataclass(frozen=True)
class ModelFacts:
    """What a pipeline knows of a model beyond ``embed``: read once, typed.

    Attributes:
        has_classifier: ``model(images)`` gives class logits.
        hyper_parameters: What a checkpoint of the model stores (empty when it stores none).
        outputs_and_features: ``outputs_and_features(images)``: ``(embedding, logits or None,
            the embed() features)`` from one pass of the backbone (None: the model has none;
            ``embed`` and ``model(images)`` are then called apart).
    """

    has_classifier: bool = False
    hyper_parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs_and_features: Callable[[torch.Tensor], tuple[Any, Any, Any]] | None = None

    @classmethod
    def of(cls, model: object) -> ModelFacts:
        """Return the facts of ``model`` (its optional members, or their defaults)."""
        members = _optional(model, MODEL_OPTIONAL)
        hyper_parameters = members["hparams"]
        return cls(
            has_classifier=bool(members["has_classifier"]),
            hyper_parameters=dict(hyper_parameters)
            if isinstance(hyper_parameters, Mapping)
            else {},
            outputs_and_features=members["outputs_and_features"]
            if callable(members["outputs_and_features"])
            else None,
        )


@dataclass(frozen=True)
class DataFacts:
    """What a pipeline knows of a datamodule beyond its loaders: read once, typed.

    Attributes:
        num_classes: Classes (identities) of the training data, if it says.
        in_channels: Channels of its images, if it says.
        image_size: ``(height, width)`` of its images, if it says.
        class_names: Names of its classes in label order, if it has them.
        data_pipeline: ``device`` or ``workers``: how training batches are served, if known.
        val_fraction: The share of the training data held out for validation, if it says.
        uses_custom_sampler: Its training loader has a sampler Lightning must keep.
        has_validation: Whether it serves a validation split (``val_fraction`` or
            ``val_classes``), if it says.
        split_paths: ``split_paths(split)``: each item's file relative to the data root (None:
            it names no files).
        split_groups: ``split_groups(split)``: each item's group, a dataset CSV's sequences
            (None: no groups).
    """

    num_classes: int | None = None
    in_channels: int | None = None
    image_size: tuple[int, ...] | None = None
    class_names: list[str] | None = None
    data_pipeline: str | None = None
    val_fraction: float | None = None
    uses_custom_sampler: bool = False
    has_validation: bool | None = None
    split_paths: Callable[[str], Sequence[str] | None] | None = None
    split_groups: Callable[[str], Any] | None = None

    @classmethod
    def of(cls, datamodule: object) -> DataFacts:
        """Return the facts of ``datamodule`` (its optional members, or their defaults)."""
        members = _optional(datamodule, DATA_OPTIONAL)
        names = members["class_names"]
        size = members["image_size"]
        return cls(
            num_classes=members["num_classes"],
            in_channels=members["in_channels"],
            image_size=tuple(int(s) for s in size) if isinstance(size, Sequence) else size,
            class_names=[str(name) for name in names] if names is not None else None,
            data_pipeline=members["data_pipeline"],
            val_fraction=members["val_fraction"],
            uses_custom_sampler=bool(members["uses_custom_sampler"]),
            has_validation=None
            if members["has_validation"] is None
            else bool(members["has_validation"]),
            split_paths=members["split_paths"],
            split_groups=members["split_groups"],
        )

    def files_and_groups(self, split: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Return the files (relative to the data root) and the groups of ``split``'s items."""
        paths = self.split_paths(split) if self.split_paths is not None else None
        groups = self.split_groups(split) if self.split_groups is not None else None
        return (
            None if paths is None else np.asarray([str(p) for p in paths], dtype=str),
            None if groups is None else np.asarray(groups, dtype=np.int64),
        )


def check_model(model: object, *, for_training: bool = False) -> ModelFacts:
    """Return the facts of ``model``; raise ConfigError naming what it lacks for a pipeline.

    A plain ``nn.Module`` is an embedding network and needs nothing else to be trained (the
    train pipeline wraps it); a LightningModule, and any model evaluated, must have
    ``embed(images)``.
    """
    import pytorch_lightning as pl

    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {name} is not a torch.nn.Module")
    if isinstance(model, pl.LightningModule) or not for_training:
        as_embedding_model(model)
    if (
        for_training
        and isinstance(model, pl.LightningModule)
        and type(model).training_step is pl.LightningModule.training_step
    ):
        raise ConfigError(f"model: {name} has no training_step")
    return ModelFacts.of(model)


def as_embedding_model(model: object) -> EmbeddingModel:
    """Return ``model`` typed as an :class:`EmbeddingModel`; raise ConfigError if it is not one."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {type(model).__name__} is not a torch.nn.Module")
    if not isinstance(model, EmbeddingModel):
        raise ConfigError(
            f"model: {type(model).__name__} has no embed(images) method: plp evaluates the "
            "features it returns (or pass the plain nn.Module embedding network and plp trains it)"
        )
    return model


def check_datamodule(datamodule: object, needs: Sequence[str] = ()) -> DataFacts:
    """Return the facts of ``datamodule``; raise ConfigError naming the first member it lacks.

    Args:
        datamodule: The datamodule object.
        needs: Optional members needed here (e.g. :data:`SIZES` to size a model).
    """
    name = type(datamodule).__name__
    if not isinstance(datamodule, SplitDataModule):
        missing = "setup" if not hasattr(datamodule, "setup") else "split_dataloader"
        raise ConfigError(
            f"datamodule: {name} has no {missing}(): plp reads the trainval and test splits "
            'with split_dataloader("trainval" | "test")'
        )
    facts = DataFacts.of(datamodule)
    for member in needs:
        if getattr(facts, member) is None:
            raise ConfigError(f"datamodule: {name} has no {member!r}: needed to size the model")
    return facts
