"""The exceptions plp-data raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["DataNotFoundError", "PlpDataError"]


class PlpDataError(PlpError):
    """Base class of every error raised by plp-data."""


class DataNotFoundError(PlpDataError, FileNotFoundError):
    """A dataset's files are not where they were expected; the message says what to put where."""
