"""Reading checkpoints safely: ``weights_only=True`` always, one clear error for any bad file.

A checkpoint may come from someone else. torch's ``weights_only`` unpickler only rebuilds
tensors, containers and plain values, so a checkpoint whose pickle would run code is refused
before anything runs; plp stores nothing else (hyper-parameters are plain dicts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from plp_core import error_reason
from plp_pipelines._config import Config
from plp_pipelines._errors import RunError

__all__ = [
    "ARCHITECTURE_KEYS",
    "architecture_of",
    "check_architecture",
    "check_resumable",
    "check_sizes",
    "config_architecture",
    "load_model",
    "read_checkpoint",
]

# Hyper-parameters that must agree for two checkpoints to be "the same architecture".
ARCHITECTURE_KEYS = (
    "backbone",
    "head",
    "embedding_size",
    "num_classes",
    "in_channels",
    "image_size",
)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return the checkpoint dict at ``path``, loaded with ``weights_only=True`` on the CPU.

    Raises:
        RunError: The file does not exist, is truncated or corrupt, is not a checkpoint, or
            holds objects other than weights (a pickle that would run code is refused, unrun).
    """
    import plp_models

    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint {path} does not exist")
    try:
        state = plp_models.load_weights(path)
    except plp_models.UnsafeWeightsError as error:
        raise RunError(
            f"refused checkpoint {path}: it holds objects other than weights, which could run "
            f"code ({error.reason}); plp loads checkpoints with weights_only=True"
        ) from None
    except plp_models.UnreadableWeightsError as error:
        raise RunError(
            f"cannot load checkpoint {path}: truncated or corrupt ({error.reason})"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise RunError(f"cannot load checkpoint {path}: no state_dict, not a Lightning checkpoint")
    return state


def _hyper_parameters(state: dict[str, Any], path: Path) -> dict[str, Any]:
    hyper_parameters = state.get("hyper_parameters")
    if not isinstance(hyper_parameters, dict):
        raise RunError(f"checkpoint {path} has no hyper-parameters: not a plp checkpoint")
    return hyper_parameters


def config_architecture(config: Config) -> dict[str, Any]:
    """Return the architecture keys that ``config`` fixes (those it states)."""
    return {
        "backbone": config.model.backbone.model_dump(),
        "head": config.model.head.model_dump(),
        "embedding_size": config.model.embedding_size,
    }


def check_architecture(
    hyper_parameters: dict[str, Any], expected: dict[str, Any], path: Path, against: str
) -> None:
    """Raise RunError naming the first architecture key on which the two disagree."""
    for key in ARCHITECTURE_KEYS:
        if key in expected and _normal(hyper_parameters.get(key)) != _normal(expected[key]):
            raise RunError(
                f"checkpoint {path} is another architecture than {against}: {key} is "
                f"{hyper_parameters.get(key)!r}, not {expected[key]!r}"
            )


def _normal(value: Any) -> Any:
    """Compare tuples and lists alike (TOML gives lists, hyper-parameters may hold tuples)."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def load_model(
    checkpoint: str | Path,
    model: torch.nn.Module | None = None,
    config: Config | None = None,
    against: str = "the run's config",
) -> Any:
    """Return ``model`` with the checkpoint's weights, or the PlpModel the checkpoint describes.

    Args:
        checkpoint: The checkpoint file.
        model: A model object to load the weights into (for runs trained from objects).
        config: When given, the checkpoint must have the architecture this config states.
        against: How to name ``config`` in the error.

    Raises:
        RunError: Unreadable or unsafe checkpoint, another architecture, or weights that do not
            fit the model.
    """
    import plp_models

    path = Path(checkpoint)
    state = read_checkpoint(path)
    if model is None:
        hyper_parameters = _hyper_parameters(state, path)
        if config is not None:
            check_architecture(hyper_parameters, config_architecture(config), path, against)
        check_sizes(hyper_parameters, state["state_dict"], path)
        try:
            model = plp_models.PlpModel(**hyper_parameters)
        except (TypeError, ValueError) as error:
            raise RunError(f"cannot rebuild the model of {path}: {error_reason(error)}") from None
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise RunError(
            f"cannot load checkpoint {path}: its weights do not fit the model "
            f"({error_reason(error)}); is it another architecture?"
        ) from None
    return model


def check_sizes(hyper_parameters: dict[str, Any], weights: dict[str, Any], path: Path) -> None:
    """Raise RunError unless the model the hyper-parameters describe has exactly these weights.

    The model is built on PyTorch's ``meta`` device (shapes only, nothing allocated) and each
    of its weights compared with the checkpoint's. A checkpoint can record any sizes (a class
    count of 10^12 asks for terabytes), but its weights are in the file: once the two agree,
    building the model allocates no more than the file holds.
    """
    import plp_models

    try:
        with torch.device("meta"):
            meta = plp_models.PlpModel(**hyper_parameters)
    except Exception as error:  # sizes that overflow, arguments that do not exist, ...
        raise RunError(f"cannot rebuild the model of {path}: {error_reason(error)}") from None
    expected = {key: tuple(value.shape) for key, value in meta.state_dict().items()}
    stored = {
        key: tuple(value.shape) for key, value in weights.items() if isinstance(value, torch.Tensor)
    }
    for key, shape in expected.items():
        if stored.get(key, shape) != shape:
            raise RunError(
                f"checkpoint {path} does not hold the model its hyper-parameters describe: "
                f"{key} is {list(stored[key])} in the file, {list(shape)} by its recorded sizes "
                f"({_sizes(hyper_parameters)}); refused before building it"
            )
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise RunError(
            f"checkpoint {path} lacks weights of the model its hyper-parameters describe "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )


def check_resumable(path: Path, model: torch.nn.Module, config_file: Path) -> None:
    """Raise RunError unless ``path`` is a safe checkpoint of exactly ``model``.

    Resume builds the model from the run's ``config.toml``; the checkpoint it continues must
    be readable and safe (as :func:`read_checkpoint` checks for ``evaluate``), record the same
    hyper-parameters (a config edited since names its first differing key) and hold weights of
    the model's shapes, all before anything is written.
    """
    state = read_checkpoint(path)
    recorded = _hyper_parameters(state, path)
    built = dict(getattr(model, "hparams", {}))
    for key in sorted(set(recorded) | set(built)):
        if _normal(recorded.get(key)) != _normal(built.get(key)):
            raise RunError(
                f"{config_file} no longer matches {path}: {key} is {built.get(key)!r} by the "
                f"config, {recorded.get(key)!r} in the checkpoint; put the config back, or "
                "train a new run with `invoke train`"
            )
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, value in state["state_dict"].items():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        if key not in expected or shape != expected[key]:
            raise RunError(
                f"checkpoint {path} does not hold the model of {config_file}: weight {key} is "
                f"{list(shape) if shape is not None else type(value).__name__} in the file, "
                f"{list(expected[key]) if key in expected else 'absent'} in the model"
            )
    missing = sorted(set(expected) - set(state["state_dict"]))
    if missing:
        raise RunError(
            f"checkpoint {path} lacks weights of the model of {config_file}: {missing[0]}"
        )


def _sizes(hyper_parameters: dict[str, Any]) -> str:
    keys = ("num_classes", "embedding_size", "in_channels", "image_size")
    return ", ".join(f"{k} = {hyper_parameters[k]!r}" for k in keys if k in hyper_parameters)


def architecture_of(path: str | Path) -> dict[str, Any]:
    """Return the hyper-parameters of the checkpoint at ``path``."""
    return _hyper_parameters(read_checkpoint(path), Path(path))
