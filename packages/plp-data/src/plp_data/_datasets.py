"""In-memory image datasets that yield ``(image, label)`` or ``(image, label, camera)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

__all__ = ["TensorImageDataset"]


class TensorImageDataset(Dataset[tuple[torch.Tensor, ...]]):
    """Images held as one tensor ``(N, C, H, W)`` with integer labels and optional cameras.

    Items are ``(image, label)`` or, when ``cameras`` is given, ``(image, label, camera)``; the
    transform (if any) is applied to the image tensor.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        cameras: torch.Tensor | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.cameras = None if cameras is None else cameras.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.cameras is None:
            return image, self.labels[index]
        return image, self.labels[index], self.cameras[index]
