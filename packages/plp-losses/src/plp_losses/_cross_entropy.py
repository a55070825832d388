"""Cross-entropy on classifier logits, registered so configs can name it."""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from plp_core import Range
from plp_losses._errors import PlpLossesError
from plp_losses._registry import register

__all__ = ["CrossEntropyLoss"]


@register("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy of **logits** (not embeddings), mean over the batch.

    ``loss = mean_i -log softmax(logits_i)[y_i]``, with optional label smoothing
    (Szegedy et al. 2016). ``takes = "logits"`` tells a training module to feed it the
    classifier's output.

    Args:
        label_smoothing: Share of the target mass spread uniformly over all classes.
    """

    takes: ClassVar[str] = "logits"

    def __init__(self, label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise PlpLossesError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the mean cross-entropy of ``logits`` ``(N, C)`` against ``labels`` ``(N,)``."""
        if logits.dim() != 2 or labels.dim() != 1 or len(logits) != len(labels):
            raise PlpLossesError(
                f"cross_entropy takes logits (N, C) and labels (N,), got "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
