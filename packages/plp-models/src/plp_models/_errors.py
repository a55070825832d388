"""The exceptions plp-models raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["PlpModelsError"]


class PlpModelsError(PlpError, ValueError):
    """Base class of every error raised by plp-models (a bad name, argument or shape)."""
