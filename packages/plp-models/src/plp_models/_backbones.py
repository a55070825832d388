"""Backbones: image -> feature vector, built by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plp_models._registry import Registry

__all__ = ["BACKBONES", "Backbone", "SmallConvNet", "available_backbones", "build_backbone"]


class Backbone(nn.Module):
    """A network mapping images ``(N, C, H, W)`` to features ``(N, out_features)``."""

    out_features: int


BACKBONES: Registry[Backbone] = Registry("backbone")


@BACKBONES.register("small_convnet")
class SmallConvNet(Backbone):
    """Three 3x3 conv-BN-ReLU blocks, one 2x2 max-pool, global average pooling.

    Sized for 8x8 (digits) and 28x28 (MNIST) inputs; works for any size >= 2x2.

    Args:
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused; any size works).
        width: Channels of the first block; the next two have 2x and 4x as many.
    """

    def __init__(
        self, in_channels: int = 1, image_size: tuple[int, int] = (8, 8), width: int = 32
    ) -> None:
        super().__init__()
        del image_size

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 4 * width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.features(images)


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Return the backbone registered as ``name``, built with ``kwargs``."""
    return BACKBONES.build(name, **kwargs)


def available_backbones() -> list[str]:
    """Return the names of the registered backbones."""
    return BACKBONES.available()
