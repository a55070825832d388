"""plp-core: the ground floor every plp package stands on; standard library only.

The one :class:`Registry` of named components, typed bounds for their arguments
(:class:`Range` and its aliases), the root error :class:`PlpError`, the one "unknown X (did you
mean Y?)" message (:func:`check_choice`), and the vocabularies several packages share.
"""

from plp_core._bounds import (
    MAX_COUNT,
    MAX_INT,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    Parameter,
    PositiveFloat,
    PositiveInt,
    Range,
    check_number,
)
from plp_core._choices import check_choice, did_you_mean, unknown_choice
from plp_core._defaults import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    DEFAULT_MAX_RANK,
    DEFAULT_MODEL,
    DEFAULT_TARGET_FMR,
    PERMUTATIONS,
    RERANK_K1,
    RERANK_K2,
    RERANK_LAMBDA,
)
from plp_core._errors import PlpError, error_reason
from plp_core._files import STORAGE_ERRORS, atomic_write, storage_reason
from plp_core._names import MAX_NAME_LENGTH, NAME_CHARACTERS, check_name
from plp_core._registry import Entry, Registry
from plp_core._vocabulary import DISTANCES, RANKING_METRICS, Distance, RankingMetric

__all__ = [
    # the registry
    "Entry",
    "Registry",
    # typed bounds
    "Parameter",
    "Range",
    "MAX_COUNT",
    "MAX_INT",
    "check_number",
    "Fraction",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    # choices and errors
    "PlpError",
    "error_reason",
    "check_choice",
    "did_you_mean",
    "unknown_choice",
    # files: atomic writes, failed writes in one line
    "STORAGE_ERRORS",
    "atomic_write",
    "storage_reason",
    # safe names (of runs: they become folder names)
    "MAX_NAME_LENGTH",
    "NAME_CHARACTERS",
    "check_name",
    # shared vocabularies and defaults
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "DEFAULT_MAX_RANK",
    "DEFAULT_MODEL",
    "DEFAULT_TARGET_FMR",
    "PERMUTATIONS",
    "RERANK_K1",
    "RERANK_K2",
    "RERANK_LAMBDA",
    "DISTANCES",
    "Distance",
    "RANKING_METRICS",
    "RankingMetric",
]
