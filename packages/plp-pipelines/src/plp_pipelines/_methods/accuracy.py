"""``accuracy``: top-k of the classifier on the test split (1-nearest-neighbour without one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod

if TYPE_CHECKING:
    from plp_pipelines._features import SplitFeatures

__all__ = ["Accuracy", "score"]


def score(trainval: SplitFeatures, test: SplitFeatures) -> tuple[Any, str]:
    """Return the test split's ``plp_eval.AccuracyMetrics`` and where the predictions come from.

    The classifier's logits when the features have them, else each test image's nearest
    trainval image's label (1-nearest-neighbour, Euclidean).
    """
    import plp_eval

    if test.logits is not None:
        return plp_eval.accuracy_metrics(test.logits, test.labels), "classifier"
    indices, _ = plp_eval.rank_lists(test.features, trainval.features, k=1)
    predictions = trainval.labels[indices[:, 0]]
    num_classes = int(max(trainval.labels.max(), test.labels.max())) + 1
    result = plp_eval.accuracy_metrics(predictions, test.labels, num_classes=num_classes)
    return result, "1-nearest-neighbour in trainval"


@METHODS.register("accuracy", order=10, default=True)
class Accuracy(EvaluationMethod):
    """Accuracy of the test split: the classifier's logits, or 1-NN in trainval without one.

    A model without a classifier predicts the label of each test image's nearest trainval
    image (Euclidean), so embedding-only models get an accuracy too. With ``[evaluate]
    bootstrap`` the top-k values get percentile bootstrap intervals over the test classes.
    """

    plots = ("confusion_matrix",)
    headline = (("accuracy", "top-1", "accuracy (top-1)"),)

    def __init__(self) -> None:
        self._confusion: Any = None

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"accuracy": ...}`` with bootstrap intervals over the test classes.

        The confusion matrix is kept for :meth:`draw`.
        """
        from plp_pipelines._intervals import interval_section

        result, source = score(context.features["trainval"], context.features["test"])
        self._confusion = result.confusion_matrix
        settings, seed = context.config.evaluate, context.config.seed
        intervals = interval_section(result, settings.bootstrap, seed)[0]
        return {"accuracy": {"source": source, **result.to_dict(), **intervals}}

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

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the line saying how the accuracy intervals were made (over test classes)."""
        from plp_pipelines._intervals import interval_lines

        section = metrics.get("accuracy")
        if not isinstance(section, Mapping):
            return []
        note = "; the identities are the test classes (rough with few classes)"
        lines = interval_lines(section, "accuracy intervals", note)
        return [*lines, ""] if lines else []
