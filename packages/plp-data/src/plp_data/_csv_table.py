"""open-metric-learning's dataset CSV, read and checked row by row.

The format (OML's, plus an optional ``camera`` column of plp's own) has one row per image:

- ``label``: the class, an integer or a string (a class name);
- ``path``: the image file, relative to the data root (or absolute);
- ``split``: ``train`` or ``validation``;
- ``is_query``, ``is_gallery``: booleans (``True``/``False``, ``true``/``false``, ``1``/``0``)
  for validation rows, at least one of them true; empty (or false) for train rows;
- optional ``category`` (a super class, any string), ``sequence`` (an id shared by the images of
  one track / video: the evaluation leaves a query's own sequence out of its ranking), the
  bounding box ``x_1, x_2, y_1, y_2`` in pixels (the crop ``[x_1, x_2) x [y_1, y_2)`` of the image,
  taken before the transforms; all four columns or none, and per row all four values or none),
  and ``camera`` (an integer or a string).

Other columns are ignored, as OML does. Every malformed row is one line naming the file, the row
(the CSV line number; the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plp_data._errors import DataNotFoundError, PlpDataError

__all__ = [
    "BOX_COLUMNS",
    "OPTIONAL_COLUMNS",
    "NO_BOX",
    "REQUIRED_COLUMNS",
    "DatasetCsv",
    "check_boxes",
    "read_dataset_csv",
]

REQUIRED_COLUMNS = ("label", "path", "split", "is_query", "is_gallery")
BOX_COLUMNS = ("x_1", "x_2", "y_1", "y_2")
OPTIONAL_COLUMNS = ("category", "sequence", *BOX_COLUMNS, "camera")
SPLITS = ("train", "validation")
NO_BOX = -1  # a row of ``boxes`` holding -1: the whole image
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}
_INTEGER = re.compile(r"^-?[0-9]+$")
Where = Callable[[int, str], str]  # (row index, column) -> "<file> row <n>, column <name>"


@dataclass(frozen=True)
class DatasetCsv:
    """The rows of a dataset CSV, checked, as arrays in file order.

    Attributes:
        source: The CSV file.
        root: The folder ``path`` values are relative to.
        rows: The CSV line number of each row (the header is 1), for messages.
        paths: Each row's image file (``root / path``).
        relative_paths: ``path`` as written in the CSV.
        class_ids: Each row's ``label`` (int for integer labels, else the string).
        splits: ``"train"`` or ``"validation"``.
        is_query: Validation rows that are queries.
        is_gallery: Validation rows that are gallery items.
        categories: ``category`` values (None: no such column; "" where empty).
        sequences: ``sequence`` values (None: no such column; "" where empty).
        boxes: ``(N, 4)`` int64 ``x_1, y_1, x_2, y_2`` (``NO_BOX`` rows: the whole image), or
            None without box columns.
        cameras: ``camera`` values as int64 (strings numbered in sorted order), or None.
    """

    source: Path
    root: Path
    rows: np.ndarray
    paths: list[Path]
    relative_paths: list[str]
    class_ids: list[int] | list[str]
    splits: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    categories: list[str] | None
    sequences: list[str] | None
    boxes: np.ndarray | None
    cameras: np.ndarray | None

    def where(self, row: int, column: str) -> str:
        """Return ``"<file> row <n>, column <name>"`` of the ``row``-th data row."""
        return f"{self.source} row {int(self.rows[row])}, column {column}"

    def groups(self) -> np.ndarray:
        """Return each row's group: its sequence id, or its own id where it has no sequence.

        Gallery items of a query's group are left out of its ranking; a row that is both a
        query and a gallery item is its own group's member, so it never matches itself.
        Sequences are numbered ``0 .. S - 1`` in sorted order; rows without one follow.
        """
        count = len(self.paths)
        names = self.sequences if self.sequences is not None else [""] * count
        known = sorted({name for name in names if name})
        number = {name: index for index, name in enumerate(known)}
        own = len(known) + np.arange(count)
        return np.array(
            [number[name] if name else own[i] for i, name in enumerate(names)], dtype=np.int64
        )


def read_dataset_csv(path: str | Path, root: str | Path | None = None) -> DatasetCsv:
    """Return the checked rows of the dataset CSV ``path`` (image files relative to ``root``).

    ``root`` defaults to the CSV's folder. Image files must exist; their contents (and the
    boxes against the image sizes) are checked by :func:`check_boxes` when the images load.

    Raises:
        DataNotFoundError: The CSV or an image file does not exist.
        PlpDataError: A missing column, an unknown split, a value that is not a boolean /
            integer, a row neither query nor gallery, a duplicate path, a box with
            ``x_1 >= x_2``, a sequence with two labels or cameras, no train or no validation
            rows: one line naming the file, the row and the column.
    """
    source = Path(path)
    folder = source.parent if root is None else Path(root)
    header, records = _records(source)
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    boxes_given = [name for name in BOX_COLUMNS if name in header]
    if boxes_given:
        missing += [name for name in BOX_COLUMNS if name not in header]
    if missing:
        raise PlpDataError(
            f"{source} row 1: missing column {missing[0]!r} (the header has "
            f"{', '.join(header)}; required: {', '.join(REQUIRED_COLUMNS)}"
            f"{'; the box needs x_1, x_2, y_1, y_2' if boxes_given else ''})"
        )
    column = {name: header.index(name) for name in header}
    rows = np.array([number for number, _ in records], dtype=np.int64)
    values = {
        name: [fields[column[name]] if column[name] < len(fields) else "" for _, fields in records]
        for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
        if name in column
    }

    def where(index: int, name: str) -> str:
        return f"{source} row {int(rows[index])}, column {name}"

    splits = np.array([_split(value, where(i, "split")) for i, value in enumerate(values["split"])])
    is_query, is_gallery = _roles(values, splits, where)
    class_ids = _labels(values["label"], where)
    paths, relative = _paths(values["path"], folder, where, rows)
    table = DatasetCsv(
        source=source,
        root=folder,
        rows=rows,
        paths=paths,
        relative_paths=relative,
        class_ids=class_ids,
        splits=splits,
        is_query=is_query,
        is_gallery=is_gallery,
        categories=values.get("category"),
        sequences=values.get("sequence"),
        boxes=_boxes(values, where) if boxes_given else None,
        cameras=_cameras(values["camera"], where) if "camera" in values else None,
    )
    _check_sequences(table)
    _check_splits(table)
    return table


def _records(source: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Return the header and the ``(line number, fields)`` of the non-blank rows."""
    if not source.is_file():
        raise DataNotFoundError(
            f"dataset CSV {source} not found: data.args.path must name a CSV with the columns "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    try:
        with source.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header: list[str] | None = None
            records: list[tuple[int, list[str]]] = []
            line = 1
            for fields in reader:
                if header is None:
                    header = [name.strip() for name in fields]
                elif any(field.strip() for field in fields):
                    records.append((line, [field.strip() for field in fields]))
                line = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PlpDataError(f"{source}: not a readable CSV file ({error})") from None
    if header is None:
        raise PlpDataError(
            f"{source} row 1: empty file; expected a header with {', '.join(REQUIRED_COLUMNS)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicated:
        raise PlpDataError(f"{source} row 1: column {duplicated[0]!r} appears twice")
    if not records:
        raise PlpDataError(f"{source}: no rows after the header")
    return header, records


def _split(value: str, where: str) -> str:
    if value not in SPLITS:
        raise PlpDataError(f"{where}: unknown split {value!r}; expected train or validation")
    return value


def _flag(value: str, where: str) -> bool | None:
    """Return the boolean ``value`` (None when empty), or raise naming it."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if not value:
        return None
    raise PlpDataError(f"{where}: {value!r} is not a boolean; expected True/False (or 1/0)")


def _roles(
    values: dict[str, list[str]], splits: np.ndarray, where: Where
) -> tuple[np.ndarray, ...]:
    """Return ``is_query`` and ``is_gallery`` (False for train rows), checked."""
    at = where
    query = np.zeros(len(splits), dtype=bool)
    gallery = np.zeros(len(splits), dtype=bool)
    for i, split in enumerate(splits):
        flags = {name: _flag(values[name][i], at(i, name)) for name in ("is_query", "is_gallery")}
        if split == "train":
            true = [name for name, flag in flags.items() if flag]
            if true:
                raise PlpDataError(
                    f"{at(i, true[0])}: a train row is neither a query nor a gallery item; "
                    "leave it empty (or False)"
                )
            continue
        for name, flag in flags.items():
            if flag is None:
                raise PlpDataError(f"{at(i, name)}: empty; validation rows need True or False")
        if not (flags["is_query"] or flags["is_gallery"]):
            raise PlpDataError(
                f"{at(i, 'is_gallery')}: the validation row is neither a query nor a gallery "
                "item (is_query and is_gallery both False)"
            )
        query[i], gallery[i] = bool(flags["is_query"]), bool(flags["is_gallery"])
    return query, gallery


def _labels(labels: list[str], where: Where) -> list[int] | list[str]:
    """Return the labels as ints when every one is an integer written plainly, else strings."""
    for i, label in enumerate(labels):
        if not label:
            raise PlpDataError(f"{where(i, 'label')}: empty label")
    if all(_INTEGER.match(label) and str(int(label)) == label for label in labels):
        return [int(label) for label in labels]
    return list(labels)


def _paths(
    values: list[str], root: Path, where: Where, rows: np.ndarray
) -> tuple[list[Path], list[str]]:
    """Return the image files (checked to exist, none twice) and the paths as written."""
    files: list[Path] = []
    seen: dict[Path, int] = {}
    for i, value in enumerate(values):
        at = where(i, "path")
        if not value:
            raise PlpDataError(f"{at}: empty path")
        file = root / value
        key = Path(*(part for part in file.parts if part != "."))
        if key in seen:
            raise PlpDataError(f"{at}: {value!r} already listed at row {int(rows[seen[key]])}")
        seen[key] = i
        if not file.is_file():
            raise DataNotFoundError(
                f"{at}: image {file} does not exist (paths are relative to the data root {root})"
            )
        files.append(file)
    return files, list(values)


def _integer(value: str, where: str, low: int = 0) -> int:
    """Return ``value`` as an integer >= ``low`` (``12`` or ``12.0``), or raise naming it."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number == number and number.is_integer() and number >= low):
        raise PlpDataError(f"{where}: {value!r} is not an integer >= {low}")
    return int(number)


def _boxes(values: dict[str, list[str]], where: Where) -> np.ndarray:
    """Return ``(N, 4)`` boxes ``x_1, y_1, x_2, y_2`` (``NO_BOX`` rows: the whole image)."""
    count = len(values["x_1"])
    boxes = np.full((count, 4), NO_BOX, dtype=np.int64)
    for i in range(count):
        given = [name for name in BOX_COLUMNS if values[name][i]]
        if not given:
            continue
        if len(given) < 4:
            empty = next(name for name in BOX_COLUMNS if not values[name][i])
            raise PlpDataError(
                f"{where(i, empty)}: empty, but the row has {', '.join(given)}; a box needs all "
                "of x_1, x_2, y_1, y_2 (or none of them: the whole image)"
            )
        x1, x2, y1, y2 = (_integer(values[n][i], where(i, n)) for n in BOX_COLUMNS)
        for low, high, name in ((x1, x2, "x_2"), (y1, y2, "y_2")):
            if high <= low:
                other = "x_1" if name == "x_2" else "y_1"
                raise PlpDataError(f"{where(i, name)}: {high} must be larger than {other} ({low})")
        boxes[i] = (x1, y1, x2, y2)
    return boxes


def _cameras(values: list[str], where: Where) -> np.ndarray:
    """Return the cameras as int64: integers as written, strings numbered in sorted order."""
    for i, value in enumerate(values):
        if not value:
            raise PlpDataError(
                f"{where(i, 'camera')}: empty; with a camera column every row needs a camera"
            )
    if all(_INTEGER.match(value) for value in values):
        return np.array([int(value) for value in values], dtype=np.int64)
    number = {name: index for index, name in enumerate(sorted(set(values)))}
    return np.array([number[value] for value in values], dtype=np.int64)


def _check_sequences(table: DatasetCsv) -> None:
    """Raise unless each sequence holds one label (and one camera): one track of one object."""
    if table.sequences is None:
        return
    first: dict[str, int] = {}
    for i, name in enumerate(table.sequences):
        if not name:
            continue
        j = first.setdefault(name, i)
        cameras = None if table.cameras is None else table.cameras.tolist()
        for what, values in (("label", table.class_ids), ("camera", cameras)):
            if values is not None and values[i] != values[j]:
                raise PlpDataError(
                    f"{table.where(i, 'sequence')}: sequence {name!r} has {what} {values[i]!r} "
                    f"here and {values[j]!r} at row {int(table.rows[j])}; a sequence is one "
                    f"object's track and holds one {what}"
                )


def _check_splits(table: DatasetCsv) -> None:
    for what, present in (
        ("train rows", table.splits == "train"),
        ("validation queries (is_query True)", table.is_query),
        ("validation gallery items (is_gallery True)", table.is_gallery),
    ):
        if not present.any():
            raise PlpDataError(f"{table.source}: no {what}; a dataset CSV needs all three")


def check_boxes(
    table: DatasetCsv, indices: Iterable[int], sizes: Sequence[tuple[int, int]]
) -> None:
    """Raise unless the boxes of rows ``indices`` lie inside their images ``(width, height)``."""
    if table.boxes is None:
        return
    for i, (width, height) in zip(indices, sizes, strict=True):
        x1, _, x2, y2 = (int(v) for v in table.boxes[i])
        if x1 == NO_BOX:
            continue
        for name, value, limit, what in (
            ("x_2", x2, width, "width"),
            ("y_2", y2, height, "height"),
        ):
            if value > limit:
                raise PlpDataError(
                    f"{table.where(i, name)}: {value} is outside the image "
                    f"{table.paths[i].name} ({what} {limit})"
                )
