"""Defaults that several packages state, stated once here (each package reads them)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "DEFAULT_MAX_RANK",
    "DEFAULT_MODEL",
    "DEFAULT_TARGET_FMR",
    "PERMUTATIONS",
    "RERANK_K1",
    "RERANK_K2",
    "RERANK_LAMBDA",
]

#: The longest CMC curve reported and drawn (ranks 1..50), as in torchreid and fast-reid.
DEFAULT_MAX_RANK = 50

#: Bootstrap resamples of the confidence intervals (``[evaluate] bootstrap``; 0 turns them off).
BOOTSTRAP_RESAMPLES = 1000

#: Confidence level of every interval plp reports (bootstrap, paired comparison, seeds).
CONFIDENCE = 0.95

#: Random sign flips of the paired randomisation test (``invoke compare --permutations``).
PERMUTATIONS = 10000

#: The false-match rate a run's "no match" threshold is calibrated at (``[evaluate] target_fmr``):
#: one wrong pair in a thousand accepted.
DEFAULT_TARGET_FMR = 1e-3

#: k-reciprocal re-ranking (Zhong et al. 2017) as torchreid and fast-reid run it.
RERANK_K1 = 20
RERANK_K2 = 6
RERANK_LAMBDA = 0.3

#: The model a config (or ``plp_models.PlpModel``) gets when it names none: a small convnet,
#: an embedding + classifier head, cross-entropy, Adam at 1e-3, no schedule.
DEFAULT_MODEL: MappingProxyType[str, Any] = MappingProxyType(
    {
        "backbone": {"name": "small_convnet", "args": {}},
        "head": {"name": "embedding_classifier", "args": {}},
        "embedding_size": 128,
        "loss": {"name": "cross_entropy", "args": {}},
        "optimizer": {"name": "adam", "args": {"lr": 1e-3}},
        "scheduler": {"name": "none", "args": {}},
    }
)
