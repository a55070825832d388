"""The exceptions plp-eval raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["PlpEvalError"]


class PlpEvalError(PlpError, ValueError):
    """Base class of every error raised by plp-eval (bad arrays, names or arguments)."""
