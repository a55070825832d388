"""Population-based triplet loss: anchors against class centroids (our own variant)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from plp_core import NonNegativeFloat, check_choice
from plp_losses._distances import Distance, check_distance, pairwise_distance, rowwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._inputs import check_inputs
from plp_losses._registry import register
from plp_losses._triplet import zero_loss

__all__ = ["PopulationBasedTripletLoss"]

NEGATIVES = ("nearest", "all")


@register("population_triplet", experimental=True)
class PopulationBasedTripletLoss(nn.Module):
    """Experimental. Triplet hinge of each anchor against class centroids (plp's definition).

    For an anchor ``x_i`` of class ``c`` with ``n_c >= 2`` members in the batch:

    - positive: the leave-one-out centroid ``p_i = (sum_{j in c} x_j - x_i) / (n_c - 1)``;
    - negative distance, with ``mu_k`` the centroid of another class ``k`` in the batch:
      ``"nearest"``: ``d_n = min_k d(x_i, mu_k)``; ``"all"``: ``d_n = mean_k d(x_i, mu_k)``
      (the mean of the distances to every other-class centroid);
    - ``loss_i = max(0, d(x_i, p_i) - d_n + margin)``.

    Reduction: the mean of ``loss_i`` over anchors whose class has at least 2 members (and when
    another class is present). A batch without such an anchor gives a zero that keeps the graph.
    This is not from a paper: it is plp's own variant of the triplet loss (Schroff et al. 2015)
    with population statistics in place of single samples.

    Args:
        margin: The hinge margin (>= 0).
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
        negatives: ``nearest`` (default) or ``all``.
    """

    takes: ClassVar[str] = "embeddings"
    experimental: ClassVar[bool] = True

    def __init__(
        self,
        margin: NonNegativeFloat = 0.2,
        distance: Distance = "euclidean",
        negatives: str = "nearest",
    ) -> None:
        super().__init__()
        check_distance(distance)
        check_choice(negatives, NEGATIVES, kind="negatives", error=PlpLossesError)
        if margin < 0:
            raise PlpLossesError(f"margin must be >= 0, got {margin}")
        self.margin, self.distance, self.negatives = margin, distance, negatives

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss of ``embeddings`` ``(N, D)`` with ``labels`` ``(N,)``."""
        check_inputs(embeddings, labels)
        classes, index = torch.unique(labels, return_inverse=True)
        counts = torch.bincount(index, minlength=len(classes))
        anchors = counts[index] >= 2
        if len(classes) < 2 or not anchors.any():
            return zero_loss(embeddings)
        one_hot = F.one_hot(index, len(classes)).to(embeddings.dtype)
        sums = one_hot.T @ embeddings
        centroids = sums / counts.unsqueeze(1).to(embeddings.dtype)
        x = embeddings[anchors]
        own = index[anchors]
        positive = (sums[own] - x) / (counts[own] - 1).unsqueeze(1).to(embeddings.dtype)
        d_ap = rowwise_distance(x, positive, self.distance)
        to_centroids = pairwise_distance(x, centroids, self.distance)
        other = F.one_hot(own, len(classes)) == 0
        if self.negatives == "nearest":
            d_an = to_centroids.masked_fill(~other, float("inf")).amin(1)
        else:
            d_an = (to_centroids * other).sum(1) / (len(classes) - 1)
        return F.relu(d_ap - d_an + self.margin).mean()
