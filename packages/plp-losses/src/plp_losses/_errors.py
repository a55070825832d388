"""The exceptions plp-losses raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["PlpLossesError"]


class PlpLossesError(PlpError, ValueError):
    """Base class of every error raised by plp-losses (bad names, arguments or inputs)."""
