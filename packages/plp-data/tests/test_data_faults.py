"""Data files checked before training: unpacking all-or-nothing, stale files, labels, ids, disks.

Each case writes the real on-disk format (or a damaged copy of it) into a temporary folder and
loads it through the datamodule's normal path.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import pickle
import re
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from plp_data import (
    ArrayImageDataset,
    PlpDataError,
    _torchvision_sets,
    build_datamodule,
    parse_market1501_name,
)
from plp_data.testing import (
    write_cifar_archive,
    write_cifar_batch,
    write_cifar_batches,
    write_idx_dataset,
    write_market1501,
)

LABELS = "train-labels-idx1-ubyte"
IMAGES = "train-images-idx3-ubyte"


def _idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian dims, the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + array.tobytes()


def _mnist(root: Path) -> Path:
    return write_idx_dataset(root, "MNIST", num_train=20, num_test=10)


def _load_mnist(root: Path) -> np.ndarray:
    """Set up MNIST under ``root``; return its trainval labels."""
    dm = build_datamodule("mnist", root=str(root), val_fraction=0.0)
    dm.setup()
    return np.asarray(dm.splits.trainval_labels)


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name)


def _make_older(path: Path, than: Path) -> None:
    stamp = than.stat().st_mtime_ns - 10**10
    os.utime(path, ns=(stamp, stamp))


def _make_newer(path: Path, than: Path) -> None:
    stamp = than.stat().st_mtime_ns + 10**10
    os.utime(path, ns=(stamp, stamp))


GOOD_LABELS = np.arange(20) % 10


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (LABELS, lambda good: good[: len(good) // 2], "not a complete gzip file"),
        (LABELS, lambda good: b"this is not gzip at all", "not a complete gzip file"),
        (
            LABELS,
            lambda good: gzip.compress(b"\x00\x00\x0d\x01" + bytes(24)),
            r"expected an idx1 file of unsigned bytes \(magic 00000801\), found 00000d01",
        ),
        (
            LABELS,
            lambda good: gzip.compress(_idx_bytes(GOOD_LABELS)[:-1]),
            r"27 bytes, but its header \(20,\) needs 28: truncated or padded$",
        ),
        (
            IMAGES,
            lambda good: gzip.compress(_idx_bytes(np.zeros((20, 27, 28)))),
            r"items of shape \(27, 28\), expected \(28, 28\)",
        ),
    ],
    ids=["truncated-gz", "not-gz", "bad-magic", "short-idx", "wrong-image-shape"],
)
def test_corrupt_gz_leaves_nothing_and_the_good_gz_put_back_wins(
    tmp_path: Path, name: str, content: object, message: str
) -> None:
    raw = _mnist(tmp_path)
    packed = raw / f"{name}.gz"
    packed.write_bytes(content(packed.read_bytes()))  # type: ignore[operator]
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(packed))}: .*{message}"):
        _load_mnist(tmp_path)
    assert not (raw / name).exists()
    assert _partials(tmp_path) == []
    _mnist(tmp_path)  # the correct .gz put back
    np.testing.assert_array_equal(_load_mnist(tmp_path), GOOD_LABELS)
    assert _partials(tmp_path) == []


def test_unpacked_file_older_than_its_gz_is_unpacked_again(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    np.testing.assert_array_equal(_load_mnist(tmp_path), GOOD_LABELS)
    # A valid unpacked file of the same size but other labels, older than the .gz: stale.
    (raw / LABELS).write_bytes(_idx_bytes(np.zeros(20)))
    _make_older(raw / LABELS, raw / f"{LABELS}.gz")
    np.testing.assert_array_equal(_load_mnist(tmp_path), GOOD_LABELS)


def test_older_valid_unpacked_file_in_a_read_only_folder_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _mnist(tmp_path)
    _load_mnist(tmp_path)
    (raw / LABELS).write_bytes(_idx_bytes(np.full(20, 3)))
    _make_older(raw / LABELS, raw / f"{LABELS}.gz")
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and path != raw)
    np.testing.assert_array_equal(_load_mnist(tmp_path), np.full(20, 3))


@pytest.mark.parametrize(
    "content",
    [
        _idx_bytes(GOOD_LABELS)[:-3],  # truncated
        _idx_bytes(np.arange(21) % 10),  # valid, but another size than the .gz holds
        b"\x00\x00\x0d\x01" + _idx_bytes(GOOD_LABELS)[4:],  # same size, wrong magic
    ],
    ids=["truncated", "other-size", "bad-magic"],
)
def test_invalid_unpacked_file_newer_than_its_gz_is_unpacked_again(
    tmp_path: Path, content: bytes
) -> None:
    raw = _mnist(tmp_path)
    (raw / LABELS).write_bytes(content)
    _make_newer(raw / LABELS, raw / f"{LABELS}.gz")
    np.testing.assert_array_equal(_load_mnist(tmp_path), GOOD_LABELS)
    assert (raw / LABELS).read_bytes() == gzip.decompress((raw / f"{LABELS}.gz").read_bytes())


def test_valid_unpacked_file_newer_than_its_gz_is_kept(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    (raw / LABELS).write_bytes(_idx_bytes(np.full(20, 7)))  # same size, valid, newer: not stale
    _make_newer(raw / LABELS, raw / f"{LABELS}.gz")
    np.testing.assert_array_equal(_load_mnist(tmp_path), np.full(20, 7))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_idx_bytes(GOOD_LABELS)[:-5], r"23 bytes, but its header \(20,\) needs 28"),
        (b"\x00\x00\x08\x01\x00", r"idx header cut short \(5 bytes, expected 8\)"),
        (b"", "found an empty file"),
    ],
    ids=["truncated", "short-header", "empty"],
)
def test_invalid_unpacked_file_without_gz_is_named(
    tmp_path: Path, content: bytes, message: str
) -> None:
    raw = _mnist(tmp_path)
    (raw / f"{LABELS}.gz").unlink()
    (raw / LABELS).write_bytes(content)
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(raw / LABELS))}: .*{message}"):
        _load_mnist(tmp_path)


def test_gz_too_short_for_a_trailer_is_named(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    _load_mnist(tmp_path)  # unpacked, then the .gz is replaced by a stub
    (raw / f"{LABELS}.gz").write_bytes(b"\x1f\x8b")
    _make_older(raw / f"{LABELS}.gz", raw / LABELS)
    expected = rf"^{re.escape(str(raw / LABELS))}.gz: not a complete gzip file"
    with pytest.raises(PlpDataError, match=expected):
        _load_mnist(tmp_path)
    assert (raw / LABELS).is_file()  # the earlier unpacked file is left as it was


def test_unreadable_idx_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _mnist(tmp_path)
    (raw / f"{LABELS}.gz").unlink()
    (raw / LABELS).write_bytes(_idx_bytes(GOOD_LABELS))

    check = _torchvision_sets._idx_problem

    def refuse(path: Path, shape_tail: tuple[int, ...]) -> str | None:
        if path == raw / LABELS:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return check(path, shape_tail)

    monkeypatch.setattr(_torchvision_sets, "_idx_problem", refuse)
    expected = rf"^{re.escape(str(raw / LABELS))}: cannot read \(Permission denied\)$"
    with pytest.raises(PlpDataError, match=expected):
        _load_mnist(tmp_path)


def test_unpacked_file_honours_the_umask(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    previous = os.umask(0o027)
    try:
        _load_mnist(tmp_path)
    finally:
        os.umask(previous)
    assert (raw / LABELS).stat().st_mode & 0o777 == 0o640


def test_mnist_label_out_of_range_names_file_value_and_range(tmp_path: Path) -> None:
    raw = _mnist(tmp_path)
    labels = GOOD_LABELS.copy()
    labels[[7, 12]] = [10, 255]
    (raw / f"{LABELS}.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    expected = rf"^{re.escape(str(raw / LABELS))}: label 10 at item 7 is outside 0\.\.9 \(2 labels"
    with pytest.raises(PlpDataError, match=expected):
        _load_mnist(tmp_path)


def _load_cifar(root: Path, name: str = "cifar10") -> np.ndarray:
    """Set up CIFAR under ``root``; return its test labels."""
    dm = build_datamodule(name, root=str(root), val_fraction=0.0)
    dm.setup()
    test = dm.splits.test
    assert isinstance(test, ArrayImageDataset)
    return np.array([int(test[i][1]) for i in range(len(test))])


def _member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        file = tar.extractfile(name)
        assert file is not None
        return file.read()


def test_cifar_archive_is_extracted_and_read(tmp_path: Path) -> None:
    archive = write_cifar_archive(tmp_path, per_batch=3, num_test=4)
    expected = pickle.loads(_member(archive, "cifar-10-batches-py/test_batch"))["labels"]
    np.testing.assert_array_equal(_load_cifar(tmp_path), expected)
    assert sorted(os.listdir(tmp_path)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


@pytest.mark.parametrize(
    "damage",
    [lambda good: good[: len(good) * 6 // 10], lambda good: b"not an archive"],
    ids=["truncated", "not-an-archive"],
)
def test_damaged_cifar_archive_leaves_nothing_extracted(tmp_path: Path, damage: object) -> None:
    archive = write_cifar_archive(tmp_path, per_batch=3, num_test=4)
    good = archive.read_bytes()
    archive.write_bytes(damage(good))  # type: ignore[operator]
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(archive))}: corrupt or truncated"):
        _load_cifar(tmp_path)
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]
    archive.write_bytes(good)  # the correct archive put back
    assert len(_load_cifar(tmp_path)) == 4


def test_half_extracted_cifar_folder_is_completed_from_the_archive(tmp_path: Path) -> None:
    archive = write_cifar_archive(tmp_path, per_batch=3, num_test=4)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    whole = _member(archive, "cifar-10-batches-py/data_batch_1")
    (folder / "data_batch_1").write_bytes(whole[: len(whole) // 2])  # left by a killed extraction
    (folder / "notes.txt").write_text("mine")
    _load_cifar(tmp_path)
    assert (folder / "data_batch_1").read_bytes() == whole
    assert (folder / "notes.txt").read_text() == "mine"
    assert _partials(tmp_path) == []


def test_cifar_archive_without_a_batch_names_it(tmp_path: Path) -> None:
    folder = write_cifar_batches(tmp_path / "scratch", per_batch=3, num_test=4)
    (folder / "data_batch_3").unlink()
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(tmp_path / "scratch")
    with pytest.raises(PlpDataError, match="holds no cifar-10-batches-py/data_batch_3"):
        _load_cifar(tmp_path)
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]


@pytest.mark.parametrize(
    ("name", "file", "labels", "message"),
    [
        ("cifar10", "data_batch_2", [3, 10, 2], r"label 10 at item 1 is outside 0\.\.9"),
        ("cifar10", "test_batch", [0, 1, 2, -1], r"label -1 at item 3 is outside 0\.\.9"),
        ("cifar100", "train", [5, 99, 100], r"label 100 at item 2 is outside 0\.\.99"),
    ],
    ids=["cifar10-train", "cifar10-negative", "cifar100"],
)
def test_cifar_labels_out_of_range_name_the_batch(
    tmp_path: Path, name: str, file: str, labels: list[int], message: str
) -> None:
    folder = write_cifar_batches(tmp_path, per_batch=3, num_test=4, cifar100=name == "cifar100")
    key = "fine_labels" if name == "cifar100" else "labels"
    write_cifar_batch(folder / file, labels, key)
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(folder / file))}: {message}"):
        _load_cifar(tmp_path, name)


def test_cifar_labels_that_are_not_integers_name_the_batch(tmp_path: Path) -> None:
    folder = write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    data = np.zeros((2, 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": ["cat", "dog"]}))
    expected = rf"^{re.escape(str(folder / 'test_batch'))}: 'labels' must be a list of integers"
    with pytest.raises(PlpDataError, match=expected):
        _load_cifar(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("99999999999999999999_c1s1_000451_03.jpg", "person id 99999999999999999999 is neither"),
        ("2147483648_c1s1_000451_03.jpg", "person id 2147483648 is neither"),
        ("-5_c1s1_000451_03.jpg", "person id -5 is neither -1"),
        ("0002_c99999999999s1_000451_03.jpg", "camera 99999999999 is outside"),
        ("\u0660\u0660\u0660\u0662_c1s1_000451_03.jpg", "not a Market-1501 image name"),
        ("abcd_c1s1_000451_03.jpg", "not a Market-1501 image name"),
    ],
    ids=["overflow", "past-int32", "negative", "camera", "arabic-digits", "letters"],
)
def test_market1501_bad_ids_are_refused(name: str, message: str) -> None:
    with pytest.raises(PlpDataError, match=rf"^dir/{re.escape(name)}: {message}"):
        parse_market1501_name(f"dir/{name}")


def test_market1501_id_range_edges_are_accepted() -> None:
    assert parse_market1501_name("2147483647_c1s1_000451_03.jpg") == (2**31 - 1, 1)
    assert parse_market1501_name("-1_c3s1_000451_03.jpg") == (-1, 3)
    assert parse_market1501_name("0000_c6s1_000451_03.jpg") == (0, 6)


def test_market1501_overflowing_id_is_one_line_naming_the_file(tmp_path: Path) -> None:
    write_market1501(tmp_path)
    bad = tmp_path / "bounding_box_train" / "99999999999999999999_c1s1_000451_03.jpg"
    shutil.copy(tmp_path / "bounding_box_train" / "0002_c1s1_000451_03.jpg", bad)
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(bad))}: person id"):
        build_datamodule("market1501", root=str(tmp_path))


DISK_ERRORS = [
    (errno.ENOSPC, "No space left on device", "disk full"),
    (errno.EROFS, "Read-only file system", "read-only file system"),
    (errno.EACCES, "Permission denied", "permission denied"),
]


@pytest.mark.parametrize(("code", "strerror", "words"), DISK_ERRORS, ids=["full", "ro", "acces"])
def test_disk_failure_while_unpacking_gz_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, strerror: str, words: str
) -> None:
    raw = _mnist(tmp_path)

    def fail(source: io.BufferedIOBase, target: io.BufferedIOBase) -> None:
        target.write(b"\x00\x00")  # a partial write, then the disk gives up
        raise OSError(code, strerror)

    monkeypatch.setattr(shutil, "copyfileobj", fail)
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(raw))}: {words} \({strerror}\)$"):
        _load_mnist(tmp_path)
    assert _partials(tmp_path) == []
    assert not (raw / IMAGES).exists()


@pytest.mark.parametrize(("code", "strerror", "words"), DISK_ERRORS, ids=["full", "ro", "acces"])
def test_disk_failure_while_extracting_archive_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, strerror: str, words: str
) -> None:
    write_cifar_archive(tmp_path, per_batch=3, num_test=4)

    def fail(self: tarfile.TarFile, path: str, **kwargs: object) -> None:
        (Path(path) / "cifar-10-batches-py").mkdir()  # half-extracted, then the disk gives up
        raise OSError(code, strerror, str(Path(path) / "cifar-10-batches-py" / "data_batch_1"))

    monkeypatch.setattr(tarfile.TarFile, "extractall", fail)
    with pytest.raises(PlpDataError, match=rf"^{re.escape(str(tmp_path))}: {words}"):
        _load_cifar(tmp_path)
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]
