"""Backbones: image -> feature vector, built by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plp_models._errors import PlpModelsError
from plp_models._registry import Registry

__all__ = [
    "BACKBONES",
    "Backbone",
    "CifarResNet18",
    "SmallConvNet",
    "TorchvisionBackbone",
    "available_backbones",
    "build_backbone",
]


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


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(F(x) + shortcut(x))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@BACKBONES.register("resnet18_cifar")
class CifarResNet18(Backbone):
    """ResNet-18 for 32x32 images: a 3x3 stride-1 stem and no max-pool (He et al. 2016, CIFAR).

    Args:
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused; any size works).
        width: Channels of the first stage (64 in the paper); stages have 1x, 2x, 4x, 8x.
    """

    def __init__(
        self, in_channels: int = 3, image_size: tuple[int, int] = (32, 32), width: int = 64
    ) -> None:
        super().__init__()
        del image_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for index, multiplier in enumerate((1, 2, 4, 8)):
            out = width * multiplier
            stride = 1 if index == 0 else 2
            stages += [_BasicBlock(channels, out, stride), _BasicBlock(out, out, 1)]
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.pool(self.stages(self.stem(images)))


class TorchvisionBackbone(Backbone):
    """A torchvision classification network with its classifier removed.

    Built with ``weights=None`` (hub weights cannot be fetched offline); ``weights_path`` loads a
    local state dict saved from the same torchvision architecture (its classifier keys are
    ignored). A first convolution for other than 3 input channels is replaced.

    Args:
        architecture: ``resnet18``, ``resnet50`` or ``mobilenet_v3_small`` / ``_large``.
        in_channels: Channels of the input images.
        image_size: Height and width of the input images (unused).
        weights_path: Optional path of a local torchvision state dict.
    """

    def __init__(
        self,
        architecture: str,
        in_channels: int = 3,
        image_size: tuple[int, int] = (224, 224),
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        del image_size
        import torchvision

        network = getattr(torchvision.models, architecture)(weights=None)
        if weights_path is not None:
            _load_local_weights(network, weights_path)
        if architecture.startswith("resnet"):
            self.out_features = network.fc.in_features
            network.fc = nn.Identity()
            if in_channels != 3:
                network.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        else:
            self.out_features = network.classifier[0].in_features
            network.classifier = nn.Identity()
            if in_channels != 3:
                first = network.features[0][0]
                network.features[0][0] = nn.Conv2d(
                    in_channels, first.out_channels, 3, 2, 1, bias=False
                )
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the pooled features of ``images``."""
        return self.network(images)


def _load_local_weights(network: nn.Module, weights_path: str) -> None:
    from pathlib import Path

    path = Path(weights_path)
    if not path.is_file():
        raise PlpModelsError(f"weights_path {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise PlpModelsError(f"weights_path {path}: cannot read ({error})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    classifier = ("fc.", "classifier.")
    kept = {k: v for k, v in state.items() if not k.startswith(classifier)}
    try:
        missing, unexpected = network.load_state_dict(kept, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise PlpModelsError(f"weights_path {path} does not fit: {detail}") from None
    missing = [k for k in missing if not k.startswith(classifier)]
    if missing or unexpected:
        raise PlpModelsError(
            f"weights_path {path} does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def _torchvision(architecture: str) -> Any:
    def factory(**kwargs: Any) -> TorchvisionBackbone:
        return TorchvisionBackbone(architecture, **kwargs)

    factory.__doc__ = f"torchvision's {architecture} without its classifier (weights=None)."
    return factory


for _architecture in ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large"):
    BACKBONES.register(_architecture)(_torchvision(_architecture))


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Return the backbone registered as ``name``, built with ``kwargs``."""
    return BACKBONES.build(name, **kwargs)


def available_backbones() -> list[str]:
    """Return the names of the registered backbones."""
    return BACKBONES.available()
