"""Every named component of a config checked against its registry before anything runs.

Each ``{name = ..., args = {...}}`` section is looked up in its plp registry (one
:class:`plp_core.Registry` per kind) and its ``args`` are validated by a pydantic model built
from the component's own signature and type hints, bounds included (``Range``): unknown keys,
wrong types and out-of-range values are one line naming the file, the key, the given value and
what is allowed. Values pydantic converts (a TOML list for a tuple) are stored converted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from plp_core import check_number
from plp_pipelines._catalog import CATALOG, registry
from plp_pipelines._config import Config, Named
from plp_pipelines._errors import ConfigError

__all__ = ["Component", "check_components", "check_names", "components_of"]


@dataclass(frozen=True)
class Component:
    """One named component of a config.

    Attributes:
        key: Where it sits in the config (``optimizer``, ``loss.terms.1``, ``data.args.sampler``).
        registry: The :class:`plp_core.Registry` of its kind.
        name: The registered name.
        args: Its arguments (the config's own dict: validated values are written back).
    """

    key: str
    registry: Any
    name: str
    args: dict[str, Any]


def components_of(
    config: Config, registries: Callable[[str], Any] = registry
) -> Iterator[Component]:
    """Yield every named component of ``config`` with its registry.

    Args:
        config: The recipe.
        registries: Returns the registry a key of :data:`CATALOG` names: by default the real
            one (importing its package); ``CATALOG.__getitem__`` gives only its names.
    """
    data = config.data
    yield Component("data", registries("plp_data.DATAMODULES"), data.name, data.args)
    sampler = config.data.args.get("sampler")
    if isinstance(sampler, dict) and isinstance(sampler.get("name"), str):
        sampler.setdefault("args", {})
        if isinstance(sampler["args"], dict):
            samplers = registries("plp_data.SAMPLERS")
            yield Component("data.args.sampler", samplers, sampler["name"], sampler["args"])
    backbone = config.model.backbone
    yield Component("model.backbone", registries("plp_models.BACKBONES"), *_named(backbone))
    yield Component("model.head", registries("plp_models.HEADS"), *_named(config.model.head))
    single = config.loss.terms is None
    for index, term in enumerate(config.loss.as_terms()):
        key = "loss" if single else f"loss.terms.{index}"
        # The single form's term is a copy: check (and store) the config's own args.
        args = config.loss.args if single else term.args
        yield Component(key, registries("plp_losses.LOSSES"), term.name, args)
        if term.miner is not None:
            miners = registries("plp_losses.MINERS")
            yield Component(f"{key}.miner", miners, *_named(term.miner))
    for index, dataset in enumerate(config.evaluate.datasets):
        if not isinstance(dataset, str):  # a file or a name is checked when it is read
            key = f"evaluate.datasets.{index}"
            yield Component(key, registries("plp_data.DATAMODULES"), *_named(dataset))
    yield Component("optimizer", registries("plp_models.OPTIMIZERS"), *_named(config.optimizer))
    yield Component("scheduler", registries("plp_models.SCHEDULERS"), *_named(config.scheduler))


def _named(section: Named) -> tuple[str, dict[str, Any]]:
    return section.name, section.args


def check_names(config: Config, source: str | None = None) -> None:
    """Raise ConfigError for an unknown component name, before torch or Lightning is imported.

    The names are looked up in :data:`CATALOG` (the registries' names, kept equal to them by a
    test); the message is the registry's own. :func:`check_components` checks the same names
    (and the arguments) against the real registries.
    """
    _check_names(config, source or config.source, CATALOG.__getitem__)


def _check_names(config: Config, source: str, registries: Callable[[str], Any]) -> None:
    attributions = registries("plp_viz.ATTRIBUTIONS")
    if config.explain.algorithm not in attributions:
        unknown = attributions.unknown_message(config.explain.algorithm)
        raise ConfigError(f"{source}: explain.algorithm: {unknown}")
    for component in components_of(config, registries):
        if component.name not in component.registry:
            unknown = component.registry.unknown_message(component.name)
            raise ConfigError(f"{source}: {component.key}.name: {unknown}")


def check_components(config: Config, source: str | None = None) -> None:
    """Check every component name and argument of ``config``; store validated values.

    Raises:
        ConfigError: One line: ``<file>: <key>: <problem> (given: <value>)``, naming the
            allowed names or keys.
    """
    source = source or config.source
    _check_names(config, source, registry)
    for component in components_of(config):
        model = _arguments_model(component.registry, component.name)
        try:
            validated = model.model_validate(component.args)
        except ValidationError as error:
            raise ConfigError(_describe(error, source, component, model)) from None
        for key in component.args:
            if key in model.model_fields:
                component.args[key] = _plain(getattr(validated, key))
        _check_numbers(component, source)


def _check_numbers(component: Component, source: str) -> None:
    """Raise ConfigError for NaN, infinities or 64-bit overflows in ``component``'s arguments.

    Bounded or not (``float`` alone takes NaN), inside lists and tables too: each would pass
    here and break later, or make ``config.toml`` unreadable. A bound with ``finite=False``
    lets infinities through.
    """
    parameters, _ = component.registry.parameters(component.name)
    for key, value in component.args.items():
        bounds = parameters[key].ranges() if key in parameters else []
        try:
            check_number(value, finite=all(bound.finite for bound in bounds))
        except ValueError as error:
            raise ConfigError(
                f"{source}: {component.key}.args.{key}: {error} (given: {value!r})"
            ) from None


@functools.cache
def _arguments_model(registry: Any, name: str) -> type[BaseModel]:
    """Return a pydantic model of the arguments ``name`` takes (all optional: filled or default)."""
    parameters, takes_kwargs = registry.parameters(name)
    fields: dict[str, Any] = {
        parameter.name: (parameter.annotation, None) for parameter in parameters.values()
    }
    config = ConfigDict(
        extra="allow" if takes_kwargs else "forbid", arbitrary_types_allowed=True, strict=False
    )
    return create_model(f"{registry.kind}:{name}", __config__=config, **fields)


def _describe(
    error: ValidationError, source: str, component: Component, model: type[BaseModel]
) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    key = f"{component.key}.args.{where}"
    kind = f"{component.registry.kind} {component.name!r}"
    if problem["type"] == "extra_forbidden":
        allowed = ", ".join(model.model_fields) or "no arguments"
        return f"{source}: unknown key {key!r}: {kind} takes {allowed}"
    message = str(problem["msg"]).removeprefix("Value error, ")
    if problem["type"] == "literal_error":
        message = message.replace("Input should be", "expected")
    return f"{source}: {key}: {message} (given: {problem.get('input')!r})"


def _plain(value: Any) -> Any:
    """Return ``value`` as TOML can write it back (tuples as lists, models as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
