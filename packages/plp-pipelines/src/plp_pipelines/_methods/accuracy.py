"""``accuracy``: top-k of the classifier on the test split (1-nearest-neighbour without one)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod

__all__ = ["Accuracy"]


@METHODS.register("accuracy", order=10, default=True)
class Accuracy(EvaluationMethod):
    """Accuracy of the test split: the classifier's logits, or 1-NN in trainval without one.

    A model without a classifier predicts the label of each test image's nearest trainval
    image (Euclidean), so embedding-only models get an accuracy too.
    """

    plots = ("confusion_matrix",)
    headline = (("accuracy", "top-1", "accuracy (top-1)"),)

    def __init__(self) -> None:
        self._confusion: Any = None

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"accuracy": ...}``; the confusion matrix is kept for :meth:`draw`."""
        import plp_eval

        trainval, test = context.features["trainval"], context.features["test"]
        if test.logits is not None:
            result = plp_eval.accuracy_metrics(test.logits, test.labels)
            source = "classifier"
        else:
            indices, _ = plp_eval.rank_lists(test.features, trainval.features, k=1)
            predictions = trainval.labels[indices[:, 0]]
            num_classes = int(max(trainval.labels.max(), test.labels.max())) + 1
            result = plp_eval.accuracy_metrics(predictions, test.labels, num_classes=num_classes)
            source = "1-nearest-neighbour in trainval"
        self._confusion = result.confusion_matrix
        return {"accuracy": {"source": source, **result.to_dict()}}

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Draw the confusion matrix of the test split."""
        import numpy as np

        import plp_viz

        path = plp_viz.plot_confusion_matrix(
            np.asarray(self._confusion),
            plot_path("confusion_matrix.png"),
            class_names=context.data.class_names,
        )
        return {"confusion_matrix": path}
