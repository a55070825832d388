"""``[distill]``: the teacher run a student learns from, loaded and checked before training."""

from __future__ import annotations

from typing import Any

import plp_models
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._protocols import DataFacts

__all__ = ["load_teacher"]


def load_teacher(config: Config, data: DataFacts) -> plp_models.PlpModel | None:
    """Return ``[distill] teacher``'s best model, frozen in eval mode (None: no ``[distill]``).

    The teacher must be a finished plp run trained from a config, on images of the student's
    channels and size (it sees the student's batches).

    Raises:
        ConfigError: One line naming ``distill.teacher``: no such run, an unfinished one, an
            unreadable checkpoint, or images of another shape.
    """
    if config.distill is None:
        return None
    from plp_pipelines._run import Run

    where = f"{config.source}: distill.teacher"
    try:
        run = Run.open(config.distill.teacher)
        teacher = run.load_model()
    except RunError as error:
        raise ConfigError(f"{where}: {error}") from None
    if not isinstance(teacher, plp_models.PlpModel):
        raise ConfigError(f"{where}: {run.root} is not a PlpModel run")
    for key in ("in_channels", "image_size"):
        theirs, ours = teacher.hparams[key], getattr(data, key)
        if list(_as_list(theirs)) != list(_as_list(ours)):
            raise ConfigError(
                f"{where}: the teacher {run.root} was trained with {key} = {_as_list(theirs)}, "
                f"the student's data has {key} = {_as_list(ours)}: a teacher sees the student's "
                "batches"
            )
    teacher.eval().requires_grad_(False)
    return teacher


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
