"""Datasets laid out as folders of image files: ``image_folder`` and ``market1501``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from plp_core import Fraction, NonNegativeInt
from plp_data._base import Splits, split_indices
from plp_data._datasets import FileImageDataset
from plp_data._errors import DataNotFoundError, PlpDataError
from plp_data._image import ImageDataModule
from plp_data._registry import DATAMODULES
from plp_data._transforms import IMAGENET_DEFAULTS, REID_DEFAULTS

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderDataModule",
    "Market1501DataModule",
    "parse_market1501_name",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""The file suffixes (lower case) taken for images when a folder is scanned."""


def _class_images(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = {
        c.name: sorted(p for p in c.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for c in classes
    }
    empty = [name for name, paths in found.items() if not paths]
    if empty:
        raise PlpDataError(f"{folder}: class folders without images: {', '.join(empty[:10])}")
    return found


@DATAMODULES.register("image_folder")
class ImageFolderDataModule(ImageDataModule):
    """One sub-folder per class, as torchvision's ``ImageFolder`` (``<root>/<class>/*.jpg``).

    With ``<root>/train/`` and ``<root>/test/`` (each one sub-folder per class) those are the
    trainval and test splits; otherwise every image under ``<root>`` is split by class into
    trainval and test with ``test_fraction`` and ``split_seed`` (stratified, fixed). Class indices
    follow the sorted class-folder names of trainval. Images are resized to 224x224 by default.

    Args:
        test_fraction: Share of the images in the test split when there is no ``test/`` folder.
        split_seed: Seed of that split.
        **kwargs: Passed to :class:`~plp_data.ImageDataModule`.
    """

    transform_defaults = IMAGENET_DEFAULTS

    def __init__(
        self, test_fraction: Fraction = 0.2, split_seed: NonNegativeInt = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < test_fraction < 1.0:
            raise PlpDataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        # Scanned once, here: the class count sizes the model before any split is loaded.
        self._scanned = self._scan()
        self.classes = self._scanned[0]
        self.num_classes = len(self.classes)

    def _scan(self) -> tuple[list[str], list[Path], np.ndarray, list[Path], np.ndarray]:
        root = Path(self.root)
        if not root.is_dir():
            raise DataNotFoundError(
                f"image folder {root} does not exist: expected one sub-folder of images per class "
                "(or train/ and test/ holding such sub-folders)"
            )
        if (root / "train").is_dir() and (root / "test").is_dir():
            train, test = _class_images(root / "train"), _class_images(root / "test")
            classes = sorted(train)
            unknown = sorted(set(test) - set(train))
            if unknown:
                raise PlpDataError(
                    f"{root / 'test'}: classes not in {root / 'train'}: {', '.join(unknown[:10])}"
                )
            index = {name: i for i, name in enumerate(classes)}
            train_paths = [p for c in classes for p in train[c]]
            train_labels = np.array([index[c] for c in classes for _ in train[c]], dtype=np.int64)
            test_paths = [p for c in sorted(test) for p in test[c]]
            test_labels = np.array(
                [index[c] for c in sorted(test) for _ in test[c]], dtype=np.int64
            )
            return classes, train_paths, train_labels, test_paths, test_labels
        found = _class_images(root)
        if not found:
            raise DataNotFoundError(f"image folder {root} has no class sub-folders with images")
        classes = sorted(found)
        paths = np.array([str(p) for c in classes for p in found[c]])
        labels = np.array([i for i, c in enumerate(classes) for _ in found[c]], dtype=np.int64)
        train_idx, test_idx = split_indices(
            labels, self.test_fraction, self.split_seed, what="ImageFolderDataModule: test_fraction"
        )
        return (
            classes,
            [Path(p) for p in paths[train_idx]],
            labels[train_idx],
            [Path(p) for p in paths[test_idx]],
            labels[test_idx],
        )

    @property
    def class_names(self) -> list[str]:
        """The class-folder names (of trainval), indexed by label."""
        return list(self.classes)

    def load_splits(self) -> Splits:
        """Return the trainval and test splits of the folder."""
        _, train_paths, train_labels, test_paths, test_labels = self._scanned
        return Splits(
            train=FileImageDataset(train_paths, train_labels, transform=self.train_transform),
            trainval=FileImageDataset(train_paths, train_labels, transform=self.eval_transform),
            test=FileImageDataset(test_paths, test_labels, transform=self.eval_transform),
            trainval_labels=train_labels,
            device=self.file_device_plan(
                {"trainval": train_paths, "test": test_paths},
                {"trainval": train_labels, "test": test_labels},
            ),
        )


# ASCII digits only: \d would also take other scripts' digits, which int() then accepts.
MARKET_NAME = re.compile(r"^(-?[0-9]+)_c([0-9]+)s([0-9]+)_([0-9]+)_([0-9]+)\.jpg$")
MARKET_MAX_NUMBER = 2**31 - 1  # ids and cameras beyond this are not Market-1501 names


def parse_market1501_name(path: str | Path) -> tuple[int, int]:
    """Return ``(person_id, camera)`` of a Market-1501 file name like ``0002_c1s1_000451_03.jpg``.

    ``person_id`` is -1 for junk images and 0 for distractors; ``camera`` is the number after
    ``c`` (1-6).

    Raises:
        PlpDataError: The name does not follow the Market-1501 pattern, or its id (other than
            -1) or camera is outside ``0 .. 2**31 - 1`` (one line naming the file).
    """
    match = MARKET_NAME.match(Path(path).name)
    if match is None:
        raise PlpDataError(
            f"{path}: not a Market-1501 image name (expected e.g. 0002_c1s1_000451_03.jpg)"
        )
    person, camera = int(match.group(1)), int(match.group(2))
    if not (person == -1 or 0 <= person <= MARKET_MAX_NUMBER):
        raise PlpDataError(
            f"{path}: person id {match.group(1)} is neither -1 (junk) nor in 0..{MARKET_MAX_NUMBER}"
        )
    if camera > MARKET_MAX_NUMBER:
        raise PlpDataError(f"{path}: camera {match.group(2)} is outside 0..{MARKET_MAX_NUMBER}")
    return person, camera


def _read_market_folder(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise DataNotFoundError(
            f"Market-1501 folder {folder} does not exist: data.args.root must hold "
            "bounding_box_train/, query/ and bounding_box_test/ (from Market-1501-v15.09.15.zip)"
        )
    paths, ids, cameras = [], [], []
    for path in sorted(folder.glob("*.jpg")):
        person, camera = parse_market1501_name(path)
        if person == -1:  # junk: neither a match nor a mismatch in the protocol
            continue
        paths.append(path)
        ids.append(person)
        cameras.append(camera)
    if not paths:
        raise PlpDataError(f"Market-1501 folder {folder} holds no usable .jpg images")
    return paths, np.array(ids, dtype=np.int64), np.array(cameras, dtype=np.int64)


@DATAMODULES.register("market1501")
class Market1501DataModule(ImageDataModule):
    """Market-1501 person re-identification (Zheng et al. 2015).

    ``<root>`` holds ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``. Items are
    ``(image, label, camera)``. Junk images (id -1) are skipped; distractors (id 0) stay in the
    gallery. Training identities are relabelled 0..750 for the classifier (``trainval``); the
    ``query`` and ``gallery`` splits keep the real person ids, and ``test`` is the query. The
    dataset's own protocol is ``[evaluate] protocol = "query_gallery"`` (same-camera matches are
    removed); the trainval-gallery protocol does not apply, as test identities are unseen in
    training. Images are resized to 256x128 with flip, pad-and-crop and random erasing for
    training (the re-ID "strong baseline"). Validation holds out whole training identities
    (``val_fraction`` of them, or ``val_classes``), with one query per identity and camera.
    """

    transform_defaults = REID_DEFAULTS
    class_disjoint_validation = True

    def __init__(self, root: str = "data/Market-1501-v15.09.15", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)
        train = Path(self.root) / "bounding_box_train"
        if not train.is_dir():
            raise DataNotFoundError(
                f"Market-1501 folder {train} does not exist: data.args.root must hold "
                "bounding_box_train/, query/ and bounding_box_test/ "
                "(unzip Market-1501-v15.09.15.zip; it cannot be downloaded automatically)"
            )
        # Read once, here: the identity count sizes the classifier before the splits load.
        self._train = _read_market_folder(train)
        self.num_classes = len(np.unique(self._train[1]))

    def load_splits(self) -> Splits:
        """Return trainval (relabelled training ids), test = query, and query / gallery."""
        root = Path(self.root)
        train_paths, train_ids, train_cameras = self._train
        labels = np.unique(train_ids, return_inverse=True)[1]  # ids in sorted order -> 0..N-1
        query = _read_market_folder(root / "query")
        gallery = _read_market_folder(root / "bounding_box_test")
        query_set = FileImageDataset(*query, transform=self.eval_transform)
        device = self.file_device_plan(
            {"trainval": train_paths, "test": query[0], "query": query[0], "gallery": gallery[0]},
            {"trainval": labels, "test": query[1], "query": query[1], "gallery": gallery[1]},
            {"trainval": train_cameras, "test": query[2], "query": query[2], "gallery": gallery[2]},
        )
        return Splits(
            train=FileImageDataset(train_paths, labels, train_cameras, self.train_transform),
            trainval=FileImageDataset(train_paths, labels, train_cameras, self.eval_transform),
            test=query_set,
            trainval_labels=labels,
            trainval_cameras=train_cameras,
            extra={
                "query": query_set,
                "gallery": FileImageDataset(*gallery, transform=self.eval_transform),
            },
            device=device,
        )
