"""``clustering``: KMeans on the test features with the true number of classes."""

from __future__ import annotations

from collections.abc import Mapping
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

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the line saying how the clusters were found."""
        section = metrics.get("clustering")
        if not isinstance(section, Mapping) or "n_init" not in section:
            return []
        return [
            f"- clustering: KMeans with k = {section.get('num_clusters')} (the test classes), "
            f"the best (least inertia) of {section['n_init']} seeded runs",
            "",
        ]
