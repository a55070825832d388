"""Pairwise distances with finite gradients, also where two embeddings coincide."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plp_core import DISTANCES, Distance, check_choice
from plp_losses._errors import PlpLossesError

__all__ = ["DISTANCES", "Distance", "check_distance", "pairwise_distance", "rowwise_distance"]


def check_distance(distance: str) -> str:
    """Return ``distance`` if it is one of :data:`~plp_core.DISTANCES`; else raise saying so.

    Raises:
        PlpLossesError: An unknown distance, listing the valid ones.
    """
    return check_choice(distance, DISTANCES, kind="distance", error=PlpLossesError)


# Below this squared distance the square root's gradient (1 / 2 sqrt(x)) would blow up.
_EPSILON = 1e-12


def pairwise_distance(
    embeddings: torch.Tensor, other: torch.Tensor | None = None, distance: str = "euclidean"
) -> torch.Tensor:
    """Return the ``(N, M)`` matrix of distances between rows of ``embeddings`` and ``other``.

    - ``euclidean``: ``||a - b||_2`` (``torch.cdist``: for more than 25 rows one matmul of the
      rows with their squared norms appended). Where ``a == b`` the value is 0 and the
      gradient is 0 (not NaN): distances up to ``sqrt(eps)`` are masked to 0.
    - ``squared_euclidean``: ``||a - b||²``, computed as ``|a|² + |b|² - 2 a·b`` clamped at 0.
    - ``cosine``: ``1 - cos(a, b)`` (rows are L2-normalised first).

    Args:
        embeddings: ``(N, D)`` tensor.
        other: ``(M, D)`` tensor; ``embeddings`` itself when None.
        distance: One of ``euclidean``, ``squared_euclidean``, ``cosine``.
    """
    check_distance(distance)
    other = embeddings if other is None else other
    if distance == "cosine":
        return 1.0 - F.normalize(embeddings, dim=1) @ F.normalize(other, dim=1).T
    if distance == "euclidean":
        distances = torch.cdist(embeddings, other)
        return distances.masked_fill(distances <= _EPSILON**0.5, 0.0)
    squared = (
        embeddings.pow(2).sum(1, keepdim=True)
        + other.pow(2).sum(1).unsqueeze(0)
        - 2.0 * embeddings @ other.T
    ).clamp_min(0.0)
    return squared


def rowwise_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Return the ``(N,)`` distances ``d(a_i, b_i)`` between matching rows of ``a`` and ``b``.

    Same definitions and the same zero-distance gradient rule as :func:`pairwise_distance`.
    """
    check_distance(distance)
    if distance == "cosine":
        return 1.0 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    squared = (a - b).pow(2).sum(1)
    if distance == "squared_euclidean":
        return squared
    zero = squared <= _EPSILON
    return torch.sqrt(squared.clamp_min(_EPSILON)).masked_fill(zero, 0.0)
