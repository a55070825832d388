"""Retrieval validation: the validation images ranked with plp-eval's exact ranking each epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from plp_models._errors import PlpModelsError

__all__ = ["VALIDATION_METRICS", "RetrievalValidation"]

# Logged name (``val/<name>``) -> key of plp_eval.ReidMetrics.to_dict().
VALIDATION_METRICS: dict[str, str] = {
    "mAP": "mAP",
    "rank1": "rank-1",
    "mINP": "mINP",
    "precision@1": "precision@1",
    "R-precision": "R-precision",
    "MAP@R": "MAP@R",
}


class RetrievalValidation:
    """Ranks the validation images against each other at the end of every validation epoch.

    The model adds the evaluation features (what ``embed`` returns) of each validation batch,
    with its labels and cameras; :meth:`compute` ranks them exactly with
    :func:`plp_eval.reid_metrics` on the device the features are on (the training device).

    Two protocols:

    - leave-one-out (``queries`` None): every validation image queries all the others. Images
      whose class has no other validation image (they could be no query's match) are left out.
    - query/gallery (``queries`` a boolean mask over the validation images, True = query):
      queries rank the gallery images; with cameras, gallery images of the query's identity
      *and* camera are removed (Market-1501).

    Every process must see every validation image in the same order (plp's datamodules do not
    shard validation); under ``torch.distributed`` the features of rank 0 are broadcast and
    each rank ranks a share of the queries, so every rank gets rank 0's numbers, bit for bit.

    Args:
        size: The number of validation images (checked each epoch).
        queries: The query mask of the query/gallery protocol, or None for leave-one-out.
        metric: ``"euclidean"`` or ``"cosine"``.
        max_rank: Length of the CMC curve.
        metrics: Names to log as ``val/<name>``, keys of :data:`VALIDATION_METRICS`.
    """

    def __init__(
        self,
        size: int,
        queries: np.ndarray | None = None,
        metric: Literal["euclidean", "cosine"] = "euclidean",
        max_rank: int = 50,
        metrics: Sequence[str] = ("mAP", "rank1"),
    ) -> None:
        unknown = [name for name in metrics if name not in VALIDATION_METRICS]
        if unknown:
            raise PlpModelsError(
                f"unknown validation metric {unknown[0]!r}; available: "
                f"{', '.join(VALIDATION_METRICS)}"
            )
        if queries is not None:
            queries = np.asarray(queries, dtype=bool)
            if len(queries) != size or not queries.any() or queries.all():
                raise PlpModelsError(
                    f"the query mask must mark some, not all, of the {size} validation images "
                    f"(it marks {int(queries.sum())} of {len(queries)})"
                )
        self.size = size
        self.queries = queries
        self.metric = metric
        self.max_rank = max_rank
        self.metrics = tuple(metrics)
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    @property
    def names(self) -> list[str]:
        """The logged names: ``val/<metric>``."""
        return [f"val/{name}" for name in self.metrics]

    def reset(self) -> None:
        """Forget the features added so far (at the start of a validation epoch)."""
        self._parts = []

    def add(self, features: torch.Tensor, batch: Sequence[torch.Tensor]) -> None:
        """Keep the features of a validation batch ``(images, labels[, cameras])``."""
        cameras = batch[2].detach() if len(batch) > 2 else None
        self._parts.append((features.detach().float(), batch[1].detach(), cameras))

    def compute(self) -> dict[str, float]:
        """Return ``{"val/<metric>": value}`` over the features added since :meth:`reset`.

        NaN for every metric when a feature is not finite (a diverged model).

        Raises:
            PlpModelsError: The features added do not cover the validation images exactly, or
                (leave-one-out) no validation image has another of its class.
        """
        import plp_eval

        if not self._parts:
            raise PlpModelsError("retrieval validation saw no validation batch")
        features = torch.cat([part[0] for part in self._parts])
        labels = torch.cat([part[1] for part in self._parts]).cpu().numpy()
        has_cameras = all(part[2] is not None for part in self._parts)
        cameras = (
            torch.cat([part[2] for part in self._parts]).cpu().numpy()  # type: ignore[misc]
            if has_cameras
            else None
        )
        self.reset()
        if len(labels) != self.size:
            raise PlpModelsError(
                f"retrieval validation saw {len(labels)} of the {self.size} validation images: "
                "every process must see the whole validation split, unsharded and unlimited"
            )
        distributed = _world_size() > 1
        if distributed:
            torch.distributed.broadcast(features, src=0)
        if not torch.isfinite(features).all():
            return {name: float("nan") for name in self.names}
        common: dict[str, Any] = {
            "metric": self.metric,
            "max_rank": self.max_rank,
            "distributed": distributed,
        }
        if self.queries is None:
            kept = _with_a_match(labels)
            if not kept.any():
                raise PlpModelsError(
                    f"retrieval validation: no class of the {len(labels)} validation images has "
                    "a second image, so no image has a match to rank"
                )
            rows = torch.as_tensor(kept, device=features.device)
            result = plp_eval.reid_metrics(
                features[rows], labels[kept], features[rows], labels[kept],
                query_in_gallery=True, **common,
            )  # fmt: skip
        else:
            query, gallery = self.queries, ~self.queries
            q_rows = torch.as_tensor(query, device=features.device)
            g_rows = torch.as_tensor(gallery, device=features.device)
            result = plp_eval.reid_metrics(
                features[q_rows], labels[query], features[g_rows], labels[gallery],
                None if cameras is None else cameras[query],
                None if cameras is None else cameras[gallery],
                **common,
            )  # fmt: skip
        values = result.to_dict()
        return {f"val/{name}": float(values[VALIDATION_METRICS[name]]) for name in self.metrics}


def _with_a_match(labels: np.ndarray) -> np.ndarray:
    """Return the boolean mask of the images whose label has another image."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse] >= 2


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    return 1
