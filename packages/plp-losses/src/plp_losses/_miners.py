"""Miners: choose the pairs or triplets of a batch that a pair or triplet loss trains on.

A miner is called ``miner(embeddings, labels, ref_embeddings=None, ref_labels=None)`` and
returns pytorch-metric-learning's index layouts (see :mod:`plp_losses._tuples`): ``(anchor,
positive, negative)`` for triplet miners, ``(anchor1, positive, anchor2, negative)`` for pair
miners, with the same tuples as pytorch-metric-learning's miner of the same name given the same
arguments and distance (its ``LpDistance(normalize_embeddings=False)`` for ``euclidean``; its
``CosineSimilarity`` for ``cosine``, our ``1 - cos``, so a margin ``m`` on a cosine *distance*
is its margin ``1 - m`` on the similarity). Mining runs without gradient.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from plp_core import NonNegativeFloat, Registry, check_choice
from plp_losses._distances import Distance, check_distance, pairwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._tuples import (
    IndicesTuple,
    check_tuple_loss,
    label_masks,
    references,
    triplets_of_masks,
)

__all__ = [
    "MINERS",
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "MinedLoss",
    "Miner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "TripletMarginMiner",
]

MINERS: Registry[Any] = Registry("miner", error=PlpLossesError)

Strategy = Literal["easy", "semihard", "hard", "all"]
STRATEGIES: tuple[Strategy, ...] = ("easy", "semihard", "hard", "all")
TRIPLET_TYPES = ("all", "easy", "semihard", "hard")


class Miner(nn.Module):
    """Base of the miners: distances and label masks in, index tuples out.

    Attributes:
        layout: ``"triplets"`` or ``"pairs"``, the tuple the miner returns.
    """

    layout: ClassVar[str]

    def __init__(self, distance: Distance = "euclidean") -> None:
        super().__init__()
        self.distance = check_distance(distance)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> IndicesTuple:
        """Return the mined tuple of ``embeddings`` (anchors) against the references.

        Args:
            embeddings: ``(N, D)`` batch.
            labels: ``(N,)`` labels.
            ref_embeddings: ``(M, D)`` candidates for positives and negatives (None: the batch).
            ref_labels: ``(M,)`` their labels.
        """
        reference, ref_labels = references(embeddings, labels, ref_embeddings, ref_labels)
        with torch.no_grad():
            other = None if ref_labels is None else reference.detach()
            distances = pairwise_distance(embeddings.detach(), other, distance=self.distance)
            positive, negative = label_masks(labels, ref_labels)
            return self.mine(distances, positive, negative)

    @abstractmethod
    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return the tuple chosen from ``(N, M)`` distances and positive / negative masks."""


def _extreme(
    distances: torch.Tensor, valid: torch.Tensor, largest: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the largest (or smallest) valid distance: ``(values, columns, row has one)``."""
    masked = distances.masked_fill(~valid, float("-inf") if largest else float("inf"))
    values, columns = masked.max(1) if largest else masked.min(1)
    return values, columns, valid.any(1)


def _in_range(
    distances: torch.Tensor, mask: torch.Tensor, bounds: Sequence[float] | None
) -> torch.Tensor:
    if bounds is None:
        return mask
    return mask & (distances >= bounds[0]) & (distances <= bounds[1])


def _check_range(bounds: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if len(bounds) != 2 or not bounds[0] <= bounds[1]:
        raise PlpLossesError(f"{name} must be [low, high] with low <= high, got {list(bounds)}")
    return float(bounds[0]), float(bounds[1])


@MINERS.register("batch_easy_hard", layout="pairs")
class BatchEasyHardMiner(Miner):
    """Per anchor, one positive and one negative chosen by strategy (Xuan et al. 2020).

    Strategies, in distance terms: positives ``hard`` = farthest, ``easy`` = nearest,
    ``semihard`` = farthest nearer than the chosen negative, ``all`` = every one; negatives
    ``hard`` = nearest, ``easy`` = farthest, ``semihard`` = nearest farther than the chosen
    positive, ``all`` = every one. Candidates outside ``allowed_pos_range`` /
    ``allowed_neg_range`` (inclusive ``[low, high]`` distances) are skipped. Anchors without a
    candidate on a chosen side are dropped. Returns pairs ``(a, p, a, n)`` (the ``all`` side
    keeps every pair), as pytorch-metric-learning's ``BatchEasyHardMiner``.

    Args:
        pos_strategy: ``easy`` (default), ``semihard``, ``hard`` or ``all``.
        neg_strategy: ``semihard`` (default), ``easy``, ``hard`` or ``all``.
        allowed_pos_range: ``[low, high]`` distances a positive may have (None: any).
        allowed_neg_range: ``[low, high]`` distances a negative may have (None: any).
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.

    Raises:
        PlpLossesError: Both strategies ``semihard``, or ``semihard`` with ``all``.
    """

    layout: ClassVar[str] = "pairs"

    def __init__(
        self,
        pos_strategy: Strategy = "easy",
        neg_strategy: Strategy = "semihard",
        allowed_pos_range: Sequence[float] | None = None,
        allowed_neg_range: Sequence[float] | None = None,
        distance: Distance = "euclidean",
    ) -> None:
        super().__init__(distance)
        for strategy in (pos_strategy, neg_strategy):
            check_choice(strategy, STRATEGIES, kind="mining strategy", error=PlpLossesError)
        if pos_strategy == neg_strategy == "semihard":
            raise PlpLossesError("pos_strategy and neg_strategy cannot both be 'semihard'")
        if {pos_strategy, neg_strategy} == {"semihard", "all"}:
            raise PlpLossesError("a 'semihard' strategy cannot go with 'all' on the other side")
        self.pos_strategy, self.neg_strategy = pos_strategy, neg_strategy
        self.allowed_pos_range = _check_range(allowed_pos_range, "allowed_pos_range")
        self.allowed_neg_range = _check_range(allowed_neg_range, "allowed_neg_range")

    def _positives(
        self, distances: torch.Tensor, valid: torch.Tensor, below: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if below is not None:  # semihard: nearer than the chosen negative
            valid = valid & (distances < below.unsqueeze(1))
        return _extreme(distances, valid, largest=self.pos_strategy != "easy")

    def _negatives(
        self, distances: torch.Tensor, valid: torch.Tensor, above: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if above is not None:  # semihard: farther than the chosen positive
            valid = valid & (distances > above.unsqueeze(1))
        return _extreme(distances, valid, largest=self.neg_strategy == "easy")

    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return ``(a1, p, a2, n)``: one chosen positive and negative per kept anchor."""
        positive = _in_range(distances, positive, self.allowed_pos_range)
        negative = _in_range(distances, negative, self.allowed_neg_range)
        pos_all, neg_all = self.pos_strategy == "all", self.neg_strategy == "all"
        pos: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
        neg: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
        if self.pos_strategy == "semihard":
            neg = self._negatives(distances, negative)
            pos = self._positives(distances, positive, below=neg[0])
        elif self.neg_strategy == "semihard":
            pos = self._positives(distances, positive)
            neg = self._negatives(distances, negative, above=pos[0])
        else:
            pos = None if pos_all else self._positives(distances, positive)
            neg = None if neg_all else self._negatives(distances, negative)
        rows = torch.arange(len(distances), device=distances.device)
        if pos is not None and neg is not None:
            keep = pos[2] & neg[2]
            return rows[keep], pos[1][keep], rows[keep], neg[1][keep]
        a1, p = (positive.nonzero(as_tuple=True)) if pos is None else (rows[pos[2]], pos[1][pos[2]])
        a2, n = (negative.nonzero(as_tuple=True)) if neg is None else (rows[neg[2]], neg[1][neg[2]])
        return a1, p, a2, n


@MINERS.register("batch_hard", layout="triplets")
class BatchHardMiner(BatchEasyHardMiner):
    """Per anchor, its farthest positive and nearest negative (Hermans et al. 2017).

    Anchors without a positive or a negative are dropped. Returns triplets ``(a, p, n)``, as
    pytorch-metric-learning's ``BatchHardMiner``.

    Args:
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
    """

    layout: ClassVar[str] = "triplets"

    def __init__(self, distance: Distance = "euclidean") -> None:
        super().__init__("hard", "hard", distance=distance)

    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return ``(a, p, n)``: the hardest positive and negative of each kept anchor."""
        a, p, _, n = super().mine(distances, positive, negative)
        return a, p, n


@MINERS.register("multi_similarity", layout="pairs")
class MultiSimilarityMiner(Miner):
    """The pairs that the multi-similarity loss's own mining keeps (Wang et al. 2019).

    A positive ``(a, p)`` is kept when ``d_ap + epsilon > min_n d_an`` (it is not clearly
    nearer than the nearest negative); a negative ``(a, n)`` when ``d_an - epsilon < max_p
    d_ap``. A batch without positive or without negative pairs gives nothing. Returns pairs,
    as pytorch-metric-learning's ``MultiSimilarityMiner``.

    Args:
        epsilon: The margin of the comparison (>= 0).
        distance: ``cosine`` (default), ``euclidean`` or ``squared_euclidean``.
    """

    layout: ClassVar[str] = "pairs"

    def __init__(self, epsilon: NonNegativeFloat = 0.1, distance: Distance = "cosine") -> None:
        super().__init__(distance)
        self.epsilon = epsilon

    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return ``(a1, p, a2, n)``: the informative positive and negative pairs."""
        if not positive.any() or not negative.any():
            empty = torch.empty(0, dtype=torch.long, device=distances.device)
            return empty, empty.clone(), empty.clone(), empty.clone()
        nearest_negative = distances.masked_fill(~negative, float("inf")).amin(1, keepdim=True)
        farthest_positive = distances.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)
        hard_positive = positive & (distances + self.epsilon > nearest_negative)
        hard_negative = negative & (distances - self.epsilon < farthest_positive)
        a1, p = hard_positive.nonzero(as_tuple=True)
        a2, n = hard_negative.nonzero(as_tuple=True)
        return a1, p, a2, n


@MINERS.register("pair_margin", layout="pairs")
class PairMarginMiner(Miner):
    """Positive pairs farther than ``pos_margin`` and negative pairs nearer than ``neg_margin``.

    Returns pairs in row-major order, as pytorch-metric-learning's ``PairMarginMiner``.

    Args:
        pos_margin: Positives with a distance above it are kept.
        neg_margin: Negatives with a distance below it are kept.
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
    """

    layout: ClassVar[str] = "pairs"

    def __init__(
        self, pos_margin: float = 0.2, neg_margin: float = 0.8, distance: Distance = "euclidean"
    ) -> None:
        super().__init__(distance)
        self.pos_margin, self.neg_margin = pos_margin, neg_margin

    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return ``(a1, p, a2, n)``: the pairs on the wrong side of their margin."""
        a1, p = (positive & (distances > self.pos_margin)).nonzero(as_tuple=True)
        a2, n = (negative & (distances < self.neg_margin)).nonzero(as_tuple=True)
        return a1, p, a2, n


@MINERS.register("triplet_margin", layout="triplets")
class TripletMarginMiner(Miner):
    """Triplets by their margin ``m = d_an - d_ap`` (FaceNet's categories).

    ``all``: ``m <= margin`` (the triplets that violate the margin); ``hard``: ``m <= 0`` too
    (the negative is nearer than the positive); ``semihard``: ``0 < m <= margin``; ``easy``:
    ``m > margin``. Returns triplets in lexicographic order, as pytorch-metric-learning's
    ``TripletMarginMiner``.

    Args:
        margin: The margin (>= 0).
        type_of_triplets: ``all`` (default), ``hard``, ``semihard`` or ``easy``.
        distance: ``euclidean`` (default), ``squared_euclidean`` or ``cosine``.
    """

    layout: ClassVar[str] = "triplets"

    def __init__(
        self,
        margin: NonNegativeFloat = 0.2,
        type_of_triplets: Literal["all", "easy", "semihard", "hard"] = "all",
        distance: Distance = "euclidean",
    ) -> None:
        super().__init__(distance)
        check_choice(type_of_triplets, TRIPLET_TYPES, kind="type_of_triplets", error=PlpLossesError)
        self.margin, self.type_of_triplets = margin, type_of_triplets

    def mine(
        self, distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> IndicesTuple:
        """Return ``(a, p, n)``: the triplets of the chosen type."""
        anchor, pos, neg = triplets_of_masks(positive, negative)
        margin = distances[anchor, neg] - distances[anchor, pos]
        if self.type_of_triplets == "easy":
            keep = margin > self.margin
        else:
            keep = margin <= self.margin
            if self.type_of_triplets == "hard":
                keep &= margin <= 0
            elif self.type_of_triplets == "semihard":
                keep &= margin > 0
        return anchor[keep], pos[keep], neg[keep]


class MinedLoss(nn.Module):
    """A pair or triplet loss fed by a miner: ``loss(x, y, miner(x, y))``, called as ``(x, y)``.

    Args:
        loss: A pair or triplet loss (:class:`~plp_losses.TupleLoss`).
        miner: Chooses the pairs or triplets of each batch.

    Raises:
        PlpLossesError: ``loss`` cannot take mined tuples (one line naming both).
    """

    takes: ClassVar[str] = "embeddings"

    def __init__(self, loss: nn.Module, miner: Miner) -> None:
        super().__init__()
        name = next((n for n in MINERS.available() if type(miner) is MINERS.get(n)), "miner")
        self.loss = check_tuple_loss(loss, f"miner {name!r}")
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the loss of the batch on the miner's tuples."""
        return self.loss(embeddings, labels, self.miner(embeddings, labels))
