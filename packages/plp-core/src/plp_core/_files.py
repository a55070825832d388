"""Writing files so that no failure leaves half of one, and a failed write is one line."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from plp_core._errors import PlpError

__all__ = ["STORAGE_ERRORS", "atomic_write", "storage_reason"]

STORAGE_ERRORS = {
    errno.ENOSPC: "disk full (no space left on the device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
"""OS errors of a full, read-only or locked-down disk, in the user's words, by errno."""


def storage_reason(error: OSError) -> str:
    """Return why a write failed, in the user's words (:data:`STORAGE_ERRORS`, else strerror).

    >>> storage_reason(OSError(errno.ENOSPC, "No space left on device"))
    'disk full (no space left on the device)'
    >>> storage_reason(NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    'Not a directory'
    """
    return STORAGE_ERRORS.get(error.errno or 0) or error.strerror or type(error).__name__


def _umask() -> int:
    """Return the process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | Path,
    write: Callable[[BinaryIO], object],
    *,
    error: type[Exception] = PlpError,
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or kill at any moment leaves either the old file or the new one, never half of one,
    and no temporary file when Python gets to clean up. The file gets the permissions the umask
    gives a new file (``mkstemp`` alone gives 0600). Missing parent folders are created.

    Args:
        path: The file to write.
        write: Writes the whole content to the open binary file it is given.
        error: The exception class to raise (the calling package's base error).

    Raises:
        Exception: (``error``) The file or its folder cannot be written: a full, read-only or
            forbidden disk, or a path through a file (one line naming the path and why).
    """
    path = Path(path)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as failure:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(failure, OSError):
            raise error(f"cannot write {path}: {storage_reason(failure)}") from None
        raise
    return path
