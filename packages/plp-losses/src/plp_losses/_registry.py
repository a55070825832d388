"""The loss registry: ``@register(name)``, ``build(name, **kwargs)``, ``available()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from plp_losses._errors import PlpLossesError

__all__ = ["available", "build", "is_experimental", "register", "registered"]

_LOSSES: dict[str, Callable[..., nn.Module]] = {}
_EXPERIMENTAL: set[str] = set()
F = TypeVar("F", bound=Callable[..., nn.Module])


def register(name: str, *, experimental: bool = False) -> Callable[[F], F]:
    """Return a decorator that registers a loss class (or factory) under ``name``.

    ``experimental=True`` marks a loss whose definition or numerics may still change
    (see :func:`is_experimental`).

    Raises:
        PlpLossesError: ``name`` is registered already.
    """

    def decorator(factory: F) -> F:
        if name in _LOSSES:
            raise PlpLossesError(f"loss {name!r} is already registered")
        _LOSSES[name] = factory
        if experimental:
            _EXPERIMENTAL.add(name)
        return factory

    return decorator


def build(name: str, **kwargs: Any) -> nn.Module:
    """Return a new instance of the loss registered as ``name``, built with ``kwargs``.

    Raises:
        PlpLossesError: ``name`` is unknown (the message lists the valid names), or the
            arguments do not fit the loss.
    """
    factory = registered(name)
    try:
        return factory(**kwargs)
    except TypeError as error:
        raise PlpLossesError(f"loss {name!r}: {error}") from None


def registered(name: str) -> Callable[..., nn.Module]:
    """Return the class (or factory) registered as ``name``."""
    if name not in _LOSSES:
        raise PlpLossesError(f"unknown loss {name!r}; available: {', '.join(available())}")
    return _LOSSES[name]


def available() -> list[str]:
    """Return the names of the registered losses, sorted."""
    return sorted(_LOSSES)


def is_experimental(name: str) -> bool:
    """Return whether the loss registered as ``name`` is marked experimental."""
    registered(name)
    return name in _EXPERIMENTAL
