"""Annotation and batch files holding values their format does not allow: one line each.

Each case writes a dataset in its real format, plants one bad value and checks that loading it
is a one-line PlpDataError naming the file, the row (line, annotation or entry) and the value,
instead of a third-party traceback, a silent cast, or a file read from outside the dataset.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plp_data import PlpDataError, build_datamodule
from plp_data.testing import (
    write_cars196,
    write_cifar_batches,
    write_cub200,
    write_inshop,
    write_sop,
)


def _one_line(error: pytest.ExceptionInfo[PlpDataError], pattern: str) -> None:
    message = str(error.value)
    assert "\n" not in message and re.search(pattern, message), message


def _cars_with(tmp_path: Path, record: int, field: str, value: Any) -> Path:
    from scipy.io import loadmat, savemat

    write_cars196(tmp_path, classes=(1, 99), per_class=1)
    mat = tmp_path / "cars_annos.mat"
    loaded = loadmat(mat)
    loaded["annotations"][0, record][field] = value
    savemat(mat, {"annotations": loaded["annotations"], "class_names": loaded["class_names"]})
    return mat


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("class", np.array([[np.inf]]), r"holds inf, not a whole number"),
        ("class", np.array([[-np.inf]]), r"holds -inf, not a whole number"),
        ("class", np.array([[np.nan]]), r"holds nan, not a whole number"),
        ("class", np.array([[2.5]]), r"holds 2\.5, not a whole number"),
        ("class", np.zeros((0, 0)), r"holds 0 values"),
        ("class", "7", r"holds '7', not a number"),
        ("class", np.array([[1e300]]), r"class 1e\+300 is not an integer|not an integer in"),
        ("relative_im_path", "", r"holds 0 values|not a text"),
        ("relative_im_path", "   ", r"holds '   ', not a text"),
        ("relative_im_path", np.array([[3.0]]), r"holds 3\.0, not a text"),
    ],
    ids=[
        "inf",
        "-inf",
        "nan",
        "fraction",
        "empty",
        "text-class",
        "huge",
        "no-path",
        "blank",
        "number-path",
    ],
)
def test_cars196_annotation_values_are_named(tmp_path: Path, field, value, pattern) -> None:
    mat = _cars_with(tmp_path, 1, field, value)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cars196", root=str(tmp_path))
    _one_line(caught, rf"^{re.escape(str(mat))} annotation 2: expected .*{pattern}")


def test_cars196_integral_float_classes_are_read(tmp_path: Path) -> None:
    _cars_with(tmp_path, 1, "class", np.array([[99.0]]))
    assert build_datamodule("cars196", root=str(tmp_path)).num_classes == 1


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("/etc/passwd", r"path '/etc/passwd' must be a file path relative to the dataset folder"),
        ("car_ims/../../x.jpg", r"path 'car_ims/\.\./\.\./x\.jpg' must be a file path relative"),
    ],
)
def test_cars196_paths_outside_the_dataset_are_refused(tmp_path: Path, value, pattern) -> None:
    mat = _cars_with(tmp_path, 0, "relative_im_path", value)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cars196", root=str(tmp_path))
    _one_line(caught, rf"^{re.escape(str(mat))} annotation 1: {pattern}")


def test_cars196_empty_class_name_is_named(tmp_path: Path) -> None:
    from scipy.io import loadmat, savemat

    write_cars196(tmp_path, classes=(1, 99), per_class=1)
    mat = tmp_path / "cars_annos.mat"
    loaded = loadmat(mat)
    loaded["class_names"][0, 4] = np.array([], dtype="<U1")
    savemat(mat, {"annotations": loaded["annotations"], "class_names": loaded["class_names"]})
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cars196", root=str(tmp_path))
    _one_line(caught, rf"^{re.escape(str(mat))}: class_names entry 5: expected a class name")


def _replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


TEXT_PATHS: list[tuple[str, Callable[[Path], Path], str, str, str]] = [
    # dataset, writer, file, the path to replace (first occurrence), the column's name
    ("cub200", write_cub200, "images.txt", "001.Bird_1/", "image_name"),
    ("sop", write_sop, "Ebay_train.txt", "bicycle_final/", "path"),
    ("inshop", write_inshop, "list_eval_partition.txt", "img/WOMEN/", "image_name"),
]


@pytest.mark.parametrize("bad", ["/abs/", "../up/"], ids=["absolute", "parent"])
@pytest.mark.parametrize(("name", "write", "file", "old", "column"), TEXT_PATHS)
def test_text_lists_with_paths_outside_the_dataset_are_refused(
    tmp_path: Path, name, write, file, old, column, bad
) -> None:
    write(tmp_path)
    _replace_in(tmp_path / file, old, bad)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule(name, root=str(tmp_path))
    _one_line(
        caught,
        rf"^{re.escape(str(tmp_path / file))} line \d+: {column} '{re.escape(bad)}.*' must be "
        "a file path relative to the dataset folder",
    )


def _cifar_with(tmp_path: Path, entry: object) -> Path:
    folder = write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    return folder / "test_batch"


PIXELS = np.zeros((2, 3072), dtype=np.uint8)


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        (
            {"data": PIXELS.astype(np.float32) + 0.5, "labels": [0, 1]},
            r"'data' must be a list "
            r"of integers, found float32 values",
        ),
        (
            {"data": PIXELS.astype(np.int64) + 300, "labels": [0, 1]},
            r"'data' holds values "
            r"outside 0\.\.255",
        ),
        ({"data": PIXELS.astype(np.int16) - 1, "labels": [0, 1]}, r"'data' holds values outside"),
        (
            {"data": PIXELS, "labels": [0.0, 1.7]},
            r"'labels' must be a list of integers, found "
            r"float64",
        ),
        ({"data": PIXELS, "labels": [0, math.nan]}, r"'labels' must be a list of integers"),
        (
            {"data": PIXELS, "labels": [0, 2**70]},
            r"'labels' must be a list of integers, found "
            r"object",
        ),
    ],
    ids=[
        "float-pixels",
        "pixels-300",
        "negative-pixels",
        "float-labels",
        "nan-label",
        "huge-label",
    ],
)
def test_cifar_batch_values_are_checked_not_cast(tmp_path: Path, entry, pattern) -> None:
    path = _cifar_with(tmp_path, entry)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cifar10", root=str(tmp_path), val_fraction=0.0).setup()
    _one_line(caught, rf"^{re.escape(str(path))}: {pattern}")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02}q\x00X\x04\x00\x00\x00dataq\x01h\x05s.",  # a memo key that was never stored
        b"\x80\x02K\x01K\x02\x86R.",  # REDUCE on a tuple: not callable
        b"\x80\x02",  # no STOP
    ],
    ids=["bad-memo", "bad-reduce", "no-stop"],
)
def test_junk_cifar_pickles_are_one_line(tmp_path: Path, payload: bytes) -> None:
    folder = write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cifar10", root=str(tmp_path), val_fraction=0.0).setup()
    _one_line(caught, rf"^{re.escape(str(folder / 'test_batch'))}: not a CIFAR python batch")


@pytest.mark.parametrize(
    ("augment", "image_size", "pattern"),
    [
        (
            [{"name": "RandomCrop", "args": {"size": 64}}],
            None,
            r"^augment\[0\]: RandomCrop of 64x64 is larger than the 32x32 images it gets; give",
        ),
        (
            [{"name": "RandomCrop", "args": {"size": [20, 40], "padding": 2}}],
            [16, 16],
            r"^augment\[0\]: RandomCrop of 20x40 is larger than the 20x20 images it gets",
        ),
        (
            [
                {"name": "CenterCrop", "args": {"size": 24}},
                {"name": "RandomHorizontalFlip"},
                {"name": "RandomCrop", "args": {"size": 28}},
            ],
            None,
            r"^augment\[2\]: RandomCrop of 28x28 is larger than the 24x24 images",
        ),
    ],
    ids=["crop-beyond-image", "crop-beyond-padding", "crop-after-centre-crop"],
)
def test_a_crop_larger_than_the_image_is_refused_when_built(
    tmp_path: Path, augment, image_size, pattern
) -> None:
    write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("cifar10", root=str(tmp_path), augment=augment, image_size=image_size)
    _one_line(caught, pattern)


@pytest.mark.parametrize(
    "augment",
    [
        [{"name": "RandomCrop", "args": {"size": 32}}],
        [{"name": "RandomCrop", "args": {"size": 40, "padding": 4}}],
        [{"name": "RandomCrop", "args": {"size": 64, "pad_if_needed": True}}],
        [
            {"name": "Pad", "args": {"padding": [2, 3]}},
            {"name": "RandomCrop", "args": {"size": [38, 36]}},
        ],
        [
            {"name": "RandomRotation", "args": {"degrees": 5}},
            {"name": "RandomCrop", "args": {"size": 64}},
        ],
    ],
    ids=["same-size", "padded", "pad-if-needed", "after-pad", "after-an-unknown-size"],
)
def test_crops_that_fit_are_served(tmp_path: Path, augment) -> None:
    write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    dm = build_datamodule("cifar10", root=str(tmp_path), augment=augment, val_fraction=0.0)
    if augment[-1]["args"].get("size") == 64 and "pad_if_needed" not in augment[-1]["args"]:
        return  # after a step of unknown output size nothing is checked (and nothing is run)
    dm.setup()
    assert dm.splits.train[0][0].dim() == 3


@pytest.mark.parametrize(
    ("args", "pattern", "direct"),
    [
        (
            {"std": [math.nan, 0.2, 0.2]},
            r"std = \[nan, 0\.2, 0\.2\]: must be a number \(given NaN\)$",
            r"must have one finite value per channel, std > 0",
        ),
        (
            {"mean": [0.5, math.inf, 0.5]},
            r"mean = \[0\.5, inf, 0\.5\]: must be finite$",
            r"must have one finite value per channel",
        ),
        (
            {"image_size": [100_000, 32]},
            r"image_size must be \[height, width\], each in 1\.\.16384",
            r"image_size must be \[height, width\], each in 1\.\.16384",
        ),
    ],
    ids=["nan-std", "inf-mean", "huge-image"],
)
def test_transform_values_that_pass_types_and_break_later(
    tmp_path: Path, args, pattern, direct
) -> None:
    from plp_data import Cifar10DataModule

    write_cifar_batches(tmp_path, per_batch=3, num_test=2)
    with pytest.raises(PlpDataError) as caught:  # by name: the registry checks numbers first
        build_datamodule("cifar10", root=str(tmp_path), **args)
    _one_line(caught, pattern)
    with pytest.raises(PlpDataError) as caught:  # the class itself, from Python
        Cifar10DataModule(root=str(tmp_path), **args)
    _one_line(caught, direct)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            {"val_fraction": 0.9995},
            r"^DigitsDataModule: val_fraction = 0\.9995 of 1347 images holds out 1347 and keeps 0: "
            r"both parts need an image; change val_fraction$",
        ),
        (
            {"test_fraction": 0.9999},
            r"^DigitsDataModule: test_fraction = 0\.9999 of 1797 images holds out 1797 and keeps 0",
        ),
    ],
    ids=["val", "test"],
)
def test_a_fraction_that_leaves_nothing_on_one_side_is_one_line(args, pattern) -> None:
    with pytest.raises(PlpDataError) as caught:
        build_datamodule("digits", **args).setup()
    _one_line(caught, pattern)
