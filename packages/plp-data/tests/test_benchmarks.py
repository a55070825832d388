"""The metric-learning benchmarks, written tiny in their real formats and read by name."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from plp_data import DataNotFoundError, PlpDataError, build_datamodule
from plp_data.testing import write_cars196, write_cub200, write_inshop, write_sop


@dataclass
class Case:
    """A tiny dataset and what the datamodule must make of it, worked out by hand."""

    write: Callable[[Path], Path]
    trainval_classes: list[str]  # class ids in the order of their labels 0, 1, ...
    test_classes: list[str]  # labels len(trainval_classes), ...
    extra: dict[str, int]  # further splits and their sizes
    class_of_file: Callable[[Path], str]  # the class id, read back from a written file's path
    names: dict[str, str]  # the class name of some class ids


CASES = {
    # CUB: images/NNN.Bird_N/...; classes 1-100 trainval, 101-200 test.
    "cub200": Case(
        lambda root: write_cub200(root, classes=(2, 1, 101, 3, 150), per_class=3),
        ["1", "2", "3"],
        ["101", "150"],
        {},
        lambda path: str(int(path.parent.name.split(".")[0])),
        {"1": "001.Bird_1", "150": "150.Bird_150"},
    ),
    # Cars196: car_ims/NNNNNN.jpg numbered in class order; classes 1-98 trainval, 99-196 test.
    "cars196": Case(
        lambda root: write_cars196(root, classes=(1, 98, 99, 196), per_class=2),
        ["1", "98"],
        ["99", "196"],
        {},
        lambda path: {1: "1", 2: "1", 3: "98", 4: "98", 5: "99", 6: "99", 7: "196", 8: "196"}[
            int(path.stem)
        ],
        {"1": "Maker Model 1 2012", "196": "Maker Model 196 2012"},
    ),
    # SOP: <category>_final/<class>_<i>.JPG, the two files' classes.
    "sop": Case(
        lambda root: write_sop(root, train_classes=(3, 1, 2), test_classes=(20, 13), per_class=2),
        ["1", "2", "3"],
        ["13", "20"],
        {},
        lambda path: path.name.split("_")[0],
        {"13": "13"},
    ),
    # In-Shop: img/WOMEN/Dresses/id_XXXXXXXX/..; test = query (1 per item), gallery the rest.
    "inshop": Case(
        lambda root: write_inshop(root, train_items=(1, 3, 4), test_items=(2, 5), per_item=3),
        ["id_00000001", "id_00000003", "id_00000004"],
        ["id_00000002", "id_00000005"],
        {"query": 2, "gallery": 4},
        lambda path: path.parent.name,
        {"id_00000005": "id_00000005"},
    ),
}


def _labels_of(dataset: torch.utils.data.Dataset) -> np.ndarray:
    return np.asarray(dataset.labels)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmarks_read_their_real_formats(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    case.write(tmp_path)
    dm = build_datamodule(name, root=str(tmp_path), batch_size=2, val_fraction=0.0)
    assert dm.num_classes == len(case.trainval_classes)
    order = case.trainval_classes + case.test_classes
    assert dm.class_names is not None and len(dm.class_names) == len(order)
    for class_id, class_name in case.names.items():
        assert dm.class_names[order.index(class_id)] == class_name
    dm.setup()
    splits = {"trainval": dm.splits.trainval, "test": dm.splits.test, **dm.splits.extra}
    assert {k: len(v) for k, v in dm.splits.extra.items()} == case.extra
    for split, dataset in splits.items():
        # Every image's label is the rank of its class: trainval first, then test, by id.
        expected = [order.index(case.class_of_file(path)) for path in dataset.paths]
        assert _labels_of(dataset).tolist() == expected, split
    trainval = set(_labels_of(dm.splits.trainval))
    assert trainval == set(range(dm.num_classes))
    assert {order[label] for label in _labels_of(dm.splits.test)} == set(case.test_classes)
    for split, dataset in splits.items():
        if split != "trainval":
            assert trainval.isdisjoint(_labels_of(dataset)), split
    np.testing.assert_array_equal(dm.splits.trainval_labels, _labels_of(dm.splits.trainval))
    image, label = dm.splits.test[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert int(label) >= dm.num_classes
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 224, 224) and labels.max() < dm.num_classes


def test_inshop_query_and_gallery_paths(tmp_path: Path) -> None:
    write_inshop(tmp_path, train_items=(1,), test_items=(2, 3), per_item=3)
    dm = build_datamodule("inshop", root=str(tmp_path), val_fraction=0.0)
    dm.setup()
    query, gallery = dm.splits.extra["query"], dm.splits.extra["gallery"]
    assert dm.splits.test.paths == query.paths  # type: ignore[attr-defined]
    assert [p.name for p in query.paths] == ["01_1_front.jpg"] * 2  # type: ignore[attr-defined]
    assert [p.name for p in gallery.paths] == ["02_1_front.jpg", "03_1_front.jpg"] * 2  # type: ignore[attr-defined]
    np.testing.assert_array_equal(_labels_of(query), [1, 2])
    np.testing.assert_array_equal(_labels_of(gallery), [1, 1, 2, 2])


def test_cub_without_classes_txt_names_classes_by_id(tmp_path: Path) -> None:
    write_cub200(tmp_path, classes=(1, 101), per_class=2, with_class_names=False)
    dm = build_datamodule("cub200", root=str(tmp_path), val_fraction=0.0)
    assert dm.class_names == ["1", "101"]


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("cub200", "images.txt"),
        ("cars196", "cars_annos.mat"),
        ("sop", "Ebay_train.txt"),
        ("inshop", "list_eval_partition.txt"),
    ],
)
def test_missing_files_say_what_goes_where(name: str, file: str, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        build_datamodule(name, root=str(tmp_path))
    message = str(caught.value)
    assert f"file {tmp_path / file} not found: data.args.root must hold" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_missing_image_is_named_when_the_splits_load(name: str, tmp_path: Path) -> None:
    CASES[name].write(tmp_path)
    dm = build_datamodule(name, root=str(tmp_path))
    victim = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() == ".jpg")[-1]
    victim.unlink()
    with pytest.raises(DataNotFoundError, match=f"image {re.escape(str(victim))} .*does not exist"):
        dm.setup()


def _edit(path: Path, line: int, text: str | None) -> None:
    """Replace 1-based ``line`` of ``path`` by ``text`` (None: delete it)."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


# (dataset, file, line, new text or None to delete it, the message expected)
MALFORMED = [
    (
        "cub200",
        "images.txt",
        2,
        "2",
        r"images\.txt line 2: expected '<image_id> <image_name>', got '2'",
    ),
    (
        "cub200",
        "images.txt",
        2,
        "x 001.a/b.jpg",
        r"images\.txt line 2: image id 'x' is not an integer in >= 1",
    ),
    ("cub200", "images.txt", 3, "1 001.a/b.jpg", r"images\.txt line 3: image id 1 appears twice"),
    (
        "cub200",
        "image_class_labels.txt",
        4,
        "4 201",
        r"image_class_labels\.txt line 4: class id '201' is not an integer in 1\.\.200",
    ),
    (
        "cub200",
        "image_class_labels.txt",
        4,
        "99 1",
        r"image_class_labels\.txt line 4: image id 99 is not in images\.txt",
    ),
    (
        "cub200",
        "image_class_labels.txt",
        4,
        None,
        r"image_class_labels\.txt: no class for image id 4 of images\.txt",
    ),
    (
        "cub200",
        "classes.txt",
        1,
        "0 zero",
        r"classes\.txt line 1: class id '0' is not an integer in 1\.\.200",
    ),
    (
        "sop",
        "Ebay_train.txt",
        1,
        "image_id class_id path",
        r"Ebay_train\.txt line 1: expected the header 'image_id class_id super_class_id path'",
    ),
    (
        "sop",
        "Ebay_train.txt",
        3,
        "2 1 1",
        r"Ebay_train\.txt line 3: expected 'image_id class_id super_class_id path', got '2 1 1'",
    ),
    (
        "sop",
        "Ebay_test.txt",
        2,
        "7 1 1 bicycle_final/1_0.JPG",
        r"Ebay_test\.txt line 2: class_id 1 is also in Ebay_train\.txt",
    ),
    (
        "sop",
        "Ebay_test.txt",
        3,
        "99 x 1 bicycle_final/1_0.JPG",
        r"Ebay_test\.txt line 3: class_id 'x' is not an integer in >= 1",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        1,
        "99",
        r"list_eval_partition\.txt line 1: says 99 images, the file lists 15",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        1,
        "many",
        r"list_eval_partition\.txt line 1: number of images 'many' is not an integer",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        2,
        "image_name item_id",
        r"line 2: expected the header 'image_name item_id evaluation_status'",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        5,
        "img/a.jpg id_00000001 val",
        r"line 5: evaluation_status 'val' is not one of train, query, gallery",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        6,
        "img/a.jpg id_00000002 train",
        r"line 7: item id_00000002 is in train \(line 6\) and in query/gallery \(line 7\)",
    ),
    (
        "inshop",
        "list_eval_partition.txt",
        4,
        "img/WOMEN/Dresses/id_00000001/01_1_front.jpg id_00000001 train",
        r"line 4: image 'img/WOMEN/Dresses/id_00000001/01_1_front\.jpg' appears twice",
    ),
]


@pytest.mark.parametrize(("name", "file", "line", "text", "message"), MALFORMED)
def test_malformed_lines_name_file_line_and_expectation(
    name: str, file: str, line: int, text: str | None, message: str, tmp_path: Path
) -> None:
    CASES[name].write(tmp_path)
    _edit(tmp_path / file, line, text)
    with pytest.raises(PlpDataError) as caught:
        build_datamodule(name, root=str(tmp_path))
    assert re.search(message, str(caught.value)), str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / file))
    assert "\n" not in str(caught.value)


def test_cars_bad_mat_files(tmp_path: Path) -> None:
    from scipy.io import loadmat, savemat

    write_cars196(tmp_path, classes=(1, 99), per_class=1)
    mat = tmp_path / "cars_annos.mat"
    annotations = loadmat(mat)["annotations"]
    annotations[0, 1]["class"] = np.array([[197]], dtype=np.uint8)
    savemat(mat, {"annotations": annotations})
    with pytest.raises(
        PlpDataError, match=r"cars_annos\.mat annotation 2: class 197 is not an integer in 1\.\.196"
    ):
        build_datamodule("cars196", root=str(tmp_path))
    annotations[0, 1]["class"] = np.array([[1, 2]], dtype=np.uint8)
    savemat(mat, {"annotations": annotations})
    with pytest.raises(
        PlpDataError, match=r"annotation 2: expected a relative_im_path string and an integer class"
    ):
        build_datamodule("cars196", root=str(tmp_path))
    savemat(mat, {"boxes": np.zeros((2, 2))})
    with pytest.raises(
        PlpDataError, match=r"expected a struct array 'annotations' .* found variables \['boxes'\]"
    ):
        build_datamodule("cars196", root=str(tmp_path))
    mat.write_bytes(b"not a mat file")
    with pytest.raises(PlpDataError, match=r"cars_annos\.mat: not a MATLAB \.mat file"):
        build_datamodule("cars196", root=str(tmp_path))


def test_benchmark_arguments_are_checked_by_the_registry(tmp_path: Path) -> None:
    write_sop(tmp_path)
    with pytest.raises(PlpDataError, match="takes no argument 'roots'"):
        build_datamodule("sop", roots=str(tmp_path))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_device_path_serves_the_same_splits(name: str, tmp_path: Path) -> None:
    CASES[name].write(tmp_path / "data")
    common = {"root": str(tmp_path / "data"), "val_fraction": 0.0, "image_size": [32, 32]}
    workers = build_datamodule(name, pipeline="workers", **common)
    device = build_datamodule(name, pipeline="device", cache_dir=str(tmp_path / "cache"), **common)
    assert device.eval_splits == workers.eval_splits
    for split in workers.eval_splits:
        (expected_images, expected_labels), (images, labels) = (
            next(iter(dm.split_dataloader(split)))[:2] for dm in (workers, device)
        )
        torch.testing.assert_close(labels.cpu(), expected_labels)
        torch.testing.assert_close(images.cpu(), expected_images, atol=1e-5, rtol=0)
