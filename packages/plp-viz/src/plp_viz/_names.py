"""Class names on plots: checked against the labels, shortened so that long lists stay legible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from plp_viz._errors import PlpVizError

__all__ = ["MAX_NAME_CHARS", "check_class_names", "label_text", "shorten"]

MAX_NAME_CHARS = 18
"""Longer class names are cut to this many characters, the last one an ellipsis."""


def shorten(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """Return ``text``, or its first ``limit - 1`` characters and an ellipsis when longer.

    Example:
        >>> shorten("Black_footed_Albatross", 10)
        'Black_foo…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_class_names(
    labels: Any, class_names: Sequence[str] | None, where: str
) -> list[str] | None:
    """Return ``class_names`` as a list after checking that every label indexes it, or None.

    Labels index ``class_names`` from 0, as in torchvision's ``classes``.

    Raises:
        PlpVizError: If a label of ``where`` is not an integer in ``[0, len(class_names))``.
    """
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    values = np.asarray(labels).reshape(-1)
    if values.size == 0:
        return names
    if not np.issubdtype(values.dtype, np.integer):
        raise PlpVizError(
            f"{where} must be integer labels to be named by class_names, got dtype {values.dtype}"
        )
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= len(names):
        bad = low if low < 0 else high
        raise PlpVizError(
            f"{where} holds label {bad} but class_names has {len(names)} names "
            f"(labels index class_names from 0)"
        )
    return names


def label_text(label: Any, names: Sequence[str] | None) -> str:
    """Return the (shortened) name of ``label``, or the label itself when there are no names."""
    if names is None:
        return str(label)
    return shorten(names[int(label)])
