"""Pair-based losses: contrastive, multi-similarity and (label-aware) NT-Xent."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from plp_core import NonNegativeFloat, PositiveFloat
from plp_losses._distances import Distance, check_distance, pairwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._registry import register
from plp_losses._triplet import mean_nonzero, zero_loss
from plp_losses._tuples import (
    IndicesTuple,
    TupleLoss,
    label_masks,
    pair_masks,
    pair_values,
    to_pairs,
)

__all__ = ["ContrastiveLoss", "MultiSimilarityLoss", "NTXentLoss"]


@register("contrastive")
class ContrastiveLoss(TupleLoss):
    """Contrastive loss over all pairs (Hadsell, Chopra & LeCun 2006).

    Positive pairs ``(i != j, y_i = y_j)``: ``max(0, d_ij - pos_margin)``; negative pairs
    ``(y_i != y_j)``: ``max(0, neg_margin - d_ij)``. Reduction: the mean of the positive-pair
    losses that are > 0 plus the mean of the negative-pair losses that are > 0, each 0 when there
    is none (pytorch-metric-learning's ``AvgNonZeroReducer``); mined pairs count pair by pair,
    repeats included. A batch without pairs, or without violations, gives a zero that keeps the
    graph.

    Args:
        pos_margin: Distance under which positive pairs cost nothing.
        neg_margin: Distance over which negative pairs cost nothing.
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(
        self,
        pos_margin: NonNegativeFloat = 0.0,
        neg_margin: NonNegativeFloat = 1.0,
        distance: Distance = "euclidean",
    ) -> None:
        super().__init__()
        check_distance(distance)
        self.pos_margin, self.neg_margin, self.distance = pos_margin, neg_margin, distance

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
        if indices_tuple is None:  # over the matrix: pairs outside the masks count 0
            positive, negative = label_masks(labels, ref_labels, own_copies)
            # (distances >= 0: no hinge at a zero margin; the sums keep the graph)
            reach = distances if self.pos_margin == 0 else F.relu(distances - self.pos_margin)
            pos = torch.where(positive, reach, 0.0)
            neg = torch.where(negative, F.relu(self.neg_margin - distances), 0.0)
            return _mean_positive(pos) + _mean_positive(neg)
        # pair by pair, repeats included (pytorch-metric-learning's pair-based losses)
        a1, p, a2, n = to_pairs(indices_tuple)
        pos = F.relu(pair_values(distances, a1, p) - self.pos_margin)
        neg = F.relu(self.neg_margin - pair_values(distances, a2, n))
        return mean_nonzero(pos) + mean_nonzero(neg) + zero_loss(embeddings)


def _mean_positive(losses: torch.Tensor) -> torch.Tensor:
    """:func:`mean_nonzero` of non-negative ``losses`` (one counting pass)."""
    return losses.sum() / torch.count_nonzero(losses).clamp_min(1)


def _log1p_sum_exp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``log(1 + sum_j mask_ij exp(values_ij))`` per row, without overflow."""
    masked = values.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros_like(values[:, :1])
    return torch.logsumexp(torch.cat([zeros, masked], dim=1), dim=1)


@register("multi_similarity")
class MultiSimilarityLoss(TupleLoss):
    """Multi-similarity loss (Wang et al. 2019, CVPR).

    With the similarity ``s_ij = 1 - d_ij`` (the cosine similarity for the default ``cosine``
    distance), per anchor ``i``::

        L_i = 1/alpha log(1 + sum_{p in P_i} exp(-alpha (s_ip - base)))
            + 1/beta  log(1 + sum_{n in N_i} exp( beta (s_in - base)))

    computed with log-sum-exp (no overflow). Reduction: the mean over all anchors (an anchor
    with no positive or negative contributes 0 for that term), as pytorch-metric-learning.
    Mined pairs (``indices_tuple``, e.g. from the ``multi_similarity`` miner) restrict ``P_i``
    and ``N_i`` to them; the loss itself mines nothing.

    Args:
        alpha: Weight of positive pairs.
        beta: Weight of negative pairs.
        base: The similarity margin ``lambda``.
        distance: ``cosine`` (default), ``euclidean`` or ``squared_euclidean``.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(
        self,
        alpha: PositiveFloat = 2.0,
        beta: PositiveFloat = 50.0,
        base: float = 0.5,
        distance: Distance = "cosine",
    ) -> None:
        super().__init__()
        check_distance(distance)
        if alpha <= 0 or beta <= 0:
            raise PlpLossesError(f"alpha and beta must be > 0, got {alpha} and {beta}")
        self.alpha, self.beta, self.base, self.distance = alpha, beta, base, distance

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
        similarity = 1.0 - pairwise_distance(embeddings, reference, distance=self.distance)
        positive, negative = (
            label_masks(labels, ref_labels, own_copies)
            if indices_tuple is None
            else pair_masks(indices_tuple, similarity.shape, similarity.device)
        )
        pos = _log1p_sum_exp(-self.alpha * (similarity - self.base), positive) / self.alpha
        neg = _log1p_sum_exp(self.beta * (similarity - self.base), negative) / self.beta
        return (pos + neg).mean()


@register("ntxent")
class NTXentLoss(TupleLoss):
    """NT-Xent over labels (Chen et al. 2020, SimCLR; labels give the positives, as in PML).

    With ``s_ij = 1 - d_ij`` (cosine similarity by default) and temperature ``t``, per positive
    pair ``(a, p)`` (``a != p``, same label) and the negatives ``N_a`` of ``a``::

        L_ap = -log( exp(s_ap / t) / (exp(s_ap / t) + sum_{n in N_a} exp(s_an / t)) )

    computed with log-sum-exp. Reduction: the mean over positive pairs (pytorch-metric-learning's
    ``NTXentLoss``). With mined pairs, ``N_a`` is the mined negatives of ``a`` (one listed twice
    counts twice). A batch without positive pairs gives a zero that keeps the graph.

    Args:
        temperature: ``t`` (> 0).
        distance: ``cosine`` (default), ``euclidean`` or ``squared_euclidean``.
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(self, temperature: PositiveFloat = 0.07, distance: Distance = "cosine") -> None:
        super().__init__()
        check_distance(distance)
        if not temperature > 0 or math.isinf(temperature):
            raise PlpLossesError(f"temperature must be finite and > 0, got {temperature}")
        self.temperature, self.distance = temperature, distance

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
        logits = (1.0 - distances) / self.temperature
        if indices_tuple is None:
            positive, negative = label_masks(labels, ref_labels, own_copies)
            anchor, pos = positive.nonzero(as_tuple=True)
            # log of how often each (anchor, negative) pair counts: 0 or -inf here
            weight = torch.zeros_like(logits).masked_fill(~negative, float("-inf"))
        else:
            anchor, pos, a2, n = to_pairs(indices_tuple)
            # A negative pair listed twice counts twice (as pytorch-metric-learning's sum).
            counts = torch.zeros_like(logits).index_put_((a2, n), logits.new_ones(len(n)), True)
            weight = counts.log()
        if len(anchor) == 0:
            return zero_loss(embeddings)
        negatives = (logits + weight).index_select(0, anchor)
        positives = pair_values(logits, anchor, pos)
        scores = torch.cat([positives.unsqueeze(1), negatives], dim=1)
        return (torch.logsumexp(scores, dim=1) - positives).mean()
