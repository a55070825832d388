"""Bad-input cases of a user's own data (dataset CSVs, embed, index, search, export).

Loaded by ``tests/test_bad_input.py``, which runs them with the others; the README's errors
table lists them in this order after the others.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from plp_data.testing import write_csv_dataset, write_digits_images

Args = Callable[[Path, Path], list[str]]
Expected = Callable[[Path, Path], str]


def _csv(edit: Callable[[list[dict[str, str]], Path], None]) -> Args:
    """``train`` of configs/csv_example.toml on a tiny CSV (cameras, boxes) that ``edit`` spoils."""

    def args(tmp: Path, run: Path) -> list[str]:
        path = write_csv_dataset(tmp / "data", cameras=True, boxes=True)
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        names = list(rows[0])
        edit(rows, tmp / "data")
        names = [name for name in names if name in rows[0]]
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=names, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        config = ["--config", "configs/csv_example.toml", "--set", f"data.path={path}"]
        return ["train", *config, "--runs", str(tmp / "runs")]

    return args


def _drop(column: str) -> Callable[[list[dict[str, str]], Path], None]:
    def edit(rows: list[dict[str, str]], root: Path) -> None:
        for row in rows:
            del row[column]

    return edit


def _set(row: int, column: str, value: str) -> Callable[[list[dict[str, str]], Path], None]:
    def edit(rows: list[dict[str, str]], root: Path) -> None:
        rows[row][column] = value

    return edit


def _remove_image(rows: list[dict[str, str]], root: Path) -> None:
    (root / rows[5]["path"]).unlink()


def _digits(tmp: Path, unreadable: bool = False) -> Path:
    folder = tmp / "digits"
    write_digits_images(folder, range(0, 60, 3))
    if unreadable:
        (folder / "notes.png").write_text("not a picture")
    return folder


def _index_of_another_checkpoint(tmp: Path, run: Path) -> list[str]:
    import plp_pipelines

    copy = tmp / "copied_run"
    shutil.copytree(run, copy)
    plp_pipelines.index(copy, images=_digits(tmp), name="old")
    best = json.loads((copy / "run.json").read_text())["best_checkpoint"]
    checkpoint = copy / "checkpoints" / best
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for tensor in state["state_dict"].values():
        if tensor.is_floating_point():
            tensor.mul_(1.01)
    torch.save(state, checkpoint)  # retrained, say: the same name, other weights
    query = str(next((tmp / "digits").rglob("*.png")))
    return ["search", "--run", str(copy), "--index", "old", "--query", query]


def cases(case: Callable[..., Any]) -> list[Any]:
    """The cases, built with test_bad_input's ``Case``."""
    return [
        case(
            "an unknown export format",
            lambda t, r: ["export", "--run", str(r), "--format", "tflite"],
            lambda t, r: r"--format 'tflite' is not an export format; expected one of onnx",
        ),
        case(
            "a dataset CSV without a required column",
            _csv(_drop("is_gallery")),
            lambda t, r: r"dataset\.csv row 1: missing column 'is_gallery' \(the header has ",
        ),
        case(
            "a dataset CSV with an unknown split",
            _csv(_set(3, "split", "test")),
            lambda t, r: r"dataset\.csv row 5, column split: unknown split 'test'; expected train",
        ),
        case(
            "a dataset CSV with a bad boolean",
            _csv(_set(13, "is_query", "maybe")),
            lambda t, r: r"row 15, column is_query: 'maybe' is not a boolean; expected True/False",
        ),
        case(
            "a dataset CSV naming a missing image",
            _csv(_remove_image),
            lambda t, r: r"row 7, column path: image .*images/1/1\.jpg does not exist",
        ),
        case(
            "a dataset CSV listing an image twice",
            _csv(_set(6, "path", "images/1/0.jpg")),
            lambda t, r: r"row 8, column path: 'images/1/0\.jpg' already listed at row 6$",
        ),
        case(
            "a dataset CSV with a box outside its image",
            _csv(_set(3, "y_2", "33")),
            lambda t, r: r"row 5, column y_2: 33 is outside the image 3\.jpg \(height 32\)$",
        ),
        case(
            "`embed` of a folder without images",
            lambda t, r: ["embed", "--run", str(r), "--images", str(t)],
            lambda t, r: re.escape(f"--images {t}: no image files in it or below it"),
        ),
        case(
            "`embed --strict` with an unreadable image",
            lambda t, r: [
                *("embed", "--run", str(r), "--strict", "--images", str(_digits(t, True)))
            ],
            lambda t, r: r"--images: .*notes\.png: not a readable image",
        ),
        case(
            "`index --kind` not one of flat, ivf, hnsw",
            lambda t, r: [
                *("index", "--run", str(r), "--kind", "annoy", "--images", str(_digits(t)))
            ],
            lambda t, r: r"--kind 'annoy' is not an index kind; expected one of flat, ivf, hnsw",
        ),
        case(
            "`search` of an index that does not exist",
            lambda t, r: ["search", "--run", str(r), "--index", "nope", "--query", str(t)],
            lambda t, r: r"--index 'nope': no index of that name in .*index \(built: ",
        ),
        case(
            "`search` of an index built with another checkpoint",
            _index_of_another_checkpoint,
            lambda t, r: (
                r"index 'old' was built with checkpoint .*\), the run's checkpoint is now "
                r".*: its features would not match; rebuild it with `invoke index --name old`"
            ),
        ),
    ]
