"""What ``invoke train`` checks before torch and Lightning load: names and missing data files.

Importing the pipelines costs 15-25 s (torch, Lightning, the registries' modules); a misspelt
component name or a dataset that is not on disk is found here in well under a second, with the
message the full checks give (tests compare the two). Everything else (arguments, the data's
contents, the model) is checked by the pipelines as before; a config that passes here can still
fail there. Standard library only (and the config's own modules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from plp_pipelines._components import check_names
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError

__all__ = ["check_before_torch", "missing_data"]

# As plp_data's datamodules name them (tests check each message against the datamodule's own).
_MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR = {  # name: (folder, archive, batch files)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ("train", "test")),
}
_CSV_COLUMNS = ("label", "path", "split", "is_query", "is_gallery")


def check_before_torch(config: Config) -> None:
    """Raise ConfigError for an unknown component name or missing data files of ``config``.

    Only what needs no torch: the names against :data:`plp_pipelines._catalog.CATALOG`, and the
    files of the datamodules whose files the config names (MNIST family and CIFAR without
    ``download``, ``image_folder``, ``market1501``, ``csv``, ``cub200``, ``cars196``, ``sop``,
    ``inshop``).
    """
    check_names(config)
    problem = missing_data(config.data.name, config.data.args)
    if problem is not None:
        message, when_built = problem
        raise ConfigError(f"{config.source}: data: {message}" if when_built else message)


def missing_data(name: str, args: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Return the datamodule's message for its missing files, or None when none are missing.

    The flag says whether the datamodule says so when it is built (the pipelines then prefix
    the config file and ``data:``) rather than when its splits load. Arguments of the wrong type
    are left to the pipelines' checks (None).
    """
    check = _CHECKS.get(name)
    return check(args) if check is not None else None


def _path(args: Mapping[str, Any], key: str, default: str) -> Path | None:
    value = args.get(key, default)
    return Path(value) if isinstance(value, str) else None


def _mnist(name: str) -> Callable[[Mapping[str, Any]], tuple[str, bool] | None]:
    def check(args: Mapping[str, Any]) -> tuple[str, bool] | None:
        root = _path(args, "root", "data")
        if root is None or args.get("download", False) is not False:
            return None
        raw = root / _MNIST_FOLDERS[name] / "raw"
        missing = [
            file
            for file in _MNIST_FILES
            if not (raw / file).is_file() and not (raw / f"{file}.gz").is_file()
        ]
        if not missing:
            return None
        files = ", ".join(f"{file}.gz" for file in missing)
        return _not_found(_MNIST_FOLDERS[name], raw, files), False

    return check


def _cifar(name: str) -> Callable[[Mapping[str, Any]], tuple[str, bool] | None]:
    def check(args: Mapping[str, Any]) -> tuple[str, bool] | None:
        root = _path(args, "root", "data")
        if root is None or args.get("download", False) is not False:
            return None
        base, archive, expected = _CIFAR[name]
        missing = [file for file in expected if not (root / base / file).is_file()]
        if not missing or (root / archive).is_file():
            return None
        files = f"{', '.join(missing)} (or {archive} in {root})"
        return _not_found(base, root / base, files), False

    return check


def _not_found(what: str, where: Path, files: str) -> str:
    return (
        f"{what} not found: expected {files} in {where}; put them there, point "
        "data.args.root elsewhere, or set data.args.download = true"
    )


def _image_folder(args: Mapping[str, Any]) -> tuple[str, bool] | None:
    root = _path(args, "root", "data")
    if root is None or root.is_dir():
        return None
    return (
        f"image folder {root} does not exist: expected one sub-folder of images per class "
        "(or train/ and test/ holding such sub-folders)"
    ), True


def _market1501(args: Mapping[str, Any]) -> tuple[str, bool] | None:
    root = _path(args, "root", "data/Market-1501-v15.09.15")
    if root is None or (root / "bounding_box_train").is_dir():
        return None
    return (
        f"Market-1501 folder {root / 'bounding_box_train'} does not exist: data.args.root must "
        "hold bounding_box_train/, query/ and bounding_box_test/ "
        "(unzip Market-1501-v15.09.15.zip; it cannot be downloaded automatically)"
    ), True


def _csv(args: Mapping[str, Any]) -> tuple[str, bool] | None:
    path = _path(args, "path", "data/dataset.csv")
    if path is None or path.is_file():
        return None
    return (
        f"dataset CSV {path} not found: data.args.path must name a CSV with the columns "
        f"{', '.join(_CSV_COLUMNS)}"
    ), True


# name: (default root, title, the first file its lists are read from, the layout it names)
_BENCHMARKS = {
    "cub200": (
        "data/CUB_200_2011",
        "CUB-200-2011",
        "images.txt",
        "images.txt, image_class_labels.txt and images/ (CUB_200_2011/ from CUB_200_2011.tgz)",
    ),
    "cars196": (
        "data/cars196",
        "Cars196",
        "cars_annos.mat",
        "cars_annos.mat and car_ims/ (from car_ims.tgz)",
    ),
    "sop": (
        "data/Stanford_Online_Products",
        "Stanford Online Products",
        "Ebay_train.txt",
        "Ebay_train.txt, Ebay_test.txt and the <category>_final/ folders "
        "(Stanford_Online_Products/)",
    ),
    "inshop": (
        "data/InShop",
        "In-Shop",
        "list_eval_partition.txt",
        "list_eval_partition.txt (from Eval/) and img/ (from Img/img.zip) of the In-shop Clothes "
        "Retrieval Benchmark",
    ),
}


def _benchmark(name: str) -> Callable[[Mapping[str, Any]], tuple[str, bool] | None]:
    def check(args: Mapping[str, Any]) -> tuple[str, bool] | None:
        default, title, first, layout = _BENCHMARKS[name]
        root = _path(args, "root", default)
        if root is None or (root / first).is_file():
            return None
        return f"{title} file {root / first} not found: data.args.root must hold {layout}", True

    return check


_CHECKS: dict[str, Callable[[Mapping[str, Any]], tuple[str, bool] | None]] = {
    **{name: _benchmark(name) for name in _BENCHMARKS},
    **{name: _mnist(name) for name in _MNIST_FOLDERS},
    **{name: _cifar(name) for name in _CIFAR},
    "image_folder": _image_folder,
    "market1501": _market1501,
    "csv": _csv,
}
