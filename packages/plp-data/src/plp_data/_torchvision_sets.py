"""MNIST, Fashion-MNIST, KMNIST (idx files) and CIFAR-10/100 (pickled batches).

The files are the real distribution formats, read with torchvision's idx parser and (for CIFAR) a
restricted unpickler that only rebuilds numpy arrays, so a tampered batch file cannot run code.
Downloads go through torchvision; without network the error says which files to put where.

Unpacking is all-or-nothing: a ``.gz`` is unpacked into a temporary file in the same folder and a
``.tar.gz`` into a temporary folder beside its target, and each is renamed into place only when
complete and checked, so a corrupt or truncated download leaves nothing behind that a later run
could mistake for data. An unpacked idx file of another size than its ``.gz`` holds, whose
header disagrees with its size, or (in a writable folder) older than its ``.gz`` is stale and
unpacked again. Labels are checked against the class count when loaded, before any training.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import pickle
import shutil
import struct
import tarfile
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from plp_data._base import Splits
from plp_data._datasets import ArrayImageDataset
from plp_data._errors import PlpDataError
from plp_data._image import ImageDataModule, resized
from plp_data._registry import DATAMODULES
from plp_data._transforms import (
    CIFAR10_DEFAULTS,
    CIFAR100_DEFAULTS,
    FASHION_MNIST_DEFAULTS,
    KMNIST_DEFAULTS,
    MNIST_DEFAULTS,
)

__all__ = [
    "Cifar100DataModule",
    "Cifar10DataModule",
    "FashionMnistDataModule",
    "KmnistDataModule",
    "MnistDataModule",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_IMAGE_SHAPE = (28, 28)  # of the idx files, whatever size the transforms resize to

# What a failed write means to a user, by errno.
_WRITE_FAILURES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _write_failure(error: OSError, where: Path) -> PlpDataError | None:
    """Return the one-line error for a full, read-only or forbidden disk (None: another error).

    It names the file the error names (e.g. an unreadable ``.gz``), or ``where`` (the folder
    being written) when the error names none or only a temporary file, which is gone by then.
    """
    reason = _WRITE_FAILURES.get(error.errno or 0)
    if reason is None:
        return None
    named = error.filename is not None and ".partial" not in str(error.filename)
    return PlpDataError(f"{error.filename if named else where}: {reason} ({error.strerror})")


def _temporary_name(beside: Path) -> Path:
    """Return a fresh hidden name in ``beside``'s folder, unique per process and call."""
    return beside.with_name(f".{beside.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def _idx_problem(path: Path, shape_tail: tuple[int, ...]) -> str | None:
    """Return what is wrong with the idx file of unsigned bytes at ``path`` (None: nothing).

    Cheap: reads the header only. The magic number must say unsigned bytes (``0x08``) with
    ``1 + len(shape_tail)`` dimensions, the dimensions after the first must be ``shape_tail``,
    and the file size must be the header plus one byte per item.
    """
    ndim = 1 + len(shape_tail)
    with path.open("rb") as file:
        header = file.read(4 + 4 * ndim)
    magic = bytes([0, 0, 0x08, ndim])
    if header[:4] != magic:
        found = header[:4].hex() or "an empty file"
        return f"expected an idx{ndim} file of unsigned bytes (magic {magic.hex()}), found {found}"
    if len(header) < 4 + 4 * ndim:
        return f"idx header cut short ({len(header)} bytes, expected {4 + 4 * ndim})"
    dims = struct.unpack(f">{ndim}I", header[4:])
    if dims[1:] != shape_tail:
        return f"items of shape {dims[1:]}, expected {shape_tail}"
    expected = 4 + 4 * ndim + math.prod(dims)  # exact: a garbage header cannot overflow it
    size = path.stat().st_size
    if size != expected:
        return f"{size} bytes, but its header {dims} needs {expected}: truncated or padded"
    return None


def _gzip_size(path: Path) -> int:
    """Return the unpacked size a single-member ``.gz`` records in its trailer (modulo 2**32).

    -1 for a file too short to be a gzip file (18 bytes at least), which unpacking then reports.
    """
    if path.stat().st_size < 18:
        return -1
    with path.open("rb") as file:
        file.seek(-4, os.SEEK_END)
        return int.from_bytes(file.read(4), "little")


def _gunzip(packed: Path, target: Path, shape_tail: tuple[int, ...]) -> None:
    """Unpack ``packed`` into ``target`` through a temporary file, renamed only when valid.

    Raises:
        PlpDataError: ``packed`` is not a complete gzip file of a valid idx file, or the disk is
            full or read-only (one line naming the file); no temporary file is left behind.
    """
    partial = _temporary_name(target)
    try:
        with gzip.open(packed, "rb") as source, partial.open("xb") as out:
            shutil.copyfileobj(source, out)
        problem = _idx_problem(partial, shape_tail)
        if problem is not None:
            raise PlpDataError(f"{packed}: unpacks to an invalid idx file: {problem}")
        os.replace(partial, target)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise PlpDataError(f"{packed}: not a complete gzip file ({error})") from None
    except OSError as error:
        failure = _write_failure(error, target.parent)
        if failure is not None:
            raise failure from None
        raise PlpDataError(f"{packed}: cannot unpack ({error})") from None
    finally:
        partial.unlink(missing_ok=True)


def _is_stale(unpacked: Path, packed: Path, shape_tail: tuple[int, ...]) -> bool:
    """Return whether ``unpacked`` must be unpacked again from ``packed``.

    It is stale when invalid, of another size than ``packed`` records, or older than ``packed``
    (unpacked from an earlier download). The age rule is waived in a folder that cannot be
    written, where a valid file of the right size is used as it is: a read-only copy made
    without keeping file times must not stop a run.
    """
    if unpacked.stat().st_size % 2**32 != _gzip_size(packed):
        return True
    if _idx_problem(unpacked, shape_tail) is not None:
        return True
    older = unpacked.stat().st_mtime_ns < packed.stat().st_mtime_ns
    return older and os.access(unpacked.parent, os.W_OK)


def _ensure_unpacked(unpacked: Path, shape_tail: tuple[int, ...]) -> bool:
    """Make ``unpacked`` a valid idx file, from its ``.gz`` when missing or stale.

    Returns:
        False when neither ``unpacked`` nor its ``.gz`` exists, True otherwise.

    Raises:
        PlpDataError: The ``.gz`` or the idx file is corrupt, truncated or unreadable, or the disk
            is full or read-only (one line naming the file).
    """
    packed = unpacked.with_name(unpacked.name + ".gz")
    try:
        if packed.is_file():
            if not unpacked.is_file() or _is_stale(unpacked, packed, shape_tail):
                _gunzip(packed, unpacked, shape_tail)
            return True
        if not unpacked.is_file():
            return False
        problem = _idx_problem(unpacked, shape_tail)
    except OSError as error:  # reading a header or trailer (_gunzip raises PlpDataError only)
        where = error.filename or unpacked
        raise PlpDataError(f"{where}: cannot read ({error.strerror})") from None
    if problem is not None:
        raise PlpDataError(f"{unpacked}: {problem}")
    return True


def _check_labels(labels: np.ndarray, path: Path, num_classes: int) -> None:
    """Raise unless every label is in ``0 .. num_classes - 1``.

    Raises:
        PlpDataError: One line naming ``path``, the first bad label, its position and the range.
    """
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise PlpDataError(
            f"{path}: label {labels[bad[0]]} at item {bad[0]} is outside 0..{num_classes - 1} "
            f"({len(bad)} label{'s' if len(bad) > 1 else ''} out of range)"
        )


class _ArraySplits(ImageDataModule):
    """Datasets whose official train and test sets load into uint8 arrays."""

    def array_splits(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
    ) -> Splits:
        """Return trainval (the training arrays) and test, with this datamodule's transforms.

        The device path serves the same uint8 arrays (resized once if ``image_size`` asks).
        """
        size = self.transform_spec.image_size
        channels = 1 if train_images.ndim == 3 else train_images.shape[-1]
        height, width = size or train_images.shape[1:3]
        nbytes = (len(train_images) + len(test_images)) * height * width * channels
        return Splits(
            train=ArrayImageDataset(train_images, train_labels, transform=self.train_transform),
            trainval=ArrayImageDataset(train_images, train_labels, transform=self.eval_transform),
            test=ArrayImageDataset(test_images, test_labels, transform=self.eval_transform),
            trainval_labels=train_labels,
            device=self.device_plan(
                {
                    "trainval": lambda: resized(train_images, size),
                    "test": lambda: resized(test_images, size),
                },
                {"trainval": train_labels, "test": test_labels},
                nbytes=nbytes,
            ),
        )


class _MnistFamily(_ArraySplits):
    """The 28x28 grey-level idx datasets; the trainval split is the official 60k training set.

    Files: ``<root>/<Folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the ``.gz``
    files as distributed work too: they are unpacked next to themselves on first use).
    """

    folder: ClassVar[str]
    in_channels = 1
    image_size = MNIST_IMAGE_SHAPE
    num_classes = 10

    @property
    def class_names(self) -> list[str]:
        """The 10 class names torchvision gives this dataset, indexed by label."""
        from torchvision import datasets

        return [str(name) for name in getattr(datasets, self.folder).classes]

    @property
    def raw_folder(self) -> Path:
        """The folder holding the idx files."""
        return Path(self.root) / self.folder / "raw"

    def _torchvision_download(self) -> None:
        from torchvision import datasets

        cls = getattr(datasets, self.folder)
        for train in (True, False):
            cls(self.root, train=train, download=True)

    def _ensure_files(self) -> None:
        """Unpack each ``.gz`` whose unpacked file is missing or stale; check the idx headers.

        Raises:
            PlpDataError: A ``.gz`` or an idx file is corrupt or truncated, or the disk is full
                or read-only (one line naming the file).
            DataNotFoundError: Files are missing and downloading is off or failed.
        """
        raw = self.raw_folder
        missing = [
            name
            for name in MNIST_FILES
            if not _ensure_unpacked(raw / name, MNIST_IMAGE_SHAPE if "images" in name else ())
        ]
        if missing:
            files = ", ".join(f"{name}.gz" for name in missing)
            self.fetch(self.folder, raw, files, self._torchvision_download)

    def _read(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        images_path = self.raw_folder / f"{prefix}-images-idx3-ubyte"
        labels_path = self.raw_folder / f"{prefix}-labels-idx1-ubyte"
        try:
            images = read_image_file(str(images_path)).numpy()
        except Exception as error:
            raise PlpDataError(f"{images_path}: not an idx3 image file ({error!r})") from None
        try:
            labels = read_label_file(str(labels_path)).numpy().astype(np.int64)
        except Exception as error:
            raise PlpDataError(f"{labels_path}: not an idx1 label file ({error!r})") from None
        if len(images) != len(labels):
            raise PlpDataError(
                f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
            )
        _check_labels(labels, labels_path, self.num_classes)
        return images, labels

    def load_splits(self) -> Splits:
        """Return trainval (the official training set) and test (the official test set)."""
        self._ensure_files()
        train_images, train_labels = self._read("train")
        test_images, test_labels = self._read("t10k")
        return self.array_splits(train_images, train_labels, test_images, test_labels)


@DATAMODULES.register("mnist")
class MnistDataModule(_MnistFamily):
    """MNIST handwritten digits (LeCun et al. 1998): ``<root>/MNIST/raw/``."""

    folder = "MNIST"
    transform_defaults = MNIST_DEFAULTS

    @property
    def class_names(self) -> list[str]:
        """The digits ``"0"`` .. ``"9"``, indexed by label."""
        return [str(digit) for digit in range(10)]


@DATAMODULES.register("fashion_mnist")
class FashionMnistDataModule(_MnistFamily):
    """Fashion-MNIST (Xiao et al. 2017): ``<root>/FashionMNIST/raw/``."""

    folder = "FashionMNIST"
    transform_defaults = FASHION_MNIST_DEFAULTS


@DATAMODULES.register("kmnist")
class KmnistDataModule(_MnistFamily):
    """Kuzushiji-MNIST (Clanuwat et al. 2018): ``<root>/KMNIST/raw/``."""

    folder = "KMNIST"
    transform_defaults = KMNIST_DEFAULTS


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold: dicts, lists, strings, bytes and numpy arrays."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy.core.", "numpy._core.")  # pickles written by numpy < 2
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            entry = _ArrayUnpickler(file, encoding="latin1").load()
    except OSError as error:
        raise PlpDataError(f"{path}: cannot read ({error.strerror})") from None
    except Exception as error:  # junk pickles raise anything: KeyError, IndexError, struct ...
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise PlpDataError(
            f"{path}: not a CIFAR python batch file ({type(error).__name__}: {reason})"
        ) from None
    if not isinstance(entry, dict):
        raise PlpDataError(f"{path}: not a CIFAR python batch file (holds {type(entry).__name__})")
    return entry


def _whole_numbers(
    value: Any, path: Path, what: str, low: int | None = None, high: int | None = None
) -> np.ndarray:
    """Return ``value`` as an int64 array if it holds integers only (in ``low..high``).

    Floats, strings, NaN and mixed lists are refused rather than cast (a cast would truncate,
    wrap around or fail later).

    Raises:
        PlpDataError: One line naming the file, what was read and what it holds.
    """
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged or odd objects
        raise PlpDataError(f"{path}: {what} must be integers ({type(error).__name__})") from None
    if array.dtype.kind not in "iu":
        raise PlpDataError(f"{path}: {what} must be a list of integers, found {array.dtype} values")
    outside = (low is not None and array.size and array.min() < low) or (
        high is not None and array.size and array.max() > high
    )
    if outside:
        raise PlpDataError(f"{path}: {what} holds values outside {low}..{high}")
    return array.astype(np.int64)


def _extract(archive: Path, member: str, expected: Sequence[str], root: Path) -> None:
    """Extract the folder ``member`` of ``archive`` into ``root`` through a temporary folder.

    The archive is extracted whole into a hidden folder beside the target and checked for every
    ``expected`` file first; then the folder is renamed into place (or, when an incomplete folder
    is already there, each extracted file is renamed over its namesake). A corrupt or truncated
    archive, or a full disk, leaves nothing extracted.

    Raises:
        PlpDataError: One line naming the archive (corrupt, truncated, lacking a file) or the
            folder (disk full, read-only, permission denied).
    """
    target = root / member
    scratch = _temporary_name(target)
    try:
        scratch.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        extracted = scratch / member
        missing = [name for name in expected if not (extracted / name).is_file()]
        if missing:
            raise PlpDataError(
                f"{archive}: holds no {member}/{missing[0]} (is it the right archive?)"
            )
        if not target.is_dir():
            os.replace(extracted, target)
        else:
            for path in extracted.iterdir():
                os.replace(path, target / path.name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise PlpDataError(f"{archive}: corrupt or truncated archive ({error})") from None
    except OSError as error:
        failure = _write_failure(error, root)
        if failure is not None:
            raise failure from None
        raise PlpDataError(f"{archive}: cannot extract ({error})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _CifarFamily(_ArraySplits):
    """The CIFAR python batches: 32x32 RGB; trainval is the official 50k training set.

    Files: ``<root>/<base_folder>/`` as extracted from the official ``.tar.gz`` (the archive itself
    in ``<root>`` works too: it is extracted on first use).
    """

    base_folder: ClassVar[str]
    archive: ClassVar[str]
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]
    label_key: ClassVar[str]
    meta_file: ClassVar[str]
    names_key: ClassVar[str]
    in_channels = 3
    image_size = (32, 32)

    @property
    def folder(self) -> Path:
        """The folder holding the batch files."""
        return Path(self.root) / self.base_folder

    @property
    def class_names(self) -> list[str] | None:
        """The class names of the meta file, indexed by label (None: the file is not there yet).

        Raises:
            PlpDataError: The meta file does not hold ``num_classes`` names.
        """
        path = self.folder / self.meta_file
        if not path.is_file():
            return None
        names = _load_batch(path).get(self.names_key)
        if not (
            isinstance(names, list)
            and len(names) == self.num_classes
            and all(isinstance(name, str) for name in names)
        ):
            raise PlpDataError(
                f"{path}: expected {self.names_key!r}, a list of {self.num_classes} class names"
            )
        return names

    def _torchvision_download(self) -> None:
        from torchvision import datasets

        name = "CIFAR10" if self.base_folder.startswith("cifar-10-") else "CIFAR100"
        getattr(datasets, name)(self.root, train=True, download=True)

    def _ensure_files(self) -> None:
        """Extract the archive when batch files are missing; fetch when there is no archive.

        Raises:
            PlpDataError: The archive is corrupt, truncated or lacks a batch file, or the disk is
                full or read-only (one line naming the archive or the folder).
            DataNotFoundError: Files are missing and downloading is off or failed.
        """
        expected = (*self.train_files, *self.test_files)
        if all((self.folder / name).is_file() for name in expected):
            return
        archive = Path(self.root) / self.archive
        if archive.is_file():
            _extract(archive, self.base_folder, expected, Path(self.root))
        if not all((self.folder / name).is_file() for name in expected):
            missing = [name for name in expected if not (self.folder / name).is_file()]
            files = f"{', '.join(missing)} (or {self.archive} in {self.root})"
            self.fetch(self.base_folder, self.folder, files, self._torchvision_download)

    def _read(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            path = self.folder / name
            entry = _load_batch(path)
            if "data" not in entry or self.label_key not in entry:
                raise PlpDataError(f"{path}: expected keys 'data' and {self.label_key!r}")
            data = _whole_numbers(entry["data"], path, "'data'", 0, 255).astype(np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise PlpDataError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(
                _whole_numbers(entry[self.label_key], path, repr(self.label_key)).reshape(-1)
            )
            if len(labels[-1]) != len(images[-1]):
                raise PlpDataError(f"{path}: {len(images[-1])} images, {len(labels[-1])} labels")
            _check_labels(labels[-1], path, self.num_classes)
        return np.concatenate(images), np.concatenate(labels)

    def load_splits(self) -> Splits:
        """Return trainval (the official training batches) and test (the test batch)."""
        self._ensure_files()
        train_images, train_labels = self._read(self.train_files)
        test_images, test_labels = self._read(self.test_files)
        return self.array_splits(train_images, train_labels, test_images, test_labels)


@DATAMODULES.register("cifar10")
class Cifar10DataModule(_CifarFamily):
    """CIFAR-10 (Krizhevsky 2009): ``<root>/cifar-10-batches-py/``."""

    base_folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    meta_file = "batches.meta"
    names_key = "label_names"
    num_classes = 10
    transform_defaults = CIFAR10_DEFAULTS


@DATAMODULES.register("cifar100")
class Cifar100DataModule(_CifarFamily):
    """CIFAR-100 with its 100 fine labels (Krizhevsky 2009): ``<root>/cifar-100-python/``."""

    base_folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    meta_file = "meta"
    names_key = "fine_label_names"
    num_classes = 100
    transform_defaults = CIFAR100_DEFAULTS
