"""Confidence intervals and breakdowns in ``metrics.json``, and how the tables print them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BREAKDOWN_CLASSES",
    "class_rows",
    "interval_lines",
    "interval_section",
    "interval_text",
    "reid_report",
    "with_interval",
]

BREAKDOWN_CLASSES = 10  # the worst and the best classes the report names


def interval_section(result: Any, resamples: int, seed: int) -> tuple[dict[str, Any], Any]:
    """Return the ``metrics.json`` entries of a result's bootstrap intervals, and the bootstrap.

    ``{"ci": {metric: [low, high]}, "num_identities": K, "bootstrap": {...}}`` (the method,
    resamples, confidence and seed) with the ``plp_eval.BootstrapResult``; with
    ``resamples = 0`` nothing; with fewer than two identities ``"ci": None`` and the reason.
    """
    import plp_eval

    if resamples == 0:
        return {}, None
    table = result.per_query()
    identities = len(set(table.identities[table.valid].tolist()))
    if identities < 2:
        reason = f"{identities} identity with a valid query: no interval"
        return {"ci": None, "num_identities": identities, "ci_skipped": reason}, None
    bootstrap = plp_eval.bootstrap(result, resamples=resamples, seed=seed)
    settings = bootstrap.to_dict()
    intervals = settings.pop("ci")
    entries = {"ci": intervals, "num_identities": settings.pop("num_identities")}
    return {**entries, "bootstrap": settings}, bootstrap


def interval_text(interval: Any) -> str:
    """Return ``" [low, high]"`` for a ``[low, high]`` pair, else ``""``."""
    if isinstance(interval, Sequence) and len(interval) == 2:
        return f" [{float(interval[0]):.4f}, {float(interval[1]):.4f}]"
    return ""


def with_interval(metrics: Mapping[str, Any], section: str, key: str, value: float) -> str:
    """Return ``value`` with its interval from ``metrics[section]["ci"][key]``, if any.

    >>> with_interval({"reid": {"ci": {"mAP": [0.861, 0.885]}}}, "reid", "mAP", 0.873)
    '0.8730 [0.8610, 0.8850]'
    """
    intervals = metrics.get(section, {}).get("ci")
    interval = intervals.get(key) if isinstance(intervals, Mapping) else None
    return f"{value:.4f}{interval_text(interval)}"


def class_rows(result: Any, class_names: Sequence[str] | None) -> dict[str, Any]:
    """Return the ``per_class_ap`` entry: the worst and best classes by mean AP, by name."""
    import plp_eval

    classes = plp_eval.class_average_precision(result)
    rows = classes.to_rows(class_names)
    if len(rows) <= 2 * BREAKDOWN_CLASSES:  # every class, worst first: no overlap to show
        worst, _ = classes.extremes(len(rows))
        return {"num_classes": len(rows), "worst": [rows[i] for i in worst], "best": []}
    worst, best = classes.extremes(BREAKDOWN_CLASSES)
    return {
        "num_classes": len(rows),
        "worst": [rows[i] for i in worst],
        "best": [rows[i] for i in best],
    }


def interval_lines(section: Mapping[str, Any], what: str, note: str = "") -> list[str]:
    """Return the report line saying how a section's intervals were made (or why none).

    >>> interval_lines({"num_identities": 10, "bootstrap": {"method": "percentile bootstrap",
    ...     "resamples": 1000, "seed": 0}}, "intervals", "; gallery fixed")
    ['- intervals: 95% percentile bootstrap (10 identities, 1000 resamples, seed 0); gallery fixed']
    """
    settings = section.get("bootstrap")
    if isinstance(settings, Mapping):
        return [
            f"- {what}: {settings.get('confidence', 0.95):.0%} {settings.get('method')} "
            f"({section.get('num_identities')} identities, {settings.get('resamples')} "
            f"resamples, seed {settings.get('seed')}){note}"
        ]
    return [f"- {what}: {section['ci_skipped']}"] if section.get("ci_skipped") else []


def reid_report(metrics: Mapping[str, Any]) -> list[str]:
    """Return the report's re-ID lines: how intervals are made, classes, cameras, categories."""
    reid = metrics.get("reid")
    if not isinstance(reid, Mapping):
        return []
    lines = ["## Re-identification", ""]
    lines += interval_lines(reid, "intervals", "; the gallery held fixed")
    cameras = reid.get("camera_map")
    if isinstance(cameras, Mapping):
        lines.append(
            "- mAP by query camera x gallery camera: plots/camera_map.png (same-camera cells "
            "are empty: the protocol leaves those matches out)"
        )
    lines.append("")
    classes = reid.get("per_class_ap")
    if isinstance(classes, Mapping) and classes.get("worst"):
        lines += _class_table(classes)
    categories = reid.get("per_category")
    if isinstance(categories, Mapping) and categories:
        lines += [
            "### By category",
            "",
            "| category | queries | rank-1 | mAP |",
            "| --- | --- | --- | --- |",
        ]
        for name, values in categories.items():
            rank_1, average = values.get("rank-1", float("nan")), values.get("mAP", float("nan"))
            lines.append(f"| {name} | {values.get('num_queries')} | {rank_1:.4f} | {average:.4f} |")
        lines.append("")
    return lines


def _class_table(classes: Mapping[str, Any]) -> list[str]:
    """Return the Markdown table of the worst and the best classes side by side (or all)."""
    worst, best = classes["worst"], classes.get("best", [])
    if not best:
        return [
            f"### Classes by AP (all {len(worst)}, worst first)",
            "",
            "| class | mAP | queries |",
            "| --- | --- | --- |",
            *(f"| {row['name']} | {row['mAP']:.4f} | {row['queries']} |" for row in worst),
            "",
        ]
    lines = [
        f"### Classes by AP ({len(worst)} worst and best of {classes.get('num_classes')})",
        "",
        "| worst class | mAP | queries | best class | mAP | queries |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for low, high in zip(worst, best, strict=False):
        lines.append(
            f"| {low['name']} | {low['mAP']:.4f} | {low['queries']} "
            f"| {high['name']} | {high['mAP']:.4f} | {high['queries']} |"
        )
    return [*lines, ""]
