"""Classification accuracy: top-k, per class and the confusion matrix (torchmetrics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels
from plp_eval._errors import PlpEvalError
from plp_eval._per_query import PerQuery

__all__ = ["AccuracyMetrics", "accuracy_metrics"]


@dataclass(frozen=True)
class AccuracyMetrics:
    """Top-k accuracies, per-class accuracy and the confusion matrix (rows: true class).

    ``labels`` and ``correct`` (``{k: (N,) bool}``, sample by sample: the true class is among
    the k best scores) are the per-sample values behind ``top_k``, for
    :func:`plp_eval.bootstrap` and :func:`plp_eval.compare` (via :meth:`per_query`).
    """

    top_k: dict[int, float]
    per_class_accuracy: np.ndarray
    confusion_matrix: np.ndarray
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    correct: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def mean_per_class_accuracy(self) -> float:
        """The mean of the per-class accuracies (balanced accuracy)."""
        return float(np.nanmean(self.per_class_accuracy))

    def to_dict(self) -> dict[str, Any]:
        """Return ``top-k`` values and the mean per-class accuracy as a flat dict."""
        result: dict[str, Any] = {f"top-{k}": float(v) for k, v in self.top_k.items()}
        result["mean_per_class_accuracy"] = self.mean_per_class_accuracy
        return result

    def per_query(self) -> PerQuery:
        """Return each sample's ``top-k`` correctness (0 or 1) with its class as identity.

        Raises:
            PlpEvalError: The result carries no per-sample values (built by hand).
        """
        if set(self.correct) != set(self.top_k) or not len(self.labels):
            raise PlpEvalError(
                "these AccuracyMetrics carry no per-sample values: compute them with "
                "plp_eval.accuracy_metrics"
            )
        return PerQuery(
            names=tuple(f"top-{k}" for k in self.top_k),
            values=np.stack([self.correct[k] for k in self.top_k], axis=1).astype(np.float64),
            identities=self.labels,
            valid=np.ones(len(self.labels), dtype=bool),
        )


def accuracy_metrics(
    logits_or_predictions: Any,
    labels: Any,
    top_k: Sequence[int] = (1, 5),
    num_classes: int | None = None,
) -> AccuracyMetrics:
    """Return top-k accuracy, per-class accuracy and the confusion matrix.

    ``logits_or_predictions`` is ``(N, C)`` scores or ``(N,)`` predicted classes (then only
    top-1 is defined). Top-k values with ``k >= num_classes`` are left out (always 1).
    """
    # Imported here: torch and torchmetrics take seconds to import, the other metrics need neither.
    import torch
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
    )

    scores = torch.as_tensor(np.asarray(logits_or_predictions))
    truth = torch.from_numpy(as_labels(labels, "labels", len(scores)))
    if len(truth) == 0:
        raise PlpEvalError("labels is empty")
    if scores.dim() == 2:
        classes = num_classes or scores.shape[1]
        predictions = scores.argmax(dim=1)
    elif scores.dim() == 1:
        classes = num_classes or int(max(scores.max(), truth.max())) + 1
        predictions = scores.long()
        top_k = (1,)
    else:
        raise PlpEvalError(f"logits_or_predictions must be 1-D or 2-D, got {tuple(scores.shape)}")
    accuracies, correct = {}, {}
    for k in top_k:
        if k == 1 or k < classes:
            source = scores.float() if k > 1 else predictions
            accuracies[k] = float(
                multiclass_accuracy(source, truth, classes, top_k=k, average="micro")
            )
            best = scores.float().topk(k, dim=1).indices if k > 1 else predictions[:, None]
            correct[k] = (best == truth[:, None]).any(dim=1).numpy()
    per_class = multiclass_accuracy(predictions, truth, classes, average=None).numpy()
    present = np.bincount(truth.numpy(), minlength=classes) > 0
    per_class = np.where(present, per_class, np.nan)
    confusion = multiclass_confusion_matrix(predictions, truth, classes).numpy()
    return AccuracyMetrics(accuracies, per_class, confusion, truth.numpy(), correct)
