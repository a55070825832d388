"""The ``csv`` datamodule on open-metric-learning CSVs written by the tests, and every bad CSV."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional

from plp_data import CsvDataModule, DataNotFoundError, PlpDataError, build_datamodule
from plp_data.testing import write_csv_dataset


def _build(csv_path: Path, **kwargs: object) -> CsvDataModule:
    args: dict[str, object] = {"image_size": [16, 16], "batch_size": 4, "val_fraction": 0.0}
    args.update(kwargs)
    dm = build_datamodule("csv", path=str(csv_path), **args)
    assert isinstance(dm, CsvDataModule)
    return dm


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _items(dm: CsvDataModule, split: str) -> list[torch.Tensor]:
    parts: list[list[torch.Tensor]] = []
    for batch in dm.split_dataloader(split):
        parts.append(list(batch))
    return [torch.cat(column) for column in zip(*parts, strict=True)]


def test_the_required_columns_alone(tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path, train_classes=(7, 2, 5), validation_classes=(11, 9))
    dm = _build(path, pipeline="workers")
    rows = _rows(path)
    assert dm.num_classes == 3
    # Train classes in sorted order of their integer labels, then the validation classes.
    assert dm.class_names == ["2", "5", "7", "9", "11"]
    label_of = {name: index for index, name in enumerate(dm.class_names)}
    for split, wanted in (
        ("trainval", [r for r in rows if r["split"] == "train"]),
        ("test", [r for r in rows if r["is_query"] == "True"]),
        ("query", [r for r in rows if r["is_query"] == "True"]),
        ("gallery", [r for r in rows if r["is_gallery"] == "True"]),
    ):
        assert dm.split_paths(split) == [r["path"] for r in wanted]
        images, labels = _items(dm, split)  # no cameras: (image, label) items
        assert labels.tolist() == [label_of[r["label"]] for r in wanted]
        assert images.shape == (len(wanted), 3, 16, 16)
        assert dm.split_groups(split) is not None
    assert dm.split_categories("test") is None
    # Without sequences every row is its own group: no gallery item shares a query's group.
    assert not set(dm.split_groups("query").tolist()) & set(dm.split_groups("gallery").tolist())


def test_optional_columns_cameras_sequences_categories_boxes(tmp_path: Path) -> None:
    path = write_csv_dataset(
        tmp_path,
        train_classes=("cat", "dog"),
        validation_classes=("fox", "owl"),
        cameras=True,
        sequences=True,
        boxes=True,
        categories=True,
        query_in_gallery=True,
    )
    rows = _rows(path)
    dm = _build(path, pipeline="workers")
    assert dm.class_names == ["cat", "dog", "fox", "owl"]
    query = [r for r in rows if r["is_query"] == "True"]
    gallery = [r for r in rows if r["is_gallery"] == "True"]
    images, labels, cameras = _items(dm, "gallery")
    assert labels.tolist() == [dm.class_names.index(r["label"]) for r in gallery]
    assert cameras.tolist() == [int(r["camera"]) for r in gallery]
    assert dm.split_categories("test") == [r["category"] for r in query]
    # Groups follow the sequences; the query row is also a gallery row: the same group.
    sequence_ids = sorted({r["sequence"] for r in rows})
    assert dm.split_groups("gallery").tolist() == [
        sequence_ids.index(r["sequence"]) for r in gallery
    ]
    assert dm.split_groups("query").tolist() == [sequence_ids.index(r["sequence"]) for r in query]
    # Each image is cropped to its box, then resized and normalised.
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for image, row in zip(images, gallery, strict=True):
        picture = Image.open(tmp_path / row["path"]).convert("RGB")
        if row["x_1"]:
            box = [int(row[k]) for k in ("x_1", "y_1", "x_2", "y_2")]
            picture = picture.crop(box)
        expected = (functional.to_tensor(functional.resize(picture, [16, 16])) - mean) / std
        torch.testing.assert_close(image, expected)


def test_device_path_and_cache_equal_the_workers_path(tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path, cameras=True, sequences=True, boxes=True)
    workers = _build(path, pipeline="workers")
    device = _build(path, pipeline="device", cache_dir=str(tmp_path / "cache"))
    assert device.data_pipeline == "device"
    for split in ("trainval", "test", "query", "gallery"):
        for ours, theirs in zip(_items(device, split), _items(workers, split), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    cached = sorted((tmp_path / "cache").glob("images-*.npy"))
    assert len(cached) == 3  # trainval, query (shared by test), gallery
    # Boxes are part of the cache key: the same files without boxes get another cache.
    text = path.read_text().replace(",x_1,x_2,y_1,y_2", ",a,b,c,d")
    plain = tmp_path / "plain.csv"
    plain.write_text(text)
    _items(_build(plain, pipeline="device", cache_dir=str(tmp_path / "cache")), "gallery")
    assert len(sorted((tmp_path / "cache").glob("images-*.npy"))) == 6  # three new keys


def test_training_batches_come_from_train_rows(tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path, train_classes=(0, 1), validation_classes=(2,))
    dm = _build(path, pipeline="workers")
    labels = torch.cat([batch[1] for batch in dm.train_dataloader()])
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]


def _write(path: Path, rows: list[dict[str, str]], names: list[str] | None = None) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=names or list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _edit(row: int, column: str, value: str) -> Callable[[Path], None]:
    """Set ``column`` of data row ``row`` (0-based) to ``value``."""

    def edit(path: Path) -> None:
        rows = _rows(path)
        rows[row][column] = value
        _write(path, rows)

    return edit


def _drop_column(column: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        rows = _rows(path)
        _write(path, rows, [name for name in rows[0] if name != column])

    return edit


def _remove_image(row: int) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        (path.parent / _rows(path)[row]["path"]).unlink()

    return edit


def _only(split: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        _write(path, [r for r in _rows(path) if r["split"] == split])

    return edit


# Rows 0-11 are train rows (3 classes x 4), 12 and 16 the queries, the rest gallery rows;
# data row r is CSV row r + 2 (the header is row 1).
BAD = {
    "missing column": (_drop_column("is_gallery"), r"row 1: missing column 'is_gallery'"),
    "missing box column": (_drop_column("y_2"), r"row 1: missing column 'y_2'.*x_1, x_2, y_1"),
    "unknown split": (_edit(3, "split", "test"), r"row 5, column split: unknown split 'test'"),
    "bad bool": (_edit(13, "is_query", "maybe"), r"row 15, column is_query: 'maybe' is not a"),
    "empty bool": (_edit(13, "is_gallery", ""), r"row 15, column is_gallery: empty"),
    "neither query nor gallery": (
        _edit(13, "is_gallery", "False"),
        r"row 15, column is_gallery: .*neither a query nor a gallery item",
    ),
    "train row as a query": (_edit(2, "is_query", "True"), r"row 4, column is_query: a train row"),
    "missing file": (_remove_image(5), r"row 7, column path: image .*1/1\.jpg does not exist"),
    "duplicate path": (
        _edit(6, "path", "images/1/0.jpg"),
        r"row 8, column path: 'images/1/0\.jpg' already listed at row 6",
    ),
    "empty label": (_edit(0, "label", ""), r"row 2, column label: empty label"),
    "box partly given": (_edit(1, "y_1", ""), r"row 3, column y_1: empty, but the row has"),
    "box not a number": (_edit(1, "x_1", "left"), r"row 3, column x_1: 'left' is not an integer"),
    "box upside down": (
        _edit(2, "x_2", "0"),
        r"row 4, column x_2: 0 must be larger than x_1 \(1\)",
    ),
    "box outside the image": (
        _edit(3, "y_2", "33"),
        r"row 5, column y_2: 33 is outside the image 3\.jpg \(height 32\)",
    ),
    "sequence with two labels": (
        _edit(4, "sequence", "0-0"),
        r"row 6, column sequence: sequence '0-0' has label 1 here and 0 at row 2",
    ),
    "sequence on two cameras": (
        _edit(2, "sequence", "0-0"),
        r"row 4, column sequence: sequence '0-0' has camera 2 here and 1 at row 2",
    ),
    "empty camera": (_edit(7, "camera", ""), r"row 9, column camera: empty"),
    "no train rows": (_only("validation"), r"dataset\.csv: no train rows"),
    "no validation rows": (_only("train"), r"dataset\.csv: no validation queries"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_csv_is_one_line_naming_file_row_and_column(case: str, tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path, cameras=True, sequences=True, boxes=True)
    edit, expected = BAD[case]
    edit(path)
    with pytest.raises(PlpDataError) as caught:
        _build(path, pipeline="workers")  # boxes too are checked before anything loads
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(expected, message), message
    assert str(path) in message or str(path.parent) in message


def test_a_missing_csv_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nope\.csv not found.*label, path, split"):
        _build(tmp_path / "nope.csv")


def test_root_defaults_to_the_folder_of_the_csv(tmp_path: Path) -> None:
    path = write_csv_dataset(tmp_path / "data")
    moved = tmp_path / "lists" / "mine.csv"
    moved.parent.mkdir()
    moved.write_text(path.read_text())
    with pytest.raises(DataNotFoundError, match=r"lists/mine\.csv row 2, column path"):
        _build(moved)
    dm = _build(moved, root=str(tmp_path / "data"))
    assert dm.split_paths("test") == ["images/3/0.jpg", "images/4/0.jpg"]
    assert np.array_equal(dm.splits.trainval_labels, np.repeat([0, 1, 2], 4))
