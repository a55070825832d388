"""plp-core: the ground floor every plp package stands on; standard library only.

The one :class:`Registry` of named components, typed bounds for their arguments
(:class:`Range` and its aliases), the root error :class:`PlpError`, the one "unknown X (did you
mean Y?)" message (:func:`check_choice`), and the vocabularies several packages share.
"""

from plp_core._bounds import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    Parameter,
    PositiveFloat,
    PositiveInt,
    Range,
)
from plp_core._choices import check_choice, did_you_mean, unknown_choice
from plp_core._errors import PlpError
from plp_core._registry import Entry, Registry
from plp_core._vocabulary import DISTANCES, RANKING_METRICS, Distance, RankingMetric

__all__ = [
    # the registry
    "Entry",
    "Registry",
    # typed bounds
    "Parameter",
    "Range",
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    # choices and errors
    "PlpError",
    "check_choice",
    "did_you_mean",
    "unknown_choice",
    # shared vocabularies
    "DISTANCES",
    "Distance",
    "RANKING_METRICS",
    "RankingMetric",
]
