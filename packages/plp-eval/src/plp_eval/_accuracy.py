"""Classification accuracy: top-k, per class and the confusion matrix (torchmetrics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plp_eval._arrays import as_labels
from plp_eval._errors import PlpEvalError

__all__ = ["AccuracyMetrics", "accuracy_metrics"]


@dataclass(frozen=True)
class AccuracyMetrics:
    """Top-k accuracies, per-class accuracy and the confusion matrix (rows: true class)."""

    top_k: dict[int, float]
    per_class_accuracy: np.ndarray
    confusion_matrix: np.ndarray

    @property
    def mean_per_class_accuracy(self) -> float:
        """The mean of the per-class accuracies (balanced accuracy)."""
        return float(np.nanmean(self.per_class_accuracy))

    def to_dict(self) -> dict[str, Any]:
        """Return ``top-k`` values and the mean per-class accuracy as a flat dict."""
        result: dict[str, Any] = {f"top-{k}": float(v) for k, v in self.top_k.items()}
        result["mean_per_class_accuracy"] = self.mean_per_class_accuracy
        return result


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
    accuracies = {}
    for k in top_k:
        if k == 1 or k < classes:
            source = scores.float() if k > 1 else predictions
            accuracies[k] = float(
                multiclass_accuracy(source, truth, classes, top_k=k, average="micro")
            )
    per_class = multiclass_accuracy(predictions, truth, classes, average=None).numpy()
    present = np.bincount(truth.numpy(), minlength=classes) > 0
    per_class = np.where(present, per_class, np.nan)
    confusion = multiclass_confusion_matrix(predictions, truth, classes).numpy()
    return AccuracyMetrics(accuracies, per_class, confusion)
