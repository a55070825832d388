"""The root of every error plp raises for bad input."""

from __future__ import annotations

import re

__all__ = ["PlpError", "error_reason"]


class PlpError(Exception):
    """Base class of every error plp raises for bad input; the message is one line for the user.

    Each package's base error (``PlpLossesError``, ``PlpDataError``, ...) subclasses it, so a
    command line catches this one class to turn bad input into one line and exit code 2.
    """


def error_reason(error: BaseException, limit: int = 200) -> str:
    """Return a third-party error's reason as one whole sentence for a one-line message.

    The first sentence of the first non-empty line (library errors often go on for a paragraph),
    shortened at a word boundary with ``...`` beyond ``limit`` characters; the exception's type
    name when it has no text. Terminal colour codes are removed.

    >>> error_reason(RuntimeError("reading zip archive: failed. This is an internal error."))
    'reading zip archive: failed'
    >>> error_reason(EOFError())
    'EOFError'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    sentence = re.split(r"(?<=[a-z0-9)\]'\"])\.\s+(?=[A-Z])", line, maxsplit=1)[0].rstrip(".")
    if not sentence:
        return type(error).__name__
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return sentence
