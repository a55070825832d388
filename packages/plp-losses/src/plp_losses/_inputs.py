"""Validation of ``(embeddings, labels)`` shared by every loss."""

from __future__ import annotations

import torch

from plp_losses._errors import PlpLossesError

__all__ = ["check_inputs", "same_label_masks"]


def check_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise PlpLossesError unless embeddings are finite ``(N, D)`` and labels ``(N,)``."""
    if embeddings.dim() != 2:
        raise PlpLossesError(
            f"embeddings must be 2-D (batch, dim), got shape {tuple(embeddings.shape)}"
        )
    if labels.dim() != 1:
        raise PlpLossesError(f"labels must be 1-D (batch,), got shape {tuple(labels.shape)}")
    if len(labels) != len(embeddings):
        raise PlpLossesError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    if not torch.isfinite(embeddings).all():
        bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
        raise PlpLossesError(f"embeddings have {bad} rows with NaN or inf")


def same_label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(positive, negative)`` boolean ``(N, N)`` masks; the diagonal is neither."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same
