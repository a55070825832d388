"""MNIST, Fashion-MNIST, KMNIST (idx files) and CIFAR-10/100 (pickled batches).

The files are the real distribution formats, read with torchvision's idx parser and (for CIFAR) a
restricted unpickler that only rebuilds numpy arrays, so a tampered batch file cannot run code.
Downloads go through torchvision; without network the error says which files to put where.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from plp_data._base import Splits
from plp_data._datasets import ArrayImageDataset
from plp_data._errors import DataNotFoundError, PlpDataError
from plp_data._image import ImageDataModule, resized
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


def _gunzip(source: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with gzip.open(source, "rb") as packed, partial.open("wb") as out:
        shutil.copyfileobj(packed, out)
    os.replace(partial, target)


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
    image_size = (28, 28)
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
        raw = self.raw_folder
        missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
        for name in list(missing):
            packed = raw / f"{name}.gz"
            if packed.is_file():
                try:
                    _gunzip(packed, raw / name)
                except (OSError, EOFError) as error:
                    raise PlpDataError(f"{packed}: not a valid gzip file ({error})") from None
                missing.remove(name)
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
        return images, labels

    def load_splits(self) -> Splits:
        """Return trainval (the official training set) and test (the official test set)."""
        self._ensure_files()
        train_images, train_labels = self._read("train")
        test_images, test_labels = self._read("t10k")
        return self.array_splits(train_images, train_labels, test_images, test_labels)


class MnistDataModule(_MnistFamily):
    """MNIST handwritten digits (LeCun et al. 1998): ``<root>/MNIST/raw/``."""

    folder = "MNIST"
    transform_defaults = MNIST_DEFAULTS

    @property
    def class_names(self) -> list[str]:
        """The digits ``"0"`` .. ``"9"``, indexed by label."""
        return [str(digit) for digit in range(10)]


class FashionMnistDataModule(_MnistFamily):
    """Fashion-MNIST (Xiao et al. 2017): ``<root>/FashionMNIST/raw/``."""

    folder = "FashionMNIST"
    transform_defaults = FASHION_MNIST_DEFAULTS


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
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise PlpDataError(f"{path}: not a CIFAR python batch file ({error})") from None
    if not isinstance(entry, dict):
        raise PlpDataError(f"{path}: not a CIFAR python batch file (holds {type(entry).__name__})")
    return entry


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
        expected = (*self.train_files, *self.test_files)
        if all((self.folder / name).is_file() for name in expected):
            return
        archive = Path(self.root) / self.archive
        if archive.is_file():
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(self.root, filter="data")
            except (tarfile.TarError, OSError) as error:
                raise PlpDataError(f"{archive}: cannot extract ({error})") from None
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
            data = np.asarray(entry["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise PlpDataError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(entry[self.label_key], dtype=np.int64))
            if len(labels[-1]) != len(images[-1]):
                raise PlpDataError(f"{path}: {len(images[-1])} images, {len(labels[-1])} labels")
        return np.concatenate(images), np.concatenate(labels)

    def load_splits(self) -> Splits:
        """Return trainval (the official training batches) and test (the test batch)."""
        self._ensure_files()
        train_images, train_labels = self._read(self.train_files)
        test_images, test_labels = self._read(self.test_files)
        for labels, what in ((train_labels, "training"), (test_labels, "test")):
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise DataNotFoundError(
                    f"{self.folder}: {what} labels outside 0..{self.num_classes - 1}: "
                    f"is this really {self.base_folder}?"
                )
        return self.array_splits(train_images, train_labels, test_images, test_labels)


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
