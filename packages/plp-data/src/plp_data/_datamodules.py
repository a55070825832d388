"""The datamodule registry: ``build_datamodule(name, **kwargs)`` and ``available_datamodules()``."""

from __future__ import annotations

from typing import Any

from plp_data._base import PlpDataModule
from plp_data._registry import DATAMODULES

__all__ = ["DATAMODULES", "available_datamodules", "build_datamodule", "register_datamodule"]


def register_datamodule(name: str) -> Any:
    """Return a class decorator that registers a datamodule under ``name``."""
    return DATAMODULES.register(name)


def build_datamodule(name: str, **kwargs: Any) -> PlpDataModule:
    """Return the datamodule registered as ``name``, built with ``kwargs``."""
    return DATAMODULES.build(name, **kwargs)


def available_datamodules() -> list[str]:
    """Return the names of the registered datamodules."""
    return DATAMODULES.available()
