"""The exceptions plp-losses raises."""

from __future__ import annotations

__all__ = ["PlpLossesError"]


class PlpLossesError(ValueError):
    """Base class of every error raised by plp-losses (bad names, arguments or inputs)."""
