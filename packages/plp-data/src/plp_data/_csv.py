"""The ``csv`` datamodule: a dataset of your own as one open-metric-learning CSV."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from plp_data._base import Splits
from plp_data._benchmarks import METRIC_LEARNING_DEFAULTS
from plp_data._csv_table import DatasetCsv, check_boxes, read_dataset_csv
from plp_data._datasets import FileImageDataset, ImageReadError
from plp_data._image import ImageDataModule
from plp_data._registry import DATAMODULES

__all__ = ["CsvDataModule"]


@DATAMODULES.register("csv")
class CsvDataModule(ImageDataModule):
    """A dataset described by one CSV in open-metric-learning's format, plus cameras.

    Columns (see :mod:`plp_data._csv_table`): ``label`` (int or string), ``path`` (relative to
    ``root``), ``split`` (``train`` | ``validation``), ``is_query``, ``is_gallery``; optional
    ``category``, ``sequence``, ``x_1, x_2, y_1, y_2`` (a crop taken before the transforms) and
    ``camera``. Train rows are trainval; the validation rows with ``is_query`` are the ``test``
    split and ``query``, those with ``is_gallery`` the ``gallery`` split. Evaluate with
    ``[evaluate] protocol = "query_gallery"``: a query's ranking leaves out the gallery items of
    its own sequence, and those of its label and camera; a row that is both a query and a gallery
    item is not matched with itself.

    Labels: the train classes are ``0 .. num_classes - 1`` in sorted order of their ``label``
    (integers by value, strings alphabetically), the classes seen only in validation follow;
    ``class_names`` are the labels as written. Validation during training holds out whole train
    classes (``val_fraction`` of them, or ``val_classes``). Defaults: ImageNet statistics,
    224x224, flip and a 16-pixel pad-and-crop (override with ``image_size``, ``mean``, ``std``,
    ``augment``).

    Args:
        path: The CSV file.
        root: The folder image paths are relative to (default: the CSV's folder).
        **kwargs: Passed to :class:`~plp_data.ImageDataModule`.
    """

    transform_defaults = METRIC_LEARNING_DEFAULTS
    class_disjoint_validation = True  # validation rows are usually unseen classes: validate so

    def __init__(
        self, path: str = "data/dataset.csv", root: str | None = None, **kwargs: Any
    ) -> None:
        # Read and checked once, here (boxes against their images' sizes too): the class count
        # sizes the model, and a bad CSV is refused before any run folder exists.
        table = read_dataset_csv(path, root)
        _check_box_sizes(table)
        super().__init__(root=str(table.root), **kwargs)
        self.csv_path = Path(path)
        self.table = table
        order = _class_order(table)
        index = {class_id: label for label, class_id in enumerate(order)}
        self.labels = np.array([index[c] for c in table.class_ids], dtype=np.int64)
        self._class_names = [str(c) for c in order]
        self.num_classes = len(np.unique(self.labels[table.splits == "train"]))

    @property
    def class_names(self) -> list[str]:
        """The labels as the CSV writes them (train classes first), indexed by label."""
        return list(self._class_names)

    def split_categories(self, split: str) -> list[str] | None:
        """Return the ``category`` of each item of evaluation ``split`` (None: no column)."""
        self._split_dataset(split)
        if self.table.categories is None:
            return None
        return [self.table.categories[i] for i in self.rows[split]]

    @property
    def rows(self) -> dict[str, np.ndarray]:
        """The CSV rows (indices into :attr:`table`) of each split, in item order."""
        table = self.table
        query = np.flatnonzero(table.is_query)
        return {
            "trainval": np.flatnonzero(table.splits == "train"),
            "test": query,
            "query": query,
            "gallery": np.flatnonzero(table.is_gallery),
        }

    def load_splits(self) -> Splits:
        """Return trainval (train rows), test = query (validation queries) and gallery."""
        table = self.table
        rows = self.rows
        groups = table.groups()
        files: dict[str, Sequence[Path]] = {
            name: [table.paths[i] for i in indices] for name, indices in rows.items()
        }
        files["query"] = files["test"]  # one list: one decoded cache for test and query
        labels = {name: self.labels[indices] for name, indices in rows.items()}
        cameras = None if table.cameras is None else {n: table.cameras[i] for n, i in rows.items()}
        boxes = None if table.boxes is None else {n: table.boxes[i] for n, i in rows.items()}
        if boxes is not None:
            boxes["query"] = boxes["test"]

        def dataset(name: str, train: bool = False) -> FileImageDataset:
            return FileImageDataset(
                files[name],
                labels[name],
                None if cameras is None else cameras[name],
                self.train_transform if train else self.eval_transform,
                None if boxes is None else boxes[name],
            )

        query = dataset("test")
        return Splits(
            train=dataset("trainval", train=True),
            trainval=dataset("trainval"),
            test=query,
            trainval_labels=labels["trainval"],
            trainval_cameras=None if cameras is None else cameras["trainval"],
            extra={"query": query, "gallery": dataset("gallery")},
            device=self.file_device_plan(files, labels, cameras, boxes),
            groups={name: groups[indices] for name, indices in rows.items()},
        )


def _class_order(table: DatasetCsv) -> list[Any]:
    """The train classes sorted, then the classes seen only in validation, sorted."""
    ids: list[Any] = list(table.class_ids)
    train = sorted({c for c, s in zip(ids, table.splits, strict=True) if s == "train"})
    others = sorted(set(ids) - set(train))
    return [*train, *others]


def _check_box_sizes(table: DatasetCsv) -> None:
    """Check the boxes against the sizes of their images (read from the file headers)."""
    if table.boxes is None:
        return
    from PIL import Image

    def size(index: int) -> tuple[int, int]:
        try:
            with Image.open(table.paths[index]) as image:  # the header only
                return image.size
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise ImageReadError(
                f"{table.paths[index]}: not a readable image ({type(error).__name__})"
            ) from None

    indices = np.flatnonzero(table.boxes[:, 0] >= 0).tolist()
    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(size, indices))
    check_boxes(table, indices, sizes)
