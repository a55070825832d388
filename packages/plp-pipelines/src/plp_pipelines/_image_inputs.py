"""The image files a run embeds: a folder (recursively, sorted), one image, or a dataset CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plp_pipelines._errors import RunError

__all__ = ["ImageInputs", "image_inputs"]


@dataclass(frozen=True)
class ImageInputs:
    """Image files to embed, in a fixed order.

    Attributes:
        source: The folder, image or CSV they come from.
        files: The files to read.
        names: How results name them: relative to the folder (``/`` separators), the CSV's
            ``path`` column, or the image's own name.
        labels: The CSV's labels (ints, or strings), None for folders and single images.
        boxes: The CSV's boxes (``x_1, y_1, x_2, y_2``; -1 rows: the whole image), or None.
    """

    source: Path
    files: list[Path]
    names: list[str]
    labels: np.ndarray | None = None
    boxes: np.ndarray | None = None

    @property
    def name(self) -> str:
        """A short name for what these images are: the folder's, CSV's or image's stem."""
        return self.source.stem if self.source.is_file() else self.source.resolve().name

    def subset(self, kept: np.ndarray) -> ImageInputs:
        """Return the inputs of rows ``kept`` only (the readable images, say)."""
        return ImageInputs(
            self.source,
            [self.files[i] for i in kept],
            [self.names[i] for i in kept],
            None if self.labels is None else self.labels[kept],
            None if self.boxes is None else self.boxes[kept],
        )


def image_inputs(
    source: str | Path, *, what: str = "--images", single: bool = False, rows: str = "all"
) -> ImageInputs:
    """Return the images of a folder (all image files below it, sorted), a CSV, or one image.

    Args:
        source: A folder, a dataset CSV (``.csv``: its rows with their labels and boxes), or
            with ``single`` one image file.
        what: How the message names the argument.
        single: Whether one image file is accepted.
        rows: Which rows of a CSV: ``all``, ``gallery`` (``is_gallery``) or ``query``
            (``is_query``).

    Raises:
        RunError: ``source`` does not exist, holds no image, or is neither (one line).
    """
    import plp_data

    path = Path(source)
    if path.is_dir():
        found = sorted(
            (p for p in path.rglob("*") if p.suffix.lower() in plp_data.IMAGE_SUFFIXES),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        files = [p for p in found if p.is_file() and not _hidden(p.relative_to(path))]
        if not files:
            raise RunError(
                f"{what} {path}: no image files in it or below it "
                f"(looked for {', '.join(sorted(plp_data.IMAGE_SUFFIXES))})"
            )
        return ImageInputs(path, files, [p.relative_to(path).as_posix() for p in files])
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            table = plp_data.read_dataset_csv(path)
        except plp_data.PlpDataError as error:
            raise RunError(f"{what}: {error}") from None
        chosen = {
            "all": np.arange(len(table.paths)),
            "gallery": np.flatnonzero(table.is_gallery),
            "query": np.flatnonzero(table.is_query),
        }[rows]
        labels = np.asarray(table.class_ids)
        every = ImageInputs(
            path, list(table.paths), list(table.relative_paths), labels, table.boxes
        )
        return every.subset(chosen)
    if single and path.is_file() and path.suffix.lower() in plp_data.IMAGE_SUFFIXES:
        return ImageInputs(path, [path], [path.name])
    accepted = "an image, a folder of images" if single else "a folder of images"
    if not path.exists():
        raise RunError(f"{what} {path} does not exist; expected {accepted} or a dataset CSV")
    raise RunError(f"{what} {path}: expected {accepted} or a dataset CSV (.csv)")


def _hidden(relative: Path) -> bool:
    """Whether a path lies in a hidden folder or is a hidden file (``.plp-cache`` ...)."""
    return any(part.startswith(".") for part in relative.parts)
