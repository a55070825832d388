"""plp-losses: metric-learning losses for PyTorch, depending on torch (and plp-core) alone.

A loss is an ``nn.Module`` called as ``loss(embeddings, labels) -> scalar`` (``cross_entropy``
takes logits instead; each class says which in its ``takes`` attribute).
"""

from plp_losses._classes import ArcFaceLoss, CenterLoss
from plp_losses._cross_entropy import CrossEntropyLoss
from plp_losses._distances import pairwise_distance
from plp_losses._errors import PlpLossesError
from plp_losses._pairs import ContrastiveLoss, MultiSimilarityLoss, NTXentLoss
from plp_losses._population import PopulationBasedTripletLoss
from plp_losses._registry import (
    LOSSES,
    available,
    build,
    is_experimental,
    register,
    registered,
)
from plp_losses._triplet import TripletMarginLoss

__all__ = [
    # registry
    "available",
    "build",
    "is_experimental",
    "register",
    "registered",
    "LOSSES",
    # losses
    "ArcFaceLoss",
    "CenterLoss",
    "ContrastiveLoss",
    "CrossEntropyLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "PopulationBasedTripletLoss",
    "TripletMarginLoss",
    # building blocks
    "pairwise_distance",
    # errors
    "PlpLossesError",
]
