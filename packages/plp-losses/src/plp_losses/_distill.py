"""Distillation losses: a student's embeddings pulled towards a frozen teacher's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plp_core import PositiveInt, Registry
from plp_losses._distances import pairwise_distance
from plp_losses._errors import PlpLossesError

__all__ = ["DISTILLATION", "EmbeddingMSELoss", "RelationalDistillationLoss"]

# The training loop fills in both sizes from the two models.
DISTILLATION: Registry[Any] = Registry(
    "distillation loss", error=PlpLossesError, filled=("student_size", "teacher_size")
)


def _check_pair(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Raise unless both are finite 2-D batches of the same length."""
    for name, embeddings in (("student", student), ("teacher", teacher)):
        if embeddings.dim() != 2:
            raise PlpLossesError(
                f"{name} embeddings must be 2-D (batch, dim), got {tuple(embeddings.shape)}"
            )
        if not torch.isfinite(embeddings).all():
            raise PlpLossesError(f"{name} embeddings have NaN or inf")
    if len(student) != len(teacher):
        raise PlpLossesError(f"{len(student)} student but {len(teacher)} teacher embeddings")


@DISTILLATION.register("embedding_mse")
class EmbeddingMSELoss(nn.Module):
    """Mean squared error between the (projected) student embedding and the teacher's.

    ``loss = mean_i mean_k (W s_i - t_i)_k²`` where ``W`` is a learnable linear projection
    (with bias) from the student's to the teacher's size when they differ, the identity when
    they agree (as fast-reid's feature distillation). The teacher's embeddings are detached.
    The projection is a training device only: export the student without it.

    Args:
        student_size: Size of the student's embeddings.
        teacher_size: Size of the teacher's embeddings.
    """

    def __init__(self, student_size: PositiveInt, teacher_size: PositiveInt) -> None:
        super().__init__()
        if student_size < 1 or teacher_size < 1:
            raise PlpLossesError(
                f"student_size and teacher_size must be >= 1, got {student_size}, {teacher_size}"
            )
        self.projection: nn.Module = (
            nn.Identity() if student_size == teacher_size else nn.Linear(student_size, teacher_size)
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss of ``student`` ``(N, S)`` against ``teacher`` ``(N, T)``."""
        _check_pair(student, teacher)
        projected = self.projection(student)
        if projected.shape[1] != teacher.shape[1]:
            raise PlpLossesError(
                f"teacher embeddings have {teacher.shape[1]} dimensions, expected "
                f"{projected.shape[1]}"
            )
        return F.mse_loss(projected, teacher.detach().to(projected.dtype))


def _normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    distances = pairwise_distance(embeddings, distance="euclidean")
    positive = distances[distances > 0]
    if len(positive) == 0:
        return distances
    return distances / positive.mean()


@DISTILLATION.register("relational")
class RelationalDistillationLoss(nn.Module):
    """Relational knowledge distillation, distance term (RKD-D; Park et al. 2019, CVPR).

    With ``d_ij`` the Euclidean distances between the batch's student embeddings and ``t_ij``
    the teacher's, each divided by its mean over the pairs at a distance > 0::

        loss = mean_{i, j} huber(d_ij / mu_s - t_ij / mu_t)

    over all ``N²`` entries (the diagonal is 0 on both sides), ``huber`` being the smooth L1
    loss with ``beta = 1`` (the authors' code). Only the structure of the batch is matched,
    so teacher and student may differ in size with no projection. The teacher is detached.

    Args:
        student_size: Size of the student's embeddings (unused: no projection).
        teacher_size: Size of the teacher's embeddings (unused).
    """

    def __init__(
        self, student_size: PositiveInt | None = None, teacher_size: PositiveInt | None = None
    ) -> None:
        super().__init__()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss of ``student`` ``(N, S)`` against ``teacher`` ``(N, T)``."""
        _check_pair(student, teacher)
        with torch.no_grad():
            target = _normalised_distances(teacher.detach().to(student.dtype))
        return F.smooth_l1_loss(_normalised_distances(student), target)
