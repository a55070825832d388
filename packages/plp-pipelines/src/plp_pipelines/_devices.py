"""Device-aware training defaults: ``accelerator``/``precision = "auto"`` and CUDA speed settings.

``accelerator = "auto"`` follows Lightning's convention (a CUDA GPU when there is one, else Apple's
MPS, else the CPU). ``precision = "auto"`` is ``bf16-mixed`` on CUDA devices with native bfloat16
(Ampere and later), ``16-mixed`` on older CUDA devices and ``32-true`` elsewhere.
:class:`DeviceSpeedups` applies the CUDA settings that cost nothing in accuracy worth naming:
TF32 matrix products (``torch.set_float32_matmul_precision("high")``) and channels-last memory for
convolutional networks; and it says once that ``deterministic = true`` slows a GPU run.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

__all__ = [
    "DETERMINISTIC_NOTE",
    "DeviceSpeedups",
    "evaluation_device",
    "is_convolutional",
    "resolve_accelerator",
    "resolve_precision",
]

log = logging.getLogger("plp")

DETERMINISTIC_NOTE = (
    "trainer.deterministic = true on CUDA: deterministic kernels (and no cuDNN autotuning) make "
    "a GPU run slower; set trainer.deterministic = false for speed when bit-exact reruns "
    "do not matter"
)


def evaluation_device(config: Any) -> torch.device:
    """Return the device to embed and rank on: the GPU where the run trains on one."""
    if config.trainer.accelerator != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_accelerator(accelerator: str) -> str:
    """Return the accelerator ``"auto"`` stands for here (``cuda``, ``mps`` or ``cpu``).

    Other values are returned unchanged (``"gpu"`` is Lightning's alias of ``"cuda"``).
    """
    if accelerator != "auto":
        return accelerator
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, accelerator: str) -> str:
    """Return the precision ``"auto"`` stands for on ``accelerator`` (others unchanged).

    ``bf16-mixed`` on a CUDA device with native bfloat16, ``16-mixed`` on an older CUDA device,
    ``32-true`` on any other accelerator.
    """
    if precision != "auto":
        return precision
    if resolve_accelerator(accelerator) in ("cuda", "gpu") and torch.cuda.is_available():
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return "bf16-mixed" if native else "16-mixed"
    return "32-true"


def is_convolutional(module: nn.Module) -> bool:
    """Return whether ``module`` holds a 2-D convolution (channels-last then pays off)."""
    return any(isinstance(child, nn.Conv2d) for child in module.modules())


class DeviceSpeedups(pl.Callback):
    """On a CUDA device: TF32 matmuls, channels-last convolutions, a note on determinism.

    Does nothing on other devices. The note on ``deterministic = true`` is logged once per
    process, on rank 0.

    Args:
        deterministic: Whether the Trainer runs with ``deterministic=True``.
    """

    _noted = False

    def __init__(self, deterministic: bool = False) -> None:
        self.deterministic = deterministic

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Apply the CUDA settings before the first batch of any stage."""
        if trainer.strategy.root_device.type != "cuda":
            return
        torch.set_float32_matmul_precision("high")
        if is_convolutional(pl_module):
            pl_module.to(memory_format=torch.channels_last)
        if self.deterministic and not DeviceSpeedups._noted:
            DeviceSpeedups._noted = True
            rank_zero_info(DETERMINISTIC_NOTE)
