"""plp-losses: metric-learning losses for PyTorch, depending on torch (and plp-core) alone.

A loss is an ``nn.Module`` called as ``loss(embeddings, labels) -> scalar`` (``cross_entropy``
takes logits instead; each class says which in its ``takes`` attribute). Pair and triplet losses
also take mined tuples from a miner (:data:`MINERS`) and reference embeddings (a
:class:`CrossBatchMemory`); distillation losses (:data:`DISTILLATION`) take a student's and a
teacher's embeddings.
"""

from plp_losses._classes import ArcFaceLoss, CenterLoss
from plp_losses._cross_entropy import CrossEntropyLoss
from plp_losses._distances import pairwise_distance
from plp_losses._distill import DISTILLATION, EmbeddingMSELoss, RelationalDistillationLoss
from plp_losses._errors import PlpLossesError
from plp_losses._memory import CrossBatchMemory
from plp_losses._miners import (
    MINERS,
    BatchEasyHardMiner,
    BatchHardMiner,
    MinedLoss,
    Miner,
    MultiSimilarityMiner,
    PairMarginMiner,
    TripletMarginMiner,
)
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
from plp_losses._tuples import TupleLoss, check_tuple_loss

__all__ = [
    # registries
    "available",
    "build",
    "is_experimental",
    "register",
    "registered",
    "DISTILLATION",
    "LOSSES",
    "MINERS",
    # losses
    "ArcFaceLoss",
    "CenterLoss",
    "ContrastiveLoss",
    "CrossEntropyLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "PopulationBasedTripletLoss",
    "TripletMarginLoss",
    "TupleLoss",
    # miners and cross-batch memory
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "MinedLoss",
    "Miner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "TripletMarginMiner",
    "CrossBatchMemory",
    "check_tuple_loss",
    # distillation
    "EmbeddingMSELoss",
    "RelationalDistillationLoss",
    # building blocks
    "pairwise_distance",
    # errors
    "PlpLossesError",
]
