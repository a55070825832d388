"""The loss registry, :data:`LOSSES` (plp-core's one :class:`~plp_core.Registry`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from plp_core import Registry
from plp_losses._errors import PlpLossesError

__all__ = ["LOSSES", "available", "build", "is_experimental", "register", "registered"]

F = TypeVar("F", bound=Callable[..., Any])

LOSSES: Registry[Any] = Registry("loss", error=PlpLossesError)


def register(name: str, *, experimental: bool = False) -> Callable[[F], F]:
    """Return a decorator that registers a loss class (or factory) under ``name``.

    ``experimental=True`` marks a loss whose definition or numerics may still change
    (see :func:`is_experimental`).

    Raises:
        PlpLossesError: ``name`` is registered already.
    """
    return LOSSES.register(name, experimental=experimental)


def build(name: str, **kwargs: Any) -> Any:
    """Return a new instance of the loss registered as ``name``, built with ``kwargs``.

    Raises:
        PlpLossesError: ``name`` is unknown (the message lists the valid names), or the
            arguments do not fit the loss.
    """
    return LOSSES.build(name, **kwargs)


def registered(name: str) -> Callable[..., Any]:
    """Return the class (or factory) registered as ``name``."""
    return LOSSES.get(name)


def available() -> list[str]:
    """Return the names of the registered losses, sorted."""
    return LOSSES.available()


def is_experimental(name: str) -> bool:
    """Return whether the loss registered as ``name`` is marked experimental."""
    return LOSSES.is_experimental(name)
