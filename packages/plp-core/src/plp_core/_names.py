"""Names that become file or folder names (run names): a safe character set."""

from __future__ import annotations

__all__ = ["MAX_NAME_LENGTH", "NAME_CHARACTERS", "check_name"]

MAX_NAME_LENGTH = 100
"""The longest name :func:`check_name` accepts (file systems allow 255 bytes per name)."""

NAME_CHARACTERS = "letters, digits and . _ + - (starting with a letter or digit)"
"""What :func:`check_name` accepts, in words, for messages."""

_PUNCTUATION = frozenset("._+-")


def check_name(value: str) -> str:
    """Return ``value`` if it is a safe name for a file or folder; else raise ValueError.

    Safe: 1 to :data:`MAX_NAME_LENGTH` characters, each a letter or digit (of any script) or one
    of ``. _ + -``, the first a letter or digit. So no slashes, spaces, newlines or other control
    characters, no ``..`` or hidden name, nothing a shell or a later TOML read would take apart.

    >>> check_name("cifar_triplet-v2")
    'cifar_triplet-v2'
    >>> check_name("a b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: must be a name of letters, digits and . _ + - ...; ' ' is not allowed
    """
    if not value:
        raise ValueError(f"must be a name of {NAME_CHARACTERS}; it is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"must be a name of at most {MAX_NAME_LENGTH} characters")
    bad = next((c for c in value if not (c.isalnum() or c in _PUNCTUATION)), None)
    if bad is not None:
        raise ValueError(f"must be a name of {NAME_CHARACTERS}; {bad!r} is not allowed")
    if not value[0].isalnum():
        raise ValueError(f"must be a name of {NAME_CHARACTERS}; it starts with {value[0]!r}")
    return value
