"""plp-data's registries (plp-core's one :class:`~plp_core.Registry`), raising PlpDataError."""

from __future__ import annotations

from typing import Any

from plp_core import Registry
from plp_data._errors import PlpDataError

__all__ = ["DATAMODULES", "SAMPLERS"]

DATAMODULES: Registry[Any] = Registry("datamodule", error=PlpDataError)
# The datamodule fills in the labels, the seed and the DDP replicas itself.
SAMPLERS: Registry[Any] = Registry(
    "sampler", error=PlpDataError, filled=("labels", "seed", "num_replicas", "rank")
)
