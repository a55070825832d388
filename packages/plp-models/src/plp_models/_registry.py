"""plp-models' component registries, each plp-core's one :class:`~plp_core.Registry`.

The ``filled`` arguments are the ones :class:`~plp_models.PlpModel` supplies itself (sizes of
the data and of the network, the optimizer a schedule drives); a config gives the rest.
"""

from __future__ import annotations

from typing import Any

from plp_core import Registry
from plp_models._errors import PlpModelsError

__all__ = ["BACKBONES", "HEADS", "OPTIMIZERS", "SCHEDULERS"]

BACKBONES: Registry[Any] = Registry(
    "backbone", error=PlpModelsError, filled=("in_channels", "image_size")
)
HEADS: Registry[Any] = Registry(
    "head", error=PlpModelsError, filled=("in_features", "embedding_size", "num_classes")
)
OPTIMIZERS: Registry[Any] = Registry("optimizer", error=PlpModelsError, filled=("parameters",))
SCHEDULERS: Registry[Any] = Registry(
    "scheduler",
    error=PlpModelsError,
    filled=("optimizer", "total_steps", "steps_per_epoch"),
)
