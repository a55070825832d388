"""A name -> factory registry: a decorator registers, ``build`` creates, ``available`` lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from plp_models._errors import PlpModelsError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories of ``T``; ``kind`` names what it holds in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Return a decorator that registers a factory under ``name``; duplicates raise."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise PlpModelsError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def build(self, name: str, **kwargs: Any) -> T:
        """Return a new ``T`` built by the factory registered as ``name``."""
        if name not in self._factories:
            raise PlpModelsError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            )
        return self._factories[name](**kwargs)

    def available(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._factories)
