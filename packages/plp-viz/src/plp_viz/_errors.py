"""The exceptions plp-viz raises."""

from __future__ import annotations

__all__ = ["PlpVizError"]


class PlpVizError(ValueError):
    """Base class of every error raised by plp-viz (bad names, shapes or arguments)."""
