"""How an image file becomes a model input exactly as a datamodule's evaluation images do.

A datamodule's evaluation transform is: the image in its channels (RGB, or one grey channel for
MNIST and digits), resized to the dataset's size (PIL, bilinear with antialiasing: torchvision's
``Resize``), divided by ``scale`` (255; 16 for scikit-learn's digits, whose pixels are 0..16),
then normalised per channel, ``(x - mean) / std``. :class:`Preprocessing` holds those numbers,
so that a trained run can embed image files of any size and format as it embeds its own test
images, and an exported model can carry them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plp_data._datasets import crop_box, read_rgb_image
from plp_data._errors import PlpDataError

__all__ = ["Preprocessing"]


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation preprocessing of a datamodule: channels, size, scale, normalisation.

    Attributes:
        channels: 1 (grey) or 3 (RGB).
        image_size: ``(height, width)`` the images are resized to.
        mean: Per-channel mean of the scaled pixels.
        std: Per-channel standard deviation of the scaled pixels.
        scale: The pixel value that maps to 1.0 (255; 16 for digits).
    """

    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 255.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or len(self.mean) != self.channels:
            raise PlpDataError(
                f"preprocessing: {self.channels} channels with mean {self.mean}; expected 1 or 3 "
                "channels and one mean and std per channel"
            )
        if len(self.std) != self.channels or min(self.std) <= 0 or self.scale <= 0:
            raise PlpDataError(f"preprocessing: std {self.std} and scale {self.scale} must be > 0")

    def read(self, path: str | Path, box: Sequence[int] | None = None) -> np.ndarray:
        """Return the image file ``path`` as uint8 ``(H, W, C)`` at :attr:`image_size`.

        Decoded to RGB, cropped to ``box`` (``x_1, y_1, x_2, y_2``; None or -1s: the whole
        image), converted to grey for one channel, then resized (skipped when the size is
        already right, as PIL does).

        Raises:
            ImageReadError: The file is not a readable image (one line naming it).
        """
        from torchvision.transforms import functional

        image = read_rgb_image(Path(path))
        if box is not None:
            image = crop_box(image, box)
        if self.channels == 1:
            image = image.convert("L")
        height, width = self.image_size
        if image.size != (width, height):
            image = functional.resize(image, [height, width])
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels

    def normalise(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Return uint8 images ``(N, H, W, C)`` as the model's float32 input ``(N, C, H, W)``.

        ``x / scale``, then ``(x - mean) / std``, in that order and in float32: the same
        numbers as torchvision's ``ToTensor`` + ``Normalize`` (and the device data path).
        """
        tensor = torch.as_tensor(pixels)
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(-1)
        if tensor.dtype != torch.uint8 or tensor.shape[-1] != self.channels:
            raise PlpDataError(
                f"preprocessing: expected uint8 images (N, H, W, {self.channels}), got "
                f"{tensor.dtype} {tuple(tensor.shape)}"
            )
        shape = (1, self.channels, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        images = tensor.permute(0, 3, 1, 2).contiguous().float()  # the layout moved as uint8
        return images.div_(self.scale).sub_(mean).div_(std)

    def to_dict(self) -> dict[str, Any]:
        """Return the preprocessing as JSON values."""
        return {
            "channels": self.channels,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        """Return the preprocessing :meth:`to_dict` wrote.

        Raises:
            PlpDataError: A key is missing or a value has the wrong type.
        """
        try:
            size = [int(v) for v in values["image_size"]]
            return cls(
                channels=int(values["channels"]),
                image_size=(size[0], size[1]),
                mean=tuple(float(v) for v in values["mean"]),
                std=tuple(float(v) for v in values["std"]),
                scale=float(values["scale"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise PlpDataError(f"preprocessing: not a preprocessing record ({error!r})") from None
