"""Each datamodule's ``class_names``, indexed by label, from the dataset's own files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from PIL import Image

from plp_data import PlpDataError, build_datamodule
from plp_data.testing import write_cifar_batches, write_idx_dataset, write_market1501

FASHION_MNIST = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]  # Xiao et al. 2017, Table 1
KMNIST = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # Clanuwat et al. 2018


def test_digits_and_mnist_are_named_by_their_digits(tmp_path: Path) -> None:
    assert build_datamodule("digits").class_names == list("0123456789")
    write_idx_dataset(tmp_path, "MNIST")
    assert build_datamodule("mnist", root=str(tmp_path)).class_names == list("0123456789")


@pytest.mark.parametrize(
    ("name", "folder", "expected"),
    [("fashion_mnist", "FashionMNIST", FASHION_MNIST), ("kmnist", "KMNIST", KMNIST)],
)
def test_mnist_variants_have_their_published_names(
    name: str, folder: str, expected: list[str], tmp_path: Path
) -> None:
    write_idx_dataset(tmp_path, folder)
    assert build_datamodule(name, root=str(tmp_path)).class_names == expected


def test_cifar_names_come_from_the_meta_files(tmp_path: Path) -> None:
    write_cifar_batches(tmp_path)  # batches.meta: label_names a..j
    assert build_datamodule("cifar10", root=str(tmp_path)).class_names == list("abcdefghij")
    write_cifar_batches(tmp_path, cifar100=True)  # meta: fine_label_names "0".."99"
    cifar100 = build_datamodule("cifar100", root=str(tmp_path))
    assert cifar100.class_names == [str(k) for k in range(100)]


def test_cifar_without_meta_file_has_no_names_and_a_bad_one_is_named(tmp_path: Path) -> None:
    folder = write_cifar_batches(tmp_path)
    (folder / "batches.meta").unlink()
    assert build_datamodule("cifar10", root=str(tmp_path)).class_names is None
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["only", "three", "x"]}))
    with pytest.raises(PlpDataError, match=r"batches\.meta: expected 'label_names', a list of 10"):
        _ = build_datamodule("cifar10", root=str(tmp_path)).class_names


def test_image_folders_are_named_by_their_folders(tmp_path: Path) -> None:
    for name in ("zebra", "ant", "moth"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / name / f"{i}.png")
    dm = build_datamodule("image_folder", root=str(tmp_path), val_fraction=0.0)
    assert dm.class_names == ["ant", "moth", "zebra"]
    dm.setup()
    image_label = int(dm.splits.test[0][1])
    assert dm.splits.test.paths[0].parent.name == dm.class_names[image_label]  # type: ignore[attr-defined]


def test_market1501_identities_have_no_names(tmp_path: Path) -> None:
    write_market1501(tmp_path)
    assert build_datamodule("market1501", root=str(tmp_path)).class_names is None
