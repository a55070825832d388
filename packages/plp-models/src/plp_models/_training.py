"""Training habits of re-ID recipes as Lightning callbacks: a frozen backbone, an EMA of weights."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from torch import nn

from plp_models._errors import PlpModelsError

__all__ = ["ExponentialMovingAverage", "FreezeBackbone"]


class FreezeBackbone(pl.Callback):
    """Trains only the head for the first ``epochs`` epochs (torchreid's ``fixbase_epoch``).

    During those epochs ``pl_module.backbone`` is in eval mode — its BatchNorm layers normalise
    with their running statistics and do not update them, its dropout is off — and its
    parameters are not updated: their gradients are dropped before each optimizer step, so the
    optimizer skips them (no step, no weight decay, no momentum). From epoch ``epochs`` on the
    backbone trains as usual, with fresh optimizer state.

    The gradients are still computed and, under DDP, all-reduced: the set of parameters that
    take part never changes, so DDP needs no search for unused parameters. Lightning's own
    ``BackboneFinetuning`` instead leaves the backbone out of the optimizer and adds it later
    as a new parameter group, which a DDP model wrapped with the backbone frozen would never
    synchronise and which the learning-rate schedule would not cover. The state depends on the
    epoch alone, so a resumed run freezes exactly as an uninterrupted one.

    Args:
        epochs: Epochs with the backbone frozen (0: never).
    """

    def __init__(self, epochs: int) -> None:
        if epochs < 0:
            raise PlpModelsError(f"freeze_backbone_epochs must be >= 0, got {epochs}")
        self.epochs = epochs

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check that the model has a ``backbone`` module."""
        if not isinstance(getattr(pl_module, "backbone", None), nn.Module):
            raise PlpModelsError(
                f"freeze_backbone_epochs: {type(pl_module).__name__} has no 'backbone' module "
                "to freeze"
            )

    def frozen(self, epoch: int) -> bool:
        """Return whether the backbone is frozen in ``epoch``."""
        return epoch < self.epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put the backbone in eval mode while frozen, back in train mode afterwards."""
        backbone: nn.Module = pl_module.backbone  # type: ignore[assignment]
        backbone.train(not self.frozen(trainer.current_epoch))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Drop the backbone's gradients while it is frozen."""
        if self.frozen(trainer.current_epoch):
            backbone: nn.Module = pl_module.backbone  # type: ignore[assignment]
            for parameter in backbone.parameters():
                parameter.grad = None


class ExponentialMovingAverage(EMAWeightAveraging):
    """An exponential moving average of the weights, used by validation, checkpoints and tests.

    Lightning's :class:`~pytorch_lightning.callbacks.EMAWeightAveraging` (over
    ``torch.optim.swa_utils.AveragedModel``): after every optimizer step ``average = decay *
    average + (1 - decay) * weights`` for parameters and buffers (BatchNorm statistics) alike,
    the first step copying the weights. Validation runs on the average; every checkpoint's
    ``state_dict`` holds the average (so evaluation and export use it) and its
    ``current_model_state`` the raw weights, from which a resumed run continues exactly. The
    average lives on the training device (Lightning's default would keep it on the device the
    model had before the trainer moved it, the CPU).

    Args:
        decay: The weight of the old average, in (0, 1); 0.999 averages over about 1,000 steps.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise PlpModelsError(f"ema must be in (0, 1), got {decay}")
        super().__init__(decay=decay)
        self.decay = decay

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Create the average on the training device when fitting starts."""
        if stage == "fit" and self._device is None:
            self._device = torch.device(trainer.strategy.root_device)
        super().setup(trainer, pl_module, stage)
