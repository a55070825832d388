"""The exceptions plp-eval raises."""

from __future__ import annotations

__all__ = ["PlpEvalError"]


class PlpEvalError(ValueError):
    """Base class of every error raised by plp-eval (bad arrays, names or arguments)."""
