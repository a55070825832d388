"""Heads: features -> (embedding, logits)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plp_models._errors import PlpModelsError
from plp_models._registry import HEADS

__all__ = [
    "HEADS",
    "ClassifierHead",
    "EmbeddingClassifierHead",
    "EmbeddingHead",
    "Head",
    "available_heads",
    "build_head",
]


class Head(nn.Module):
    """A head: backbone features to ``(embedding, logits or None)``; ``embed`` for evaluation.

    Attributes:
        out_features: Size of the embedding (and of the evaluation feature).
    """

    out_features: int

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(embedding for the metric loss, logits or None)``."""
        raise NotImplementedError

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Return the feature used for evaluation."""
        raise NotImplementedError


@HEADS.register("embedding_classifier")
class EmbeddingClassifierHead(Head):
    """A linear embedding layer, an optional BNNeck, an optional classifier.

    ``embedding = linear(features)``; with ``bnneck`` the classifier reads ``BN(embedding)`` and
    that normalised feature is also what :meth:`embed` returns (the re-ID "strong baseline",
    Luo et al. 2019); with ``normalize`` the returned embedding is L2-normalised.

    Args:
        in_features: Size of the backbone features.
        embedding_size: Size of the embedding.
        num_classes: Classes of the classifier; 0 means no classifier.
        bnneck: Put a batch-norm between the embedding and the classifier.
        normalize: L2-normalise the embedding that :meth:`embed` returns.
    """

    def __init__(
        self,
        in_features: int,
        embedding_size: int,
        num_classes: int = 0,
        bnneck: bool = False,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.out_features = embedding_size
        self.embedding = nn.Linear(in_features, embedding_size)
        self.bnneck = nn.BatchNorm1d(embedding_size) if bnneck else None
        if self.bnneck is not None:
            self.bnneck.bias.requires_grad_(False)
        self.classifier = (
            nn.Linear(embedding_size, num_classes, bias=not bnneck) if num_classes > 0 else None
        )
        self.normalize = normalize

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(embedding for the metric loss, logits or None)``."""
        embedding = self.embedding(features)
        neck = embedding if self.bnneck is None else self.bnneck(embedding)
        logits = None if self.classifier is None else self.classifier(neck)
        if self.normalize:
            embedding = F.normalize(embedding, dim=1)
        return embedding, logits

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Return the evaluation feature: the BNNeck output when configured, else the embedding."""
        embedding = self.embedding(features)
        if self.bnneck is not None:
            embedding = self.bnneck(embedding)
        return F.normalize(embedding, dim=1) if self.normalize else embedding


@HEADS.register("embedding")
class EmbeddingHead(EmbeddingClassifierHead):
    """The embedding part alone (linear, optional BNNeck, optional L2): for metric losses only.

    Args:
        in_features: Size of the backbone features.
        embedding_size: Size of the embedding.
        num_classes: Must be 0: this head has no classifier.
        bnneck: Put a batch-norm after the embedding (what :meth:`embed` returns).
        normalize: L2-normalise the embedding.

    Raises:
        PlpModelsError: A loss that takes logits asked for a classifier.
    """

    def __init__(
        self,
        in_features: int,
        embedding_size: int,
        num_classes: int = 0,
        bnneck: bool = False,
        normalize: bool = False,
    ) -> None:
        if num_classes:
            raise PlpModelsError(
                "head 'embedding' has no classifier, but a loss takes logits; "
                "use head 'embedding_classifier' (or 'classifier')"
            )
        super().__init__(in_features, embedding_size, 0, bnneck, normalize)


@HEADS.register("classifier")
class ClassifierHead(Head):
    """A linear classifier on the backbone features, which are also the embedding.

    ``embedding_size`` is not used: the embedding is the backbone feature (``in_features``
    wide), so losses that need the embedding size must be given ``in_features``.

    Args:
        in_features: Size of the backbone features.
        embedding_size: Ignored (accepted so that every head takes the same arguments).
        num_classes: Classes of the classifier (at least 1: a loss must take logits).
        normalize: L2-normalise the feature that :meth:`embed` returns.
    """

    def __init__(
        self,
        in_features: int,
        embedding_size: int,
        num_classes: int = 0,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise PlpModelsError(
                "head 'classifier' needs a loss that takes logits (e.g. cross_entropy)"
            )
        self.out_features = in_features
        self.classifier = nn.Linear(in_features, num_classes)
        self.normalize = normalize

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(features, logits)``."""
        return features, self.classifier(features)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Return the backbone features (L2-normalised with ``normalize``)."""
        return F.normalize(features, dim=1) if self.normalize else features


def build_head(name: str, **kwargs: Any) -> Head:
    """Return the head registered as ``name``, built with ``kwargs``."""
    return HEADS.build(name, **kwargs)


def available_heads() -> list[str]:
    """Return the names of the registered heads."""
    return HEADS.available()
