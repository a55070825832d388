"""The real on-disk formats, written tiny into a temporary directory and read by the datamodules."""

from __future__ import annotations

import gzip
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plp_data import (
    DataNotFoundError,
    PlpDataError,
    build_datamodule,
    parse_market1501_name,
)
from plp_data.testing import write_cifar_batches, write_idx_dataset, write_market1501


def _write_mnist(root: Path, folder: str) -> None:
    write_idx_dataset(root, folder, num_train=20, num_test=10)


@pytest.mark.parametrize(
    ("name", "folder"),
    [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")],
)
def test_mnist_family_reads_gzipped_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    _write_mnist(tmp_path, folder)
    dm = build_datamodule(name, root=str(tmp_path), batch_size=4, val_fraction=0.0)
    dm.setup()
    assert (len(dm.splits.trainval), len(dm.splits.test)) == (20, 10)
    image, label = dm.splits.test[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert int(label) == 3
    with gzip.open(tmp_path / folder / "raw" / "t10k-images-idx3-ubyte.gz") as file:
        raw = np.frombuffer(file.read()[16:], np.uint8).reshape(10, 28, 28)
    mean, std = dm.train_transform.transforms[-1].mean, dm.train_transform.transforms[-1].std
    expected = (torch.from_numpy(raw[3] / 255.0).float() - mean[0]) / std[0]
    torch.testing.assert_close(image[0], expected)
    assert np.array_equal(dm.splits.trainval_labels, np.arange(20) % 10)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 1, 28, 28) and labels.dtype == torch.int64


def test_mnist_corrupt_file_names_the_file(tmp_path: Path) -> None:
    _write_mnist(tmp_path, "MNIST")
    bad = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(PlpDataError, match="t10k-images-idx3-ubyte"):
        build_datamodule("mnist", root=str(tmp_path)).setup()


def _write_cifar10(root: Path) -> Path:
    return write_cifar_batches(root, per_batch=3, num_test=4)


def test_cifar10_reads_pickled_batches_in_order(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    dm = build_datamodule("cifar10", root=str(tmp_path), batch_size=5, val_fraction=0.0)
    dm.setup()
    assert (len(dm.splits.trainval), len(dm.splits.test)) == (15, 4)
    first = pickle.loads((folder / "data_batch_2").read_bytes())
    image, label = dm.splits.trainval[3]  # the first image of data_batch_2
    assert image.shape == (3, 32, 32) and int(label) == first["labels"][0]
    pixels = first["data"][0].reshape(3, 32, 32) / 255.0
    normalize = dm.eval_transform.transforms[-1]
    expected = (torch.from_numpy(pixels).float() - torch.tensor(normalize.mean)[:, None, None]) / (
        torch.tensor(normalize.std)[:, None, None]
    )
    torch.testing.assert_close(image, expected)
    train_image, _ = dm.splits.train[3]  # augmented: same shape, generally other pixels
    assert train_image.shape == (3, 32, 32)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = write_cifar_batches(tmp_path, per_batch=2, num_test=3, cifar100=True)
    dm = build_datamodule("cifar100", root=str(tmp_path), val_fraction=0.0)
    dm.setup()
    expected = pickle.loads((folder / "test").read_bytes())["fine_labels"]
    assert [int(dm.splits.test[i][1]) for i in range(3)] == expected
    assert dm.num_classes == 100


def test_cifar_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}))
    with pytest.raises(PlpDataError, match=r"test_batch.*not allowed"):
        build_datamodule("cifar10", root=str(tmp_path)).setup()
    assert not marker.exists()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("name resolution disabled by the test (no network)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize(
    ("name", "where"), [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py")]
)
def test_missing_files_say_what_to_put_where(tmp_path: Path, name: str, where: str) -> None:
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / where}.*download = true"):
        build_datamodule(name, root=str(tmp_path)).setup()


@pytest.mark.parametrize(
    ("name", "files"),
    [("mnist", "train-images-idx3-ubyte.gz"), ("cifar100", "cifar-100-python.tar.gz")],
)
def test_download_without_network_says_which_files_to_put_where(
    tmp_path: Path, no_network: None, name: str, files: str
) -> None:
    with pytest.raises(DataNotFoundError, match=f"could not download.*{files}.*{tmp_path}"):
        build_datamodule(name, root=str(tmp_path), download=True).setup()


def _write_png(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def test_image_folder_with_train_and_test_folders(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("test", 2)):
        for c, name in enumerate(("cat", "dog")):
            for i in range(count):
                _write_png(tmp_path / split / name / f"{i}.png", 40 * c + i)
    dm = build_datamodule(
        "image_folder", root=str(tmp_path), image_size=[16, 16], val_fraction=0.0, batch_size=2
    )
    assert dm.num_classes == 2 and dm.classes == ["cat", "dog"]
    dm.setup()
    assert (len(dm.splits.trainval), len(dm.splits.test)) == (6, 4)
    assert dm.splits.trainval_labels.tolist() == [0, 0, 0, 1, 1, 1]
    image, label = dm.splits.test[2]
    assert image.shape == (3, 16, 16) and int(label) == 1


def test_image_folder_split_is_stratified_and_fixed(tmp_path: Path) -> None:
    for c in range(3):
        for i in range(10):
            _write_png(tmp_path / f"class_{c}" / f"{i}.jpg", 20 * c + i)
    kwargs = {"root": str(tmp_path), "test_fraction": 0.2, "image_size": [8, 8]}
    first, second = (
        build_datamodule("image_folder", **kwargs),
        build_datamodule("image_folder", **kwargs, seed=7),
    )
    first.setup()
    second.setup()
    assert len(first.splits.test) == 6
    assert np.bincount(first.splits.test.labels.numpy()).tolist() == [2, 2, 2]
    assert first.splits.test.paths == second.splits.test.paths  # split_seed fixes it
    assert set(first.splits.test.paths).isdisjoint(first.splits.trainval.paths)


def test_image_folder_missing_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=f"{tmp_path / 'nope'} does not exist"):
        build_datamodule("image_folder", root=str(tmp_path / "nope"))


def _write_market(root: Path) -> None:
    write_market1501(root)


def test_market1501_ids_cameras_junk_and_distractors(tmp_path: Path) -> None:
    _write_market(tmp_path)
    dm = build_datamodule(
        "market1501", root=str(tmp_path), val_fraction=0.0, image_size=[32, 16], batch_size=2
    )
    assert dm.num_classes == 3
    dm.setup()
    trainval, query = dm.splits.trainval, dm.splits.extra["query"]
    gallery = dm.splits.extra["gallery"]
    assert trainval.labels.tolist() == [0, 0, 1, 1, 2]  # relabelled in sorted-id order
    assert trainval.cameras is not None and trainval.cameras.tolist() == [1, 2, 1, 3, 6]
    assert gallery.labels.tolist() == [0, 3, 3, 5]  # junk gone, distractor kept, real ids
    assert gallery.cameras is not None and gallery.cameras.tolist() == [1, 1, 4, 3]
    image, label, camera = query[1]
    assert image.shape == (3, 32, 16) and (int(label), int(camera)) == (5, 2)
    assert dm.splits.test is query
    assert set(dm.eval_splits) == {"trainval", "test", "query", "gallery"}
    images, _, cameras = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 32, 16) and cameras.shape == (2,)


def test_market1501_malformed_name_and_missing_folder(tmp_path: Path) -> None:
    _write_market(tmp_path)
    (tmp_path / "query" / "person_1.jpg").write_bytes(b"")
    with pytest.raises(PlpDataError, match=r"person_1\.jpg: not a Market-1501 image name"):
        build_datamodule("market1501", root=str(tmp_path)).setup()
    with pytest.raises(DataNotFoundError, match="bounding_box_train does not exist"):
        build_datamodule("market1501", root=str(tmp_path / "missing"))
    assert parse_market1501_name("1501_c6s4_001877_02.jpg") == (1501, 6)


def test_transforms_are_overridable_and_checked(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    dm = build_datamodule("cifar10", root=str(tmp_path), augment=[], image_size=[16, 16])
    dm.setup()
    assert dm.splits.train[0][0].shape == (3, 16, 16)
    torch.testing.assert_close(dm.splits.train[0][0], dm.splits.trainval[0][0])  # no augmentation
    with pytest.raises(
        PlpDataError, match=r"Horizntal.* \(did you mean 'RandomHorizontalFlip'\?\)"
    ):
        build_datamodule("cifar10", root=str(tmp_path), augment=[{"name": "RandomHorizntalFlip"}])
    with pytest.raises(PlpDataError, match="mean"):
        build_datamodule("cifar10", root=str(tmp_path), mean=[0.5], std=[0.2, 0.2])
