"""The metric-learning benchmarks as distributed: CUB-200-2011, Cars196, SOP and In-Shop.

Each reads its own annotation files into lists of image files and class ids per split, then
serves them like the image-folder datamodules (:class:`~plp_data.FileImageDataset`, the
datamodule's transforms and samplers, the decoded-image cache of the device path). The splits are
the class-disjoint ones of the metric-learning literature (Oh Song et al. 2016, used by
pytorch-metric-learning and open-metric-learning):

- CUB-200-2011: classes 1-100 trainval, 101-200 test (5,864 / 5,924 images);
- Cars196: classes 1-98 trainval, 99-196 test (8,054 / 8,131 images);
- Stanford Online Products: ``Ebay_train.txt`` / ``Ebay_test.txt`` (11,318 / 11,316 classes);
- In-Shop: ``list_eval_partition.txt``'s train / query / gallery (3,997 / 3,985 items).

Labels: the trainval classes are ``0 .. num_classes - 1`` in the order of their ids (what a
classifier trains on); the test classes follow, also in id order, so labels never collide across
splits and ``class_names[label]`` names any image's class.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from plp_data._base import Splits
from plp_data._datasets import FileImageDataset
from plp_data._errors import DataNotFoundError, PlpDataError
from plp_data._image import ImageDataModule
from plp_data._registry import DATAMODULES
from plp_data._transforms import TransformDefaults

__all__ = [
    "METRIC_LEARNING_DEFAULTS",
    "Cars196DataModule",
    "Cub200DataModule",
    "InShopDataModule",
    "StanfordOnlineProductsDataModule",
]

# ImageNet statistics (the backbones start from ImageNet weights), 224x224, flip and a
# pad-and-crop jitter: augmentations the device path batches. RandomResizedCrop (the papers'
# choice) is one config line away: augment = [{name = "RandomResizedCrop", args = {size = 224}}].
METRIC_LEARNING_DEFAULTS = TransformDefaults(
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    image_size=(224, 224),
    augment=(
        {"name": "RandomHorizontalFlip"},
        {"name": "RandomCrop", "args": {"padding": 16}},
    ),
)


@dataclass
class FileLists:
    """What a benchmark's annotation files say: image files and class ids per split.

    Attributes:
        files: Per split (``trainval``, ``test``, extras such as ``query``), the image paths.
        classes: Per split, the class id of each image (any sortable, hashable id).
        class_names: Names of class ids, where the dataset has them (others are shown as ids).
    """

    files: dict[str, list[Path]]
    classes: dict[str, list[Any]]
    class_names: dict[Any, str]


class _BenchmarkDataModule(ImageDataModule):
    """A benchmark given as per-split lists of image files and class ids.

    Subclasses implement :meth:`read_file_lists`; it runs once, in ``__init__`` (the class count
    sizes the model before the splits load). Image files are checked when the splits load.
    """

    transform_defaults = METRIC_LEARNING_DEFAULTS
    class_disjoint_validation = True  # test classes are unseen in training: validate likewise
    title: str  # the dataset's name, for messages

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)
        lists = self.read_file_lists(Path(self.root))
        order = _class_order(lists.classes)
        index = {class_id: label for label, class_id in enumerate(order)}
        self._files: dict[str, Sequence[Path]] = dict(lists.files)
        self._labels = {
            split: np.array([index[c] for c in ids], dtype=np.int64)
            for split, ids in lists.classes.items()
        }
        self._class_names = [lists.class_names.get(c, str(c)) for c in order]
        self.num_classes = len(set(lists.classes["trainval"]))

    @abstractmethod
    def read_file_lists(self, root: Path) -> FileLists:
        """Return the image files and class ids of each split, read from ``root``."""

    @property
    def class_names(self) -> list[str] | None:
        """Names of all classes (trainval then test), indexed by label."""
        return self._class_names

    def load_splits(self) -> Splits:
        """Return trainval, test and any extra splits as file datasets (the files checked)."""
        for split, paths in self._files.items():
            missing = next((path for path in paths if not path.is_file()), None)
            if missing is not None:
                raise DataNotFoundError(
                    f"{self.title}: image {missing} (of the {split} split) does not exist; "
                    f"data.args.root must hold the dataset's images as its lists name them"
                )
        files, labels = self._files, self._labels
        extra: dict[str, Dataset[Any]] = {
            split: FileImageDataset(files[split], labels[split], transform=self.eval_transform)
            for split in files
            if split not in ("trainval", "test")
        }
        return Splits(
            train=FileImageDataset(
                files["trainval"], labels["trainval"], None, self.train_transform
            ),
            trainval=FileImageDataset(
                files["trainval"], labels["trainval"], None, self.eval_transform
            ),
            test=FileImageDataset(files["test"], labels["test"], transform=self.eval_transform),
            trainval_labels=labels["trainval"],
            extra=extra,
            device=self.file_device_plan(dict(files), labels),
        )


def _class_order(classes: dict[str, list[Any]]) -> list[Any]:
    """Return the trainval class ids sorted, then the other splits' new class ids sorted."""
    trainval = sorted(set(classes["trainval"]))
    seen = set(trainval)
    others = sorted(
        {c for split, ids in classes.items() if split != "trainval" for c in ids} - seen
    )
    return trainval + others


def _require(path: Path, title: str, layout: str) -> Path:
    if not path.is_file():
        raise DataNotFoundError(f"{title} file {path} not found: data.args.root must hold {layout}")
    return path


def _lines(path: Path, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields split at whitespace)`` of the non-blank lines after ``skip``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PlpDataError(f"{path}: cannot read ({type(error).__name__})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if number > skip and line.strip():
            yield number, line.split()


def _fields(path: Path, number: int, parts: list[str], expected: str) -> list[str]:
    if len(parts) != len(expected.split()):
        raise PlpDataError(
            f"{path} line {number}: expected '{expected}', got '{' '.join(parts)[:120]}'"
        )
    return parts


def _integer(path: Path, number: int, value: str, what: str, low: int, high: int | None) -> int:
    try:
        result = int(value)
    except ValueError:
        result = low - 1
    if result < low or (high is not None and result > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise PlpDataError(f"{path} line {number}: {what} {value!r} is not an integer in {bounds}")
    return result


def _relative(path: Path, where: str, value: str, what: str) -> str:
    """Return ``value`` if it is a file path relative to the dataset folder, inside it.

    Raises:
        PlpDataError: ``<file> <where>: <what> '<value>' must be ...`` (empty, absolute, ``..``).
    """
    parts = Path(value).parts
    if not value.strip() or "\0" in value or Path(value).is_absolute() or ".." in parts:
        raise PlpDataError(
            f"{path} {where}: {what} {value!r} must be a file path relative to the dataset "
            "folder (not empty, not absolute, no '..')"
        )
    return value


def _unique(path: Path, number: int, key: Hashable, seen: dict[Any, Any], what: str) -> None:
    if key in seen:
        raise PlpDataError(f"{path} line {number}: {what} {key!r} appears twice")


def _split_by_class(
    files: list[Path], classes: list[int], last_trainval_class: int
) -> tuple[dict[str, list[Path]], dict[str, list[Any]]]:
    """Return files and classes split into trainval (class <= last) and test (the rest)."""
    in_trainval = [c <= last_trainval_class for c in classes]
    split_files = {
        "trainval": [f for f, t in zip(files, in_trainval, strict=True) if t],
        "test": [f for f, t in zip(files, in_trainval, strict=True) if not t],
    }
    split_classes: dict[str, list[Any]] = {
        "trainval": [c for c, t in zip(classes, in_trainval, strict=True) if t],
        "test": [c for c, t in zip(classes, in_trainval, strict=True) if not t],
    }
    return split_files, split_classes


CUB_LAYOUT = "images.txt, image_class_labels.txt and images/ (CUB_200_2011/ from CUB_200_2011.tgz)"


@DATAMODULES.register("cub200")
class Cub200DataModule(_BenchmarkDataModule):
    """CUB-200-2011 birds (Wah et al. 2011): 200 species, classes 1-100 trainval, 101-200 test.

    ``<root>`` is the extracted ``CUB_200_2011/`` folder: ``images.txt`` (``<image_id>
    <image_name>``), ``image_class_labels.txt`` (``<image_id> <class_id>``), ``images/`` and,
    optionally, ``classes.txt`` (``<class_id> <class_name>``) for the class names. The
    ``train_test_split.txt`` of the classification task is not used: metric learning splits by
    class. Protocol: ``test_leave_one_out``.
    """

    title = "CUB-200-2011"

    def __init__(self, root: str = "data/CUB_200_2011", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)

    def read_file_lists(self, root: Path) -> FileLists:
        """Return the images of classes 1-100 (trainval) and 101-200 (test)."""
        images_txt = _require(root / "images.txt", self.title, CUB_LAYOUT)
        labels_txt = _require(root / "image_class_labels.txt", self.title, CUB_LAYOUT)
        names: dict[int, str] = {}
        for number, parts in _lines(images_txt):
            image_id, name = _fields(images_txt, number, parts, "<image_id> <image_name>")
            key = _integer(images_txt, number, image_id, "image id", 1, None)
            _unique(images_txt, number, key, names, "image id")
            names[key] = _relative(images_txt, f"line {number}", name, "image_name")
        labels: dict[int, int] = {}
        for number, parts in _lines(labels_txt):
            image_id, class_id = _fields(labels_txt, number, parts, "<image_id> <class_id>")
            key = _integer(labels_txt, number, image_id, "image id", 1, None)
            _unique(labels_txt, number, key, labels, "image id")
            if key not in names:
                raise PlpDataError(
                    f"{labels_txt} line {number}: image id {key} is not in {images_txt.name}"
                )
            labels[key] = _integer(labels_txt, number, class_id, "class id", 1, 200)
        unlabelled = sorted(set(names) - set(labels))
        if unlabelled:
            raise PlpDataError(
                f"{labels_txt}: no class for image id {unlabelled[0]} of {images_txt.name} "
                f"({len(unlabelled)} image(s) without a class)"
            )
        order = sorted(names)
        files, classes = _split_by_class(
            [root / "images" / names[k] for k in order], [labels[k] for k in order], 100
        )
        class_names: dict[Any, str] = {}
        classes_txt = root / "classes.txt"
        if classes_txt.is_file():
            for number, parts in _lines(classes_txt):
                class_id, name = _fields(classes_txt, number, parts, "<class_id> <class_name>")
                key = _integer(classes_txt, number, class_id, "class id", 1, 200)
                _unique(classes_txt, number, key, class_names, "class id")
                class_names[key] = name
        return FileLists(files, classes, class_names)


CARS_LAYOUT = "cars_annos.mat and car_ims/ (from car_ims.tgz)"


def _mat_value(value: Any) -> Any:
    """Return the one scalar or string a MATLAB cell / 1x1 matrix from ``loadmat`` holds.

    Raises:
        ValueError: It holds no value (an empty matrix or string) or several.
    """
    flat = np.asarray(value).ravel()
    if flat.size != 1:
        raise ValueError(f"holds {flat.size} values")
    item = flat[0]
    if isinstance(item, np.ndarray):
        return _mat_value(item)
    return item.item() if isinstance(item, np.generic) else item  # numpy scalar: Python's


def _mat_integer(value: Any) -> int:
    """Return the whole number a MATLAB 1x1 matrix holds (an integral float counts).

    Raises:
        ValueError: Not one number, or NaN, infinite or fractional.
    """
    item = _mat_value(value)
    if isinstance(item, bool) or not isinstance(item, int | float):
        raise ValueError(f"holds {item!r}, not a number")
    if isinstance(item, float) and not item.is_integer():
        raise ValueError(f"holds {item!r}, not a whole number")  # NaN and inf included
    return int(item)


def _mat_text(value: Any) -> str:
    """Return the non-empty string a MATLAB char array holds.

    Raises:
        ValueError: Not one string, or an empty one.
    """
    item = _mat_value(value)
    if not isinstance(item, str) or not item.strip():
        raise ValueError(f"holds {item!r}, not a text")
    return item


@DATAMODULES.register("cars196")
class Cars196DataModule(_BenchmarkDataModule):
    """Stanford Cars (Krause et al. 2013): 196 models, classes 1-98 trainval, 99-196 test.

    ``<root>`` holds ``cars_annos.mat`` (the annotations of all 16,185 images: MATLAB struct
    array ``annotations`` with ``relative_im_path`` and ``class``, and ``class_names``) and the
    ``car_ims/`` folder it names. Whole images are used (the bounding boxes are ignored, as in
    the metric-learning literature); the ``test`` flag of the classification task is not used.
    Protocol: ``test_leave_one_out``.
    """

    title = "Cars196"

    def __init__(self, root: str = "data/cars196", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)

    def read_file_lists(self, root: Path) -> FileLists:
        """Return the images of classes 1-98 (trainval) and 99-196 (test)."""
        from scipy.io import loadmat

        path = _require(root / "cars_annos.mat", self.title, CARS_LAYOUT)
        try:
            mat = loadmat(path)
        except Exception as error:  # scipy raises ValueError, TypeError, OSError ... on junk
            raise PlpDataError(f"{path}: not a MATLAB .mat file ({type(error).__name__})") from None
        annotations = mat.get("annotations")
        fields = getattr(getattr(annotations, "dtype", None), "names", None) or ()
        if not {"relative_im_path", "class"} <= set(fields):
            raise PlpDataError(
                f"{path}: expected a struct array 'annotations' with fields relative_im_path and "
                f"class, found variables {sorted(k for k in mat if not k.startswith('__'))}"
            )
        files: list[Path] = []
        classes: list[int] = []
        for number, record in enumerate(np.asarray(annotations).ravel(), start=1):
            try:
                relative = _mat_text(record["relative_im_path"])
                class_id = _mat_integer(record["class"])
            except (ValueError, TypeError, IndexError, OverflowError) as error:
                raise PlpDataError(
                    f"{path} annotation {number}: expected a relative_im_path string and an "
                    f"integer class ({str(error)[:120]})"
                ) from None
            if not 1 <= class_id <= 196:
                raise PlpDataError(
                    f"{path} annotation {number}: class {class_id} is not an integer in 1..196"
                )
            files.append(root / _relative(path, f"annotation {number}", relative, "path"))
            classes.append(class_id)
        class_names: dict[Any, str] = {}
        if "class_names" in mat:
            for index, name in enumerate(np.asarray(mat["class_names"]).ravel(), start=1):
                try:
                    class_names[index] = _mat_text(name)
                except (ValueError, TypeError, IndexError) as error:
                    raise PlpDataError(
                        f"{path}: class_names entry {index}: expected a class name "
                        f"({str(error)[:120]})"
                    ) from None
        split_files, split_classes = _split_by_class(files, classes, 98)
        return FileLists(split_files, split_classes, class_names)


SOP_HEADER = "image_id class_id super_class_id path"
SOP_LAYOUT = (
    "Ebay_train.txt, Ebay_test.txt and the <category>_final/ folders (Stanford_Online_Products/)"
)


@DATAMODULES.register("sop")
class StanfordOnlineProductsDataModule(_BenchmarkDataModule):
    """Stanford Online Products (Oh Song et al. 2016): 22,634 products of 12 categories.

    ``<root>`` is the extracted ``Stanford_Online_Products/`` folder: ``Ebay_train.txt`` (the
    trainval split) and ``Ebay_test.txt`` (test), each with the header line ``image_id class_id
    super_class_id path`` and paths such as ``bicycle_final/111085122871_0.JPG`` relative to
    ``<root>``. The two files' classes must be disjoint. Protocol: ``test_leave_one_out``.
    """

    title = "Stanford Online Products"

    def __init__(self, root: str = "data/Stanford_Online_Products", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)

    def read_file_lists(self, root: Path) -> FileLists:
        """Return the images of ``Ebay_train.txt`` (trainval) and ``Ebay_test.txt`` (test)."""
        files: dict[str, list[Path]] = {}
        classes: dict[str, list[Any]] = {}
        owner: dict[int, str] = {}
        for split, name in (("trainval", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
            path = _require(root / name, self.title, SOP_LAYOUT)
            header = next(_lines(path), None)
            if header is None or header[0] != 1 or " ".join(header[1]) != SOP_HEADER:
                raise PlpDataError(f"{path} line 1: expected the header '{SOP_HEADER}'")
            files[split], classes[split] = [], []
            ids: dict[int, int] = {}
            for number, parts in _lines(path, skip=1):
                image_id, class_id, _, relative = _fields(path, number, parts, SOP_HEADER)
                key = _integer(path, number, image_id, "image_id", 1, None)
                _unique(path, number, key, ids, "image_id")
                ids[key] = number
                label = _integer(path, number, class_id, "class_id", 1, None)
                if owner.setdefault(label, name) != name:
                    raise PlpDataError(
                        f"{path} line {number}: class_id {label} is also in {owner[label]}; "
                        "the benchmark's train and test classes are disjoint"
                    )
                files[split].append(root / _relative(path, f"line {number}", relative, "path"))
                classes[split].append(label)
        return FileLists(files, classes, {})


INSHOP_HEADER = "image_name item_id evaluation_status"
INSHOP_LAYOUT = (
    "list_eval_partition.txt (from Eval/) and img/ (from Img/img.zip) of the In-shop Clothes "
    "Retrieval Benchmark"
)


@DATAMODULES.register("inshop")
class InShopDataModule(_BenchmarkDataModule):
    """DeepFashion In-shop Clothes Retrieval (Liu et al. 2016): 7,982 clothing items.

    ``<root>`` holds ``list_eval_partition.txt`` (a count line, the header ``image_name item_id
    evaluation_status``, then one image per line with status ``train``, ``query`` or
    ``gallery``) and the ``img/`` folder its paths start with. Trainval is ``train``; ``test`` is
    the query, and the extra splits ``query`` and ``gallery`` serve the dataset's own protocol,
    ``[evaluate] protocol = "query_gallery"`` (there are no cameras). Train items must not appear
    in the query or gallery.
    """

    title = "In-Shop"

    def __init__(self, root: str = "data/InShop", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)

    def read_file_lists(self, root: Path) -> FileLists:
        """Return the train (trainval), query (test and ``query``) and gallery images."""
        path = _require(root / "list_eval_partition.txt", self.title, INSHOP_LAYOUT)
        lines = _lines(path)
        count = next(lines, None)
        if count is None or count[0] != 1 or len(count[1]) != 1:
            raise PlpDataError(f"{path} line 1: expected the number of images")
        expected = _integer(path, 1, count[1][0], "number of images", 0, None)
        header = next(lines, None)
        if header is None or " ".join(header[1]) != INSHOP_HEADER:
            number = header[0] if header is not None else 2
            raise PlpDataError(f"{path} line {number}: expected the header '{INSHOP_HEADER}'")
        files: dict[str, list[Path]] = {"train": [], "query": [], "gallery": []}
        classes: dict[str, list[Any]] = {"train": [], "query": [], "gallery": []}
        seen: dict[str, int] = {}
        train_items: dict[str, int] = {}
        test_items: dict[str, int] = {}
        for number, parts in lines:
            name, item, status = _fields(path, number, parts, INSHOP_HEADER)
            if status not in files:
                raise PlpDataError(
                    f"{path} line {number}: evaluation_status {status!r} is not one of "
                    "train, query, gallery"
                )
            _unique(path, number, name, seen, "image")
            seen[name] = number
            files[status].append(root / _relative(path, f"line {number}", name, "image_name"))
            classes[status].append(item)
            if status == "train":
                train_items.setdefault(item, number)
            else:
                test_items.setdefault(item, number)
        if len(seen) != expected:
            raise PlpDataError(f"{path} line 1: says {expected} images, the file lists {len(seen)}")
        lines_of = {i: (train_items[i], test_items[i]) for i in set(train_items) & set(test_items)}
        if lines_of:
            item = min(lines_of, key=lambda i: max(lines_of[i]))
            train_line, test_line = lines_of[item]
            raise PlpDataError(
                f"{path} line {max(lines_of[item])}: item {item} is in train (line {train_line}) "
                f"and in query/gallery (line {test_line}); the benchmark's items are disjoint"
            )
        query = files["query"]  # one list for test and query: one decoded cache
        return FileLists(
            {
                "trainval": files["train"],
                "test": query,
                "query": query,
                "gallery": files["gallery"],
            },
            {
                "trainval": classes["train"],
                "test": classes["query"],
                "query": classes["query"],
                "gallery": classes["gallery"],
            },
            {},
        )
