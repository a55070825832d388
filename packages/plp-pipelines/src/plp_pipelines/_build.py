"""Build the datamodule and the model that a config names."""

from __future__ import annotations

from typing import Any

import plp_data
import plp_losses
import plp_models
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError

__all__ = ["build_datamodule", "build_model"]


def build_datamodule(config: Config, source: str | None = None) -> plp_data.PlpDataModule:
    """Return the datamodule of ``config.data``, seeded with the config's ``seed`` unless set."""
    args: dict[str, Any] = {"seed": config.seed, **config.data.args}
    try:
        return plp_data.build_datamodule(config.data.name, **args)
    except plp_data.PlpDataError as error:
        raise ConfigError(f"{config.source}: data: {error}") from None


def build_model(config: Config, datamodule: Any) -> plp_models.PlpModel:
    """Return a fresh :class:`plp_models.PlpModel` for ``config`` sized for ``datamodule``."""
    sizes: dict[str, Any] = {}
    if config.model.embedding_size is not None:
        sizes["embedding_size"] = config.model.embedding_size
    try:
        return plp_models.PlpModel(
            num_classes=datamodule.num_classes,
            in_channels=datamodule.in_channels,
            image_size=datamodule.image_size,
            backbone=config.model.backbone.model_dump(),
            head=config.model.head.model_dump(),
            losses=[term.model_dump() for term in config.loss.as_terms()],
            optimizer=config.optimizer.model_dump(),
            scheduler=config.scheduler.model_dump(),
            **sizes,
        )
    except (plp_models.PlpModelsError, plp_losses.PlpLossesError) as error:
        raise ConfigError(f"{config.source}: model/loss: {error}") from None
