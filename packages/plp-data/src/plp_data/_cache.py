"""The decoded-image cache: a file dataset decoded and resized once into a uint8 array on disk.

The device path serves file datasets (image folders, Market-1501) from one ``(N, H, W, 3)`` uint8
array. Decoding every JPEG once per epoch is what caps the workers path, so the array is built
once per dataset and kept as a ``.npy`` file, memory-mapped by later runs. Its name is a hash of
the file list, each file's size and modification time (in nanoseconds) and the image size, so a
changed, added or removed file gives another key and the cache is rebuilt.

A cache heals:

- It is validated when opened (the ``.npy`` header, shape, dtype and the file's size) and
  rebuilt when it is not valid (truncated, planted, of another shape).
- It is written with ordinary file writes to a temporary ``.partial`` name in the same folder
  and renamed when complete, so no run ever reads a half-written cache and a full disk is an
  ``OSError`` (one line), not a crash. Concurrent builders (DDP ranks) each write their own
  temporary file and the last rename wins with identical contents. ``.partial`` files of dead
  builders (this host, a process that is gone; or untouched for a day) are removed.
- A folder that cannot be written falls back to the per-user cache folder with one note, when
  the caller allows it (the default folder); otherwise it is one line naming the setting.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from plp_core import storage_reason
from plp_data._datasets import ImageReadError, crop_box, read_rgb_image
from plp_data._errors import PlpDataError

__all__ = ["CACHE_VERSION", "cache_key", "decoded_images", "default_cache_dir", "user_cache_dir"]

# Bumped when the decoding (resize, conversion) changes, so old caches are not reused.
# 2: images of more than 8 bits per sample are scaled, not saturated (plp_data._datasets).
CACHE_VERSION = 2

# A .partial file untouched this long belongs to no live builder (a builder writes all along).
STALE_AFTER_SECONDS = 24 * 3600

# Errors of a folder that cannot take the cache (as opposed to a disk that fills up mid-write).
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}

_PARTIAL = re.compile(r"^\.(?P<final>.+)\.(?P<pid>[0-9]+)-[0-9a-f]{8}@(?P<host>[^/]*)\.partial$")

_noted: set[Path] = set()


def user_cache_dir() -> Path:
    """Return the per-user cache folder of plp: ``$XDG_CACHE_HOME/plp`` or ``~/.cache/plp``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plp"


def default_cache_dir(root: str | Path) -> Path:
    """Return ``<root>/.plp-cache`` when ``root`` is writable, else :func:`user_cache_dir`."""
    root = Path(root)
    if root.is_dir() and os.access(root, os.W_OK):
        return root / ".plp-cache"
    return user_cache_dir()


def cache_key(paths: Sequence[Path], size: tuple[int, int], boxes: np.ndarray | None = None) -> str:
    """Return the hex key of the cache of ``paths`` decoded at ``size`` ``(height, width)``.

    ``boxes`` (crops taken before the resize, see :func:`decoded_images`) are part of the key.

    Raises:
        ImageReadError: A file does not exist (any more).
    """
    digest = hashlib.sha256(f"plp-image-cache {CACHE_VERSION} {size[0]}x{size[1]}\n".encode())
    for path in paths:
        try:
            stat = path.stat()
        except OSError as error:
            raise ImageReadError(f"{path}: cannot read ({type(error).__name__})") from None
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if boxes is not None:
        digest.update(b"boxes\n" + np.ascontiguousarray(boxes, dtype="<i8").tobytes())
    return digest.hexdigest()


def _decode(path: Path, size: tuple[int, int], box: np.ndarray | None = None) -> np.ndarray:
    from torchvision.transforms import functional

    # The same crop and resize as the workers path's (FileImageDataset, transforms.Resize).
    image = read_rgb_image(path)
    if box is not None:
        image = crop_box(image, box)
    image = functional.resize(image, [size[0], size[1]])
    return np.asarray(image, dtype=np.uint8)


def _open_valid(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Return the cache at ``path`` memory-mapped (copy-on-write) if it is valid, else None.

    Valid: a ``.npy`` file whose header says uint8, C order and ``shape``, and whose size is
    exactly the header plus the array's bytes.
    """
    try:
        with path.open("rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                found, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                found, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                return None
            offset = file.tell()
        size = path.stat().st_size
    except Exception:  # a junk header raises ValueError, SyntaxError, ...: not a valid cache
        return None
    if tuple(found) != shape or fortran or dtype != np.uint8 or size != offset + math.prod(shape):
        return None
    try:
        return np.memmap(path, dtype=np.uint8, mode="c", shape=shape, offset=offset)
    except (OSError, ValueError):
        return None


def decoded_images(
    paths: Sequence[str | Path],
    size: tuple[int, int],
    cache_dir: str | Path,
    *,
    fallback_dir: str | Path | None = None,
    threads: int | None = None,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Return the images of ``paths`` decoded to RGB and resized to ``size``, ``(N, H, W, 3)``.

    ``boxes`` (``(N, 4)`` ``x_1, y_1, x_2, y_2``; rows of -1: the whole image) crop each image
    before the resize, as :class:`~plp_data.FileImageDataset` does.

    The array is a copy-on-write memory map of the cache in ``cache_dir``, built first if no
    valid cache with this key exists there (or in ``fallback_dir``), decoding in ``threads``
    threads (default: one per CPU).

    Args:
        paths: The image files, in the order of the array's rows.
        size: ``(height, width)`` every image is resized to.
        cache_dir: The folder of the cache.
        fallback_dir: Where to build the cache, with one note on stderr, when ``cache_dir``
            cannot be written (None: that is an error).
        threads: Decoding threads.
        boxes: Crops taken before the resize (None: whole images).

    Raises:
        ImageReadError: A file is not a readable image (one line naming it).
        PlpDataError: The cache cannot be written (a folder that cannot be created or written
            without a fallback, a full disk): one line naming the folder and the setting.
    """
    files = [Path(p) for p in paths]
    height, width = size
    shape = (len(files), height, width, 3)
    key = cache_key(files, size, boxes)
    name = f"images-{key[:40]}-{len(files)}x{height}x{width}.npy"
    folders = [Path(cache_dir)] + ([Path(fallback_dir)] if fallback_dir is not None else [])
    for folder in folders:
        cached = _open_valid(folder / name, shape)
        if cached is not None:
            return cached
    for index, folder in enumerate(folders):
        try:
            _build(folder / name, files, size, threads or os.cpu_count() or 1, boxes)
        except _UnwritableError as unwritable:
            if index + 1 < len(folders):
                _note(folder, unwritable, folders[index + 1])
                continue
            raise PlpDataError(
                f"image cache folder {folder} cannot be {unwritable.verb} ({unwritable.reason}); "
                "set data.args.cache_dir to a writable folder"
            ) from None
        built = _open_valid(folder / name, shape)
        if built is not None:
            return built
        raise PlpDataError(f"image cache {folder / name} was not readable after it was written")
    raise AssertionError("unreachable: there is always one folder")


class _UnwritableError(PlpDataError):
    """The cache folder cannot take the cache (internal: the caller falls back or says so)."""

    def __init__(self, reason: str, verb: str = "written") -> None:
        super().__init__(reason)
        self.reason, self.verb = reason, verb


def _note(folder: Path, unwritable: _UnwritableError, instead: Path) -> None:
    """Say once per folder, on stderr, that the cache goes to ``instead``."""
    if folder not in _noted:
        _noted.add(folder)
        print(
            f"plp: note: the image cache folder {folder} cannot be {unwritable.verb} "
            f"({unwritable.reason}); "
            f"using {instead} (set data.args.cache_dir to choose)",
            file=sys.stderr,
            flush=True,
        )


def _build(
    final: Path,
    files: Sequence[Path],
    size: tuple[int, int],
    threads: int,
    boxes: np.ndarray | None,
) -> None:
    """Write the cache ``final`` through a temporary file renamed into place.

    Raises:
        _UnwritableError: The folder cannot be created or written, or ``final`` cannot be replaced.
        PlpDataError: The disk filled up (or failed) while writing (one line).
    """
    folder = final.parent
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64]
    partial = folder / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}@{host}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _UnwritableError(storage_reason(error), "created") from None
    try:
        _remove_dead_partials(folder, host)
        out = partial.open("xb")
    except OSError as error:
        raise _UnwritableError(storage_reason(error)) from None
    try:
        with out:
            _write(out, files, size, threads, boxes)
        os.replace(partial, final)
    except ImageReadError:
        raise
    except OSError as error:
        if error.errno in _UNWRITABLE and error.filename in (str(partial), str(final), None):
            raise _UnwritableError(storage_reason(error)) from None
        raise PlpDataError(
            f"cannot write the image cache {final}: {storage_reason(error)}; free space there "
            "or set data.args.cache_dir to another folder"
        ) from None
    finally:
        partial.unlink(missing_ok=True)


def _write(
    out: BinaryIO,
    files: Sequence[Path],
    size: tuple[int, int],
    threads: int,
    boxes: np.ndarray | None = None,
) -> None:
    """Write the ``.npy`` header and every decoded image, in order, then sync to disk.

    At most ``4 * threads`` decoded images wait in memory at any time.
    """
    shape = (len(files), size[0], size[1], 3)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
    np.lib.format.write_array_header_1_0(out, {**header, "shape": shape})
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        try:
            for index, path in enumerate(files):
                crop = () if boxes is None else (boxes[index],)
                pending.append(pool.submit(_decode, path, size, *crop))
                if len(pending) >= 4 * threads:
                    out.write(np.ascontiguousarray(pending.popleft().result()).tobytes())
            while pending:
                out.write(np.ascontiguousarray(pending.popleft().result()).tobytes())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    out.flush()
    os.fsync(out.fileno())


def _remove_dead_partials(folder: Path, host: str) -> None:
    """Remove the ``.partial`` files of builders that are gone.

    Gone: a process of this host that no longer exists, or (any host, any plp version) a file
    untouched for :data:`STALE_AFTER_SECONDS`. Another builder's live file is never touched.
    """
    now = time.time()
    for path in folder.glob(".*.partial"):
        match = _PARTIAL.match(path.name)
        try:
            stale = now - path.stat().st_mtime > STALE_AFTER_SECONDS
            dead = match is not None and match["host"] == host and not _alive(int(match["pid"]))
            if stale or dead:
                path.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: harmless either way


def _alive(pid: int) -> bool:
    """Return whether process ``pid`` exists on this host (another user's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
