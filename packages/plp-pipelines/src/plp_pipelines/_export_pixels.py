"""An exported model that carries its preprocessing: uint8 pixels in, embeddings out.

The graph takes ``images`` as uint8 ``(batch, H, W, 3)`` (``(batch, H, W)`` for one channel)
at the run's evaluation size, and does in itself what plp does to an image file after decoding
and resizing it: the channel layout, ``x / scale`` and ``(x - mean) / std``, in float32 and in
that order (:meth:`plp_data.Preprocessing.normalise`). Its ``metadata_props`` say what it
expects and how to read its output: ``image_size``, ``channels``, ``mean``, ``std``, ``scale``,
``layout``, ``metric``, ``threshold``, ``embedding_size`` and the plp version, each a JSON value.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import TYPE_CHECKING, Any

from plp_core import check_choice
from plp_pipelines._errors import ConfigError

if TYPE_CHECKING:
    import torch

    import plp_data

__all__ = [
    "FORMATS",
    "INPUTS",
    "INPUT_TYPES",
    "check_export_arguments",
    "metadata_props",
    "pixel_embedder",
    "pixels_of",
]

FORMATS = ("onnx",)
INPUTS = ("test", "random")
INPUT_TYPES = ("uint8", "float")


def check_export_arguments(format: str, inputs: str, input: str, samples: int = 1) -> None:
    """Raise ConfigError naming the first export argument that is not valid (torch not needed)."""
    check_choice(format, FORMATS, kind="export format", error=ConfigError, flag="--format")
    check_choice(inputs, INPUTS, kind="kind of inputs", error=ConfigError, flag="--inputs")
    check_choice(input, INPUT_TYPES, kind="input type", error=ConfigError, flag="--input")
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")


def pixel_embedder(
    embedder: torch.nn.Module, preprocessing: plp_data.Preprocessing
) -> torch.nn.Module:
    """Return a module taking uint8 ``(B, H, W[, 3])`` pixels to ``embedder``'s embeddings."""
    import torch

    class PixelEmbedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedder = embedder
            shape = (1, preprocessing.channels, 1, 1)
            self.mean: torch.Tensor
            self.std: torch.Tensor
            self.register_buffer("mean", torch.tensor(preprocessing.mean).view(shape))
            self.register_buffer("std", torch.tensor(preprocessing.std).view(shape))

        def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8 pixels
            if preprocessing.channels == 1:
                images = images.unsqueeze(-1)
            images = images.permute(0, 3, 1, 2).float() / preprocessing.scale
            return self.embedder((images - self.mean) / self.std)

    return PixelEmbedder().eval()


def pixels_of(images: torch.Tensor, preprocessing: plp_data.Preprocessing) -> torch.Tensor:
    """Return the uint8 pixels ``(N, H, W[, 3])`` that normalise to ``images`` ``(N, C, H, W)``.

    The evaluation images of a run are normalised uint8 pixels: undoing the normalisation and
    rounding gives those pixels back exactly.
    """
    import torch

    shape = (1, preprocessing.channels, 1, 1)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float64).view(shape)
    std = torch.tensor(preprocessing.std, dtype=torch.float64).view(shape)
    values = (images.double() * std + mean) * preprocessing.scale
    pixels = values.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return pixels[..., 0] if preprocessing.channels == 1 else pixels


def metadata_props(
    preprocessing: plp_data.Preprocessing,
    *,
    metric: str,
    threshold: float | None,
    embedding_size: int,
) -> dict[str, str]:
    """Return the model's metadata: what it expects and how to read what it returns."""
    try:
        version = metadata.version("plp-pipelines")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        version = "unknown"
    values: dict[str, Any] = {
        "image_size": list(preprocessing.image_size),
        "channels": preprocessing.channels,
        "layout": "NHWC uint8" if preprocessing.channels == 3 else "NHW uint8",
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "scale": preprocessing.scale,
        "metric": metric,
        "threshold": threshold,
        "embedding_size": embedding_size,
        "plp_version": version,
    }
    return {key: json.dumps(value) for key, value in values.items()}
