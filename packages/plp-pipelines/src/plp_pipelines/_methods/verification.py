"""``verification``: the ROC of "same label" against the distance, a threshold at a target FMR."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod, junk_keys

__all__ = ["Verification"]

FMR_TARGETS = (1e-2, 1e-3, 1e-4)


@METHODS.register("verification", order=25, default=True)
class Verification(EvaluationMethod):
    """Verification over every query-gallery pair of ``[evaluate] protocol`` (junk left out).

    The operating points at FMR 1e-2, 1e-3, 1e-4 and ``[evaluate] target_fmr`` (where there
    are enough negative pairs), the EER, and with ``query_gallery`` open-set identification
    (DIR at FAR): see :func:`plp_eval.verification_metrics`. ``threshold`` (at ``target_fmr``)
    is what ``invoke search`` marks "no match" past.
    """

    plots = ("roc",)
    headline = (
        ("verification", "TPR@target_FMR", "verification TPR@FMR"),
        ("verification", "EER", "verification EER"),
    )

    def __init__(self) -> None:
        self._result: Any = None

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"verification": ...}``."""
        import plp_eval

        settings = context.config.evaluate
        query = context.features[context.query_split]
        gallery = context.features[context.gallery_split]
        target = settings.target_fmr
        self._result = plp_eval.verification_metrics(
            query.features,
            query.labels,
            gallery.features,
            gallery.labels,
            *junk_keys(query, gallery),  # as cameras: the whole junk rule
            metric=settings.reid_metric,
            query_in_gallery=settings.protocol == "test_leave_one_out",
            fmr_targets=sorted({*FMR_TARGETS, target}, reverse=True),
            open_set=settings.protocol == "query_gallery",
        )
        at_target = next((p for p in self._result.operating_points if p.target == target), None)
        section = {
            "query": context.query_split,
            "gallery": context.gallery_split,
            "target_FMR": target,
            "threshold": _finite(at_target.threshold) if at_target is not None else None,
            "TPR@target_FMR": at_target.true_rate if at_target is not None else None,
            **self._result.to_dict(),
        }
        return {"verification": section}

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Draw the ROC (log FMR) with its operating points."""
        import plp_viz

        result = self._result
        points = [(p.target, p.false_rate, p.true_rate) for p in result.operating_points]
        return {
            "roc": plp_viz.plot_roc(
                result.roc_fmr,
                result.roc_tpr,
                plot_path("roc.png"),
                operating_points=points,
                title=f"{context.config.name}: verification ROC "
                f"({context.query_split} vs {context.gallery_split}, EER {result.eer:.3f})",
            )
        }

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the report section: operating points, EER, open-set identification."""
        section = metrics.get("verification")
        if not isinstance(section, Mapping):
            return []
        lines = [
            "## Verification",
            "",
            f"Every {section['query']} x {section['gallery']} pair is a trial ("
            f"{section['positive_pairs']:,} positive, {section['negative_pairs']:,} negative, "
            "junk pairs left out); a pair is accepted when its distance is at most the "
            "threshold. EER "
            f"{section['EER']:.4f}.",
            "",
        ]
        if section["operating_points"]:
            lines += ["| target FMR | threshold | FMR | TPR |", "|---:|---:|---:|---:|"]
        else:
            lines.append(
                f"No operating point: a target FMR t needs at least 1 / t negative pairs "
                f'({section["negative_pairs"]:,} here); no "no match" threshold.'
            )
        for point in section["operating_points"]:
            threshold = point["threshold"]
            shown = f"{threshold:.6g}" if threshold is not None else "accept none"
            lines.append(
                f"| {point['target_FMR']:g} | {shown} | {point['FMR']:.2e} | {point['TPR']:.4f} |"
            )
        if section.get("threshold") is not None:
            lines += [
                "",
                f"`invoke search` marks results farther than {section['threshold']:.6g} "
                f'(the threshold at FMR {section["target_FMR"]:g}) as "no match".',
            ]
        open_set = section.get("open_set")
        if isinstance(open_set, Mapping):
            lines += ["", _open_set_line(open_set)]
        return [*lines, ""]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _open_set_line(open_set: Mapping[str, Any]) -> str:
    if not open_set["non_mated_queries"]:
        return (
            "Open-set identification: every query's identity is in the gallery "
            f"({open_set['mated_queries']} queries); DIR@FAR needs queries of absent identities."
        )
    points = ", ".join(
        f"DIR {p['DIR']:.4f} at FAR {p['FAR']:.3g} (target {p['target_FAR']:g})"
        for p in open_set["DIR@FAR"]
    )
    return (
        f"Open-set identification ({open_set['mated_queries']} queries of gallery identities, "
        f"{open_set['non_mated_queries']} of absent ones, which must be rejected): "
        f"{points or 'too few absent-identity queries for a FAR target'}."
    )
