"""Triplet margin loss with batch-all, batch-hard and semi-hard mining."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from plp_core import NonNegativeFloat, check_choice
from plp_losses._distances import Distance, check_distance, pairwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._registry import register
from plp_losses._tuples import IndicesTuple, TupleLoss, label_masks, pair_values, to_triplets

__all__ = ["MINING", "TripletMarginLoss", "mean_nonzero", "zero_loss"]

MINING = ("batch_all", "batch_hard", "semi_hard")


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """Return a zero that is still connected to ``embeddings``' graph (gradient 0)."""
    return embeddings.sum() * 0.0


def mean_nonzero(losses: torch.Tensor) -> torch.Tensor:
    """Return the mean of the entries > 0 of ``losses`` (0, in the graph, when there is none).

    pytorch-metric-learning's ``AvgNonZeroReducer``, without a boolean gather: the sum over all
    entries divided by the count of positive ones (no host synchronisation on a GPU).
    """
    return losses.sum() / (losses > 0).sum().clamp_min(1)


@register("triplet_margin")
class TripletMarginLoss(TupleLoss):
    """Triplet margin loss ``h(d(a, p) - d(a, n) + margin)`` over mined triplets.

    ``h`` is the hinge ``max(0, x)``, or ``softplus(x) = log(1 + e^x)`` with ``soft_margin``
    (then ``margin`` is not added; Hermans et al. 2017). Mining and reduction:

    - ``batch_all``: every valid triplet ``(a, p, n)`` (``a != p`` share a label, ``n`` has
      another); the mean over triplets whose loss is > 0 (pytorch-metric-learning's
      ``AvgNonZeroReducer``; "batch all" of Hermans et al. 2017, "In Defense of the Triplet
      Loss for Person Re-Identification").
    - ``batch_hard``: per anchor with at least one positive and one negative, its farthest
      positive and nearest negative; the mean over those anchors (Hermans et al. 2017).
    - ``semi_hard``: per positive pair ``(a, p)``, the nearest negative farther than ``p``
      (the farthest negative if none is); the mean over positive pairs (FaceNet, Schroff et al.
      2015, as TensorFlow Addons' ``TripletSemiHardLoss``).

    Given mined tuples (``indices_tuple``, from a miner), the loss is the mean over those
    triplets whose loss is > 0 (pair tuples become triplets, see :class:`TupleLoss`); only
    ``batch_all`` takes them (the other minings choose their own triplets). With
    ``ref_embeddings`` (a cross-batch memory), anchors come from the batch and positives and
    negatives from the reference set. A batch without a valid triplet gives a zero that keeps
    the graph (gradient 0).

    Args:
        margin: The margin (ignored with ``soft_margin``).
        mining: ``batch_all`` (default), ``batch_hard`` or ``semi_hard``.
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
        soft_margin: Use ``softplus(d_ap - d_an)`` instead of the hinge.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(
        self,
        margin: NonNegativeFloat = 0.2,
        mining: str = "batch_all",
        distance: Distance = "euclidean",
        soft_margin: bool = False,
    ) -> None:
        super().__init__()
        check_choice(mining, MINING, kind="mining", error=PlpLossesError)
        check_distance(distance)
        if margin < 0:
            raise PlpLossesError(f"margin must be >= 0, got {margin}")
        self.margin, self.mining, self.distance, self.soft_margin = (
            margin,
            mining,
            distance,
            soft_margin,
        )

    def _hinge(self, difference: torch.Tensor) -> torch.Tensor:
        if self.soft_margin:
            return F.softplus(difference)
        return F.relu(difference + self.margin)

    def tuple_problem(self) -> str | None:
        """Return why mined tuples cannot be given (``mining`` other than ``batch_all``)."""
        if self.mining == "batch_all":
            return None
        return (
            f"triplet_margin with mining = {self.mining!r} chooses its own triplets; "
            "with a miner or a cross-batch memory use mining = 'batch_all' (the default)"
        )

    def compute(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: IndicesTuple | None,
        reference: torch.Tensor,
        ref_labels: torch.Tensor | None,
        own_copies: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the loss (inputs checked by :meth:`TupleLoss.forward`)."""
        distances = pairwise_distance(embeddings, reference, distance=self.distance)
        if indices_tuple is not None:
            anchor, pos, neg = to_triplets(indices_tuple)
            d_ap, d_an = pair_values(distances, anchor, pos), pair_values(distances, anchor, neg)
            losses = self._hinge(d_ap - d_an)
            return mean_nonzero(losses)
        positive, negative = label_masks(labels, ref_labels, own_copies)
        if self.mining == "batch_all":
            # One row per positive pair (a, p), one column per candidate negative: O(P N), not N³.
            anchor, pos = positive.nonzero(as_tuple=True)
            valid = negative[anchor]
            d_ap = distances[anchor, pos].unsqueeze(1)
            return mean_nonzero(self._hinge(d_ap - distances[anchor]).masked_fill(~valid, 0.0))
        if self.mining == "batch_hard":
            anchors = positive.any(1) & negative.any(1)
            if not anchors.any():
                return zero_loss(embeddings)
            hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(1)
            hardest_negative = distances.masked_fill(~negative, float("inf")).amin(1)
            return self._hinge(hardest_positive[anchors] - hardest_negative[anchors]).mean()
        # semi_hard
        has_negative = negative.any(1, keepdim=True)
        pairs = positive & has_negative
        if not pairs.any():
            return zero_loss(embeddings)
        d_an = distances.unsqueeze(1).expand(-1, distances.shape[1], -1)  # [a, p, n] = d(a, n)
        farther = negative.unsqueeze(1) & (d_an > distances.unsqueeze(2))
        semi_hard = d_an.masked_fill(~farther, float("inf")).amin(2)
        farthest = distances.masked_fill(~negative, float("-inf")).amax(1, keepdim=True)
        chosen = torch.where(farther.any(2), semi_hard, farthest.expand_as(semi_hard))
        return self._hinge(distances[pairs] - chosen[pairs]).mean()
