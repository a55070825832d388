"""The one place the "unknown X (did you mean Y?)" message is written."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

from plp_core._errors import PlpError

__all__ = ["check_choice", "did_you_mean", "unknown_choice"]

T = TypeVar("T")


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close.

    >>> did_you_mean("tripplet", ["triplet_margin", "contrastive"])
    " (did you mean 'triplet_margin'?)"
    """
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_choice(
    kind: str, value: object, choices: Iterable[str], *, flag: str | None = None
) -> str:
    """Return the one-line message for a value that is not one of ``choices``.

    Two forms, one for a named component and one for a command-line flag:

    >>> unknown_choice("distance", "cosin", ["euclidean", "cosine"])
    "unknown distance 'cosin'; available: euclidean, cosine (did you mean 'cosine'?)"
    >>> unknown_choice("method", "map", ["accuracy", "reid"], flag="--method")
    "--method 'map' is not a method; expected one of accuracy, reid"
    >>> unknown_choice("export format", "tflite", ["onnx"], flag="--format")
    "--format 'tflite' is not an export format; expected one of onnx"
    """
    names = [str(choice) for choice in choices]
    if flag is not None:
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        return f"{flag} {value!r} is not {article} {kind}; expected one of {', '.join(names)}"
    return f"unknown {kind} {value!r}; available: {', '.join(names)}{did_you_mean(value, names)}"


def check_choice(
    value: T,
    choices: Iterable[T],
    *,
    kind: str,
    error: type[Exception] = PlpError,
    flag: str | None = None,
) -> T:
    """Return ``value`` if it is one of ``choices``; else raise ``error`` saying what is.

    Args:
        value: The value given.
        choices: The allowed values, in the order the message lists them.
        kind: What the values are, as the message names them ("distance", "backend", ...).
        error: The exception class to raise (the calling package's base error).
        flag: The command-line flag that gave the value, for the flag form of the message.

    Raises:
        Exception: (``error``) ``value`` is not a choice; the message is :func:`unknown_choice`'s.
    """
    allowed = list(choices)
    if value in allowed:
        return value
    raise error(unknown_choice(kind, value, [str(c) for c in allowed], flag=flag))
