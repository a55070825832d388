"""Losses with learnable per-class parameters: centre loss and ArcFace."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from plp_core import PositiveFloat, PositiveInt
from plp_losses._distances import Distance, check_distance, rowwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._inputs import check_inputs
from plp_losses._registry import register

__all__ = ["ArcFaceLoss", "CenterLoss"]


def _check_sizes(num_classes: int, embedding_size: int) -> None:
    if num_classes < 1 or embedding_size < 1:
        raise PlpLossesError(
            f"num_classes and embedding_size must be >= 1, got {num_classes} and {embedding_size}"
        )


def _check_labels(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    check_inputs(embeddings, labels)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise PlpLossesError(
            f"labels must be in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]"
        )


@register("center")
class CenterLoss(nn.Module):
    """Centre loss with learnable class centres (Wen et al. 2016, "A Discriminative Feature...").

    ``loss = 1/2 mean_i d(x_i, c_{y_i})`` with ``d`` the squared Euclidean distance by default
    (Wen et al.'s ``1/2 ||x_i - c_{y_i}||²``, averaged over the batch). The centres are an
    ``nn.Parameter`` ``(num_classes, embedding_size)`` (standard normal init) trained by the
    optimiser with the model; usually added to a softmax loss with a small weight.

    Args:
        num_classes: Number of classes; labels must lie in ``[0, num_classes)``.
        embedding_size: Embedding dimension ``D``.
        distance: ``squared_euclidean`` (default), ``euclidean`` or ``cosine``.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(
        self,
        num_classes: PositiveInt,
        embedding_size: PositiveInt,
        distance: Distance = "squared_euclidean",
    ) -> None:
        super().__init__()
        _check_sizes(num_classes, embedding_size)
        check_distance(distance)
        self.num_classes, self.distance = num_classes, distance
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_size))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss of ``embeddings`` ``(N, D)`` with ``labels`` ``(N,)``."""
        _check_labels(embeddings, labels, self.num_classes)
        centers = self.centers.to(embeddings.dtype)[labels]
        return 0.5 * rowwise_distance(embeddings, centers, self.distance).mean()


@register("arcface")
class ArcFaceLoss(nn.Module):
    """Additive angular margin loss with learnable class weights (Deng et al. 2019, ArcFace).

    With ``theta_ij`` the angle between ``x_i`` and the class weight ``W_j`` (both L2-normalised),
    the logits are ``scale * cos(theta_ij)`` except for the target class, which gets
    ``scale * cos(theta_iy + margin)``; the loss is the mean cross-entropy over the batch (as
    pytorch-metric-learning's ``ArcFaceLoss``). ``cos(theta + m)`` is computed as
    ``cos theta cos m - sin theta sin m`` so the gradient stays finite at ``cos theta = ±1``.

    Args:
        num_classes: Number of classes; labels must lie in ``[0, num_classes)``.
        embedding_size: Embedding dimension ``D``.
        margin: The angular margin in degrees (28.6° ≈ 0.5 rad).
        scale: The logit scale ``s``.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(
        self,
        num_classes: PositiveInt,
        embedding_size: PositiveInt,
        margin: float = 28.6,
        scale: PositiveFloat = 64.0,
    ) -> None:
        super().__init__()
        _check_sizes(num_classes, embedding_size)
        self.num_classes, self.margin, self.scale = num_classes, margin, scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_normal_(self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss of ``embeddings`` ``(N, D)`` with ``labels`` ``(N,)``."""
        _check_labels(embeddings, labels, self.num_classes)
        weight = F.normalize(self.weight.to(embeddings.dtype), dim=1)
        cosine = (F.normalize(embeddings, dim=1) @ weight.T).clamp(-1.0, 1.0)
        target = cosine.gather(1, labels.unsqueeze(1))
        sine = torch.sqrt((1.0 - target.pow(2)).clamp_min(1e-12))
        angle = math.radians(self.margin)
        with_margin = target * math.cos(angle) - sine * math.sin(angle)
        logits = cosine.scatter(1, labels.unsqueeze(1), with_margin)
        return F.cross_entropy(self.scale * logits, labels)
