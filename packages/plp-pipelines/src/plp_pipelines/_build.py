"""Build the datamodule and the model that a config names."""

from __future__ import annotations

from typing import Any

import plp_data
import plp_losses
import plp_models
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError

__all__ = ["build_datamodule", "build_model", "loss_terms"]


def build_datamodule(config: Config, source: str | None = None) -> plp_data.PlpDataModule:
    """Return the datamodule of ``config.data``, seeded with the config's ``seed`` unless set."""
    args: dict[str, Any] = {"seed": config.seed, **config.data.args}
    try:
        return plp_data.build_datamodule(config.data.name, **args)
    except plp_data.PlpDataError as error:
        raise ConfigError(f"{config.source}: data: {error}") from None


def build_model(
    config: Config, datamodule: Any, teacher: plp_models.PlpModel | None = None
) -> plp_models.PlpModel:
    """Return a fresh :class:`plp_models.PlpModel` for ``config`` sized for ``datamodule``.

    With ``teacher`` (``[distill]``'s, loaded by :func:`plp_pipelines._distill.load_teacher`)
    the model distils from it.
    """
    sizes: dict[str, Any] = {}
    if config.model.embedding_size is not None:
        sizes["embedding_size"] = config.model.embedding_size
    if teacher is not None and config.distill is not None:
        sizes["distillation"] = {
            "loss": config.distill.loss,
            "weight": config.distill.weight,
            "teacher_size": teacher.head.out_features,
        }
    try:
        model = plp_models.PlpModel(
            num_classes=datamodule.num_classes,
            in_channels=datamodule.in_channels,
            image_size=datamodule.image_size,
            backbone=config.model.backbone.model_dump(),
            head=config.model.head.model_dump(),
            losses=loss_terms(config),
            optimizer=config.optimizer.model_dump(),
            scheduler=config.scheduler.model_dump(),
            **sizes,
        )
    except (plp_models.PlpModelsError, plp_losses.PlpLossesError) as error:
        raise ConfigError(f"{config.source}: {error}") from None  # names the component
    if teacher is not None:
        model.attach_teacher(teacher)
    return model


def loss_terms(config: Config) -> list[dict[str, Any]]:
    """Return ``[loss]`` as the model's loss specs (a term's unset miner and memory left out)."""
    return [term.model_dump(exclude_none=True) for term in config.loss.as_terms()]
