"""The exceptions plp-models raises."""

from __future__ import annotations

__all__ = ["PlpModelsError"]


class PlpModelsError(ValueError):
    """Base class of every error raised by plp-models (a bad name, argument or shape)."""
