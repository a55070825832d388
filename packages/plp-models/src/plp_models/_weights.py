"""Reading weight files safely: ``weights_only=True`` always, one line for any bad file."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from plp_core import error_reason
from plp_models._errors import PlpModelsError

__all__ = ["UnreadableWeightsError", "UnsafeWeightsError", "load_weights"]


class UnsafeWeightsError(PlpModelsError):
    """A weight file whose pickle would run code (refused before anything of it runs).

    Attributes:
        reason: What torch's safe unpickler refused, one sentence.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnreadableWeightsError(PlpModelsError):
    """A weight file that cannot be read: truncated, corrupt, not a torch file, unreadable.

    Attributes:
        reason: What went wrong, one sentence.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# What torch's weights-only unpickler says when a pickle names a function or class to call.
_CODE = re.compile(r"Unsupported global|not an allowed global|unrecognized function")


def _unsafe_reason(error: BaseException) -> str:
    """Return the sentence of torch's weights-only refusal that names what was refused."""
    for line in str(error).splitlines():
        if "WeightsUnpickler error:" in line:
            return error_reason(ValueError(line.split("WeightsUnpickler error:", 1)[1]))
    return error_reason(error)


def load_weights(path: str | Path) -> Any:
    """Return what the torch file at ``path`` holds, loaded with ``weights_only=True`` on the CPU.

    torch's ``weights_only`` unpickler rebuilds tensors, containers and plain values only, so a
    file whose pickle would run code is refused before any of it runs.

    Raises:
        UnsafeWeightsError: The file holds objects other than weights (one line).
        UnreadableWeightsError: The file is truncated, corrupt or not a torch file (one line).
    """
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not _CODE.search(str(error)):  # junk bytes fail the unpickler too: not code
            reason = error_reason(error)
            raise UnreadableWeightsError(
                f"{path}: cannot read, truncated or corrupt ({reason})", reason
            ) from None
        reason = _unsafe_reason(error)
        raise UnsafeWeightsError(
            f"{path}: refused: it holds objects other than weights, which could run code "
            f"({reason}); plp loads weights with weights_only=True",
            reason,
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, OSError, ... on junk
        reason = error_reason(error)
        raise UnreadableWeightsError(
            f"{path}: cannot read, truncated or corrupt ({reason})", reason
        ) from None
