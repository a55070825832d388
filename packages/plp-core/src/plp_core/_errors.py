"""The root of every error plp raises for bad input."""

from __future__ import annotations

__all__ = ["PlpError"]


class PlpError(Exception):
    """Base class of every error plp raises for bad input; the message is one line for the user.

    Each package's base error (``PlpLossesError``, ``PlpDataError``, ...) subclasses it, so a
    command line catches this one class to turn bad input into one line and exit code 2.
    """
