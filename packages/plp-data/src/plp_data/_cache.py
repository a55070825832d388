"""The decoded-image cache: a file dataset decoded and resized once into a uint8 array on disk.

The device path serves file datasets (image folders, Market-1501) from one ``(N, H, W, 3)`` uint8
array. Decoding every JPEG once per epoch is what caps the workers path, so the array is built
once per dataset and kept as a ``.npy`` file, memory-mapped by later runs. Its name is a hash of
the file list, each file's size and modification time (in nanoseconds) and the image size, so a
changed, added or removed file gives another key and the cache is rebuilt. It is written to a
temporary name in the same folder and renamed when complete, so no run ever reads a half-written
cache; concurrent builders (DDP ranks) each write their own temporary file and the last rename
wins with identical contents.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from plp_data._datasets import ImageReadError, crop_box, read_rgb_image
from plp_data._errors import PlpDataError

__all__ = ["CACHE_VERSION", "cache_key", "decoded_images", "default_cache_dir"]

# Bumped when the decoding (resize, conversion) changes, so old caches are not reused.
CACHE_VERSION = 1


def default_cache_dir(root: str | Path) -> Path:
    """Return ``<root>/.plp-cache`` when ``root`` is writable, else ``~/.cache/plp``."""
    root = Path(root)
    if root.is_dir() and os.access(root, os.W_OK):
        return root / ".plp-cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plp"


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


def decoded_images(
    paths: Sequence[str | Path],
    size: tuple[int, int],
    cache_dir: str | Path,
    *,
    threads: int | None = None,
    boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Return the images of ``paths`` decoded to RGB and resized to ``size``, ``(N, H, W, 3)``.

    ``boxes`` (``(N, 4)`` ``x_1, y_1, x_2, y_2``; rows of -1: the whole image) crop each image
    before the resize, as :class:`~plp_data.FileImageDataset` does.

    The array is a copy-on-write memory map of the cache in ``cache_dir``, built first if no cache
    with this key exists (decoding in ``threads`` threads; default: one per CPU).

    Raises:
        ImageReadError: A file is not a readable image (one line naming it).
        PlpDataError: The cache folder cannot be written.
    """
    files = [Path(p) for p in paths]
    height, width = size
    key = cache_key(files, size, boxes)
    folder = Path(cache_dir)
    final = folder / f"images-{key[:40]}-{len(files)}x{height}x{width}.npy"
    if final.is_file():
        cached = np.load(final, mmap_mode="c")
        if cached.shape == (len(files), height, width, 3) and cached.dtype == np.uint8:
            return cached
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PlpDataError(
            f"image cache folder {folder} cannot be created ({error.strerror}); "
            "set data.args.cache_dir to a writable folder"
        ) from None
    partial = folder / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    try:
        _write(partial, files, size, threads or os.cpu_count() or 1, boxes)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return np.load(final, mmap_mode="c")


def _write(
    target: Path,
    files: Sequence[Path],
    size: tuple[int, int],
    threads: int,
    boxes: np.ndarray | None = None,
) -> None:
    """Decode ``files`` into a new ``.npy`` file ``target``, flushed and synced to disk."""
    array = np.lib.format.open_memmap(
        target, mode="w+", dtype=np.uint8, shape=(len(files), size[0], size[1], 3)
    )

    def fill(index: int) -> None:
        if boxes is None:
            array[index] = _decode(files[index], size)
        else:
            array[index] = _decode(files[index], size, boxes[index])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(fill, range(len(files))):
            pass
    array.flush()
    with target.open("rb+") as file:
        os.fsync(file.fileno())
