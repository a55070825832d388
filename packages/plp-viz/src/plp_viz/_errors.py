"""The exceptions plp-viz raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["PlpVizError"]


class PlpVizError(PlpError, ValueError):
    """Base class of every error raised by plp-viz (bad names, shapes or arguments)."""
