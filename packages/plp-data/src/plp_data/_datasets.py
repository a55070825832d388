"""Image datasets that yield ``(image, label)`` or ``(image, label, camera)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from plp_data._errors import PlpDataError

__all__ = [
    "ArrayImageDataset",
    "FileImageDataset",
    "ImageReadError",
    "TensorImageDataset",
    "crop_box",
    "eight_bit",
    "read_rgb_image",
]


class ImageReadError(PlpDataError, OSError):
    """An image file cannot be decoded; the message is one line naming the file.

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's
    traceback as the message; the constructor keeps only the original one-line message.
    """

    def __init__(self, message: str) -> None:
        if message.startswith(f"Caught {type(self).__name__}"):
            last = [line for line in message.splitlines() if line.strip()][-1]
            message = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


def read_rgb_image(path: Path) -> Image.Image:
    """Return the image file ``path`` decoded and converted to 8-bit RGB.

    Pillow's own conversion serves 8-bit images (greyscale, palette, alpha, CMYK, ...). Images
    of more than 8 bits per sample are scaled, not clipped (Pillow's ``convert`` saturates every
    value above 255 to white): see :func:`eight_bit`.

    Raises:
        ImageReadError: The file is not a readable image (not an image, truncated, a folder).
    """
    try:
        with Image.open(path) as file:
            return eight_bit(file).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ImageReadError(
            f"{path}: not a readable image ({type(error).__name__}: {reason[:200]})"
        ) from None


def eight_bit(image: Image.Image) -> Image.Image:
    """Return ``image`` with 8 bits per sample: high-bit-depth greyscale scaled by its range.

    - 16-bit greyscale (Pillow's ``I;16`` modes): the full 16-bit range, 0..65535 to 0..255.
    - 32-bit integers (``I``): 0..65535 when every value lies there (a 16-bit image held in 32
      bits, as some readers give), else the image's own minimum..maximum.
    - Floating point (``F``): 0..1 when every finite value lies there (the convention of float
      images), else the image's own minimum..maximum; NaN is black.

    Other modes are returned unchanged (8 bits already). Values are rounded to the nearest level.

    >>> import numpy as np
    >>> sixteen = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    >>> np.asarray(eight_bit(sixteen)).tolist()
    [[0, 1, 128, 255]]
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    values = np.asarray(image)
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if low >= 0 and high <= 1:
            low, high = 0.0, 1.0
        values = np.nan_to_num(values.astype(np.float64), nan=low, posinf=high, neginf=low)
    elif image.mode.startswith("I;16"):
        low, high = float(np.iinfo(values.dtype).min), float(np.iinfo(values.dtype).max)
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if low >= 0 and high <= 65535:
            low, high = 0.0, 65535.0
    span = high - low
    scaled = (values.astype(np.float64) - low) * (255.0 / span) if span > 0 else values * 0.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def crop_box(image: Image.Image, box: Any) -> Image.Image:
    """Return the crop ``[x_1, x_2) x [y_1, y_2)`` of ``image`` (``box`` = x_1, y_1, x_2, y_2).

    A box of -1 values is the whole image.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    if x1 < 0:
        return image
    return image.crop((x1, y1, x2, y2))


def _camera_tensor(cameras: Any, length: int) -> torch.Tensor | None:
    if cameras is None:
        return None
    tensor = torch.as_tensor(np.asarray(cameras), dtype=torch.long)
    if len(tensor) != length:
        raise PlpDataError(f"{length} images but {len(tensor)} cameras")
    return tensor


class _LabelledDataset(Dataset[tuple[Any, ...]]):
    """Shared label / camera handling: items are ``(image, label[, camera])``."""

    def __init__(self, length: int, labels: Any, cameras: Any) -> None:
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if len(self.labels) != length:
            raise PlpDataError(f"{length} images but {len(self.labels)} labels")
        self.cameras = _camera_tensor(cameras, length)

    def __len__(self) -> int:
        return len(self.labels)

    def _item(self, image: Any, index: int) -> tuple[Any, ...]:
        if self.cameras is None:
            return image, self.labels[index]
        return image, self.labels[index], self.cameras[index]


class TensorImageDataset(_LabelledDataset):
    """Images held as one float tensor ``(N, C, H, W)``; ``transform`` acts on the tensor."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        cameras: torch.Tensor | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(len(images), labels, cameras)
        self.images = images
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return self._item(image, index)


class ArrayImageDataset(_LabelledDataset):
    """Images held as one uint8 array ``(N, H, W)`` or ``(N, H, W, C)``, served as PIL images.

    ``transform`` receives the PIL image (as torchvision's MNIST and CIFAR datasets do).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Any,
        cameras: Any = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        super().__init__(len(images), labels, cameras)
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image: Any = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return self._item(image, index)


class FileImageDataset(_LabelledDataset):
    """Images read from files on access (converted to RGB), e.g. an image folder or Market-1501.

    Args:
        paths: The image files.
        labels: One label per file.
        cameras: One camera per file, or None.
        transform: Applied to the PIL image.
        boxes: ``(N, 4)`` crops ``x_1, y_1, x_2, y_2`` in pixels taken before ``transform``
            (a row of -1: the whole image), or None.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Any,
        cameras: Any = None,
        transform: Callable[[Image.Image], Any] | None = None,
        boxes: np.ndarray | None = None,
    ) -> None:
        super().__init__(len(paths), labels, cameras)
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        if boxes is not None and np.shape(boxes) != (len(self.paths), 4):
            raise PlpDataError(f"{len(self.paths)} images but boxes of shape {np.shape(boxes)}")
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.int64)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        image: Any = read_rgb_image(self.paths[index])
        if self.boxes is not None:
            image = crop_box(image, self.boxes[index])
        if self.transform is not None:
            image = self.transform(image)
        return self._item(image, index)
