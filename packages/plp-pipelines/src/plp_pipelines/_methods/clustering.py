"""``clustering``: KMeans on the test features with the true number of classes."""

from __future__ import annotations

from typing import Any

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod

__all__ = ["Clustering"]


@METHODS.register("clustering", order=30, default=True)
class Clustering(EvaluationMethod):
    """NMI, AMI, ARI, purity, ... of KMeans on the test features (k = the true class count)."""

    headline = (
        ("clustering", "nmi", "clustering NMI"),
        ("clustering", "ari", "clustering ARI"),
    )

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"clustering": ...}``, or a ``skipped`` note for too few test images."""
        import numpy as np

        import plp_eval

        test = context.features["test"]
        classes = len(np.unique(test.labels))
        if len(test.labels) <= classes:
            return {
                "clustering": {
                    "skipped": f"{len(test.labels)} test images for {classes} classes: too few"
                }
            }
        result = plp_eval.clustering_metrics(test.features, test.labels, seed=context.config.seed)
        return {"clustering": result.to_dict()}
