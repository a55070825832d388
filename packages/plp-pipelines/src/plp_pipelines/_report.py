"""``report.md``: the page a person reads first, and the metrics table printed by the tasks."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plp_pipelines._config import Config
from plp_pipelines._intervals import with_interval
from plp_pipelines._runs import RunPaths, atomic_write_text

__all__ = [
    "format_metrics_table",
    "headline_entries",
    "headline_metrics",
    "plot_training_curves",
    "rank_list_files",
    "write_report",
]


def headline_metrics(
    metrics: dict[str, Any], methods: Sequence[str] | None = None
) -> list[tuple[str, float]]:
    """Return ``(label, value)`` for the headline numbers in ``metrics`` (of ``methods`` only).

    Each method states its own headline numbers; they come in the methods' report order.
    """
    return [(label, value) for _, _, label, value in headline_entries(metrics, methods)]


def headline_entries(
    metrics: dict[str, Any], methods: Sequence[str] | None = None
) -> list[tuple[str, str, str, float]]:
    """Return ``(section, key, label, value)`` of each number :func:`headline_metrics` gives."""
    from plp_pipelines._methods import available_methods, build_method

    rows = []
    for name in available_methods():
        if methods is not None and name not in methods:
            continue
        for section, key, label in build_method(name).headline:
            value = metrics.get(section, {}).get(key)
            if isinstance(value, int | float):
                rows.append((section, key, label, float(value)))
    return rows


def _method_sections(metrics: dict[str, Any]) -> list[str]:
    """Return the report sections the methods write of their own (in report order)."""
    from plp_pipelines._methods import available_methods, build_method

    lines: list[str] = []
    for name in available_methods():
        method = build_method(name)
        if any(section in metrics for section in method.sections):
            lines += method.report(metrics)
    return lines


def format_metrics_table(metrics: dict[str, Any], methods: Sequence[str] | None = None) -> str:
    """Return the headline metrics (of ``methods``, default all) as an aligned text table.

    A metric with a bootstrap interval (``metrics[section]["ci"]``) shows it after its value:
    ``reid mAP  0.8730 [0.8610, 0.8850]``.
    """
    rows = headline_entries(metrics, methods)
    if not rows:
        return "(no metrics)"
    width = max(len(label) for _, _, label, _ in rows)
    return "\n".join(
        f"{label:<{width}}  {with_interval(metrics, section, key, value)}"
        for section, key, label, value in rows
    )


def plot_training_curves(csv_path: Path, png_path: Path) -> Path | None:
    """Plot per-epoch losses, accuracies and retrieval metrics (``val/...``) from the CSV log."""
    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    series: dict[str, list[tuple[int, float]]] = {}
    retrieval = sorted({key for row in rows for key in row if key.startswith("val/")})
    for row in rows:
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", *retrieval):
            if row.get(key):
                series.setdefault(key, []).append((int(row["epoch"]), float(row[key])))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, points in series.items():
        axis = axes[0] if key.endswith("loss") else axes[1]
        epochs, values = zip(*points, strict=True)
        axis.plot(epochs, values, marker="o", markersize=3, label=key)
    for axis, title in zip(axes, ("loss", "accuracy and retrieval"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if axis.lines:  # an explicit place: loc="best" warns when its search is slow
            axis.legend(loc="upper right" if title == "loss" else "lower right")
    figure.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return png_path


def _training_curves(csv_path: Path, drawn: Path, png_path: Path) -> Path | None:
    """Return the run's training curves: ``drawn`` if no newer log exists, else drawn anew.

    An evaluation does not change the training log, so the figure training drew stands
    (matplotlib and its layout cost a few tenths of a second); a log written since (a
    resumed training) draws it again into ``png_path``.
    """
    if (
        csv_path.is_file()
        and drawn.is_file()
        and drawn.stat().st_mtime_ns >= csv_path.stat().st_mtime_ns
    ):
        return drawn
    return plot_training_curves(csv_path, png_path)


def _classes(names: Any) -> str:
    """Return the dataset's class names for the report (the first few), or 'unnamed'."""
    if not isinstance(names, list) or not names:
        return "unnamed (labels 0..N-1)"
    shown = ", ".join(f"`{name}`" for name in names[:12])
    return f"{len(names)}: {shown}{', ...' if len(names) > 12 else ''}"


def _selection_lines(paths: RunPaths, config: Config) -> list[str]:
    """Return the report lines saying what chose the best checkpoint and how weights trained."""
    import json

    try:
        info = json.loads(paths.run_info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    lines = []
    monitor, score = info.get("monitor"), info.get("best_score")
    if isinstance(monitor, str) and isinstance(score, int | float):
        lines.append(
            f"- best checkpoint chosen by `{monitor}` = {score:.4f} "
            f"(epoch {info.get('best_epoch', '?')}, {config.checkpoint.save_top_k} kept)"
        )
    elif info:
        lines.append("- best checkpoint: the last epoch (the run did not validate)")
    trainer = config.trainer
    if trainer.ema is not None:
        lines.append(
            f"- weights: exponential moving average (decay {trainer.ema}); validation, the "
            "checkpoints and this evaluation use the average"
        )
    if trainer.freeze_backbone_epochs:
        lines.append(
            f"- backbone frozen for the first {trainer.freeze_backbone_epochs} epoch(s), "
            "BatchNorm statistics too"
        )
    return lines


def rank_list_files(roots: Sequence[Path], plots: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rank list's rows by file (``rank_list.json``'s queries), or [] without files.

    Read from the first of ``roots`` that holds the file (the staged output, then the run).
    """
    import json

    relative = plots.get("rank_list_files")
    if not isinstance(relative, str):
        return []
    for root in roots:
        try:
            rows = json.loads((root / relative).read_text(encoding="utf-8"))["queries"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return rows if isinstance(rows, list) else []
    return []


def _rank_list_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Return the report's rank lists by file: each query's file, then its ranked files."""
    if not rows:
        return []
    lines = [
        "## Rank lists by file",
        "",
        "The queries of the rank list plot (worst first), each with its gallery files in rank "
        "order (✓ same label, ✗ not); paths are relative to the data root.",
        "",
    ]
    for row in rows:
        lines.append(
            f"- {row.get('kind', '')} query `{row.get('query')}` (label {row.get('label')}, "
            f"AP {float(row.get('AP', float('nan'))):.3f})"
        )
        lines += [
            f"  {rank}. {'✓' if item.get('match') else '✗'} `{item.get('path')}` "
            f"(label {item.get('label')})"
            for rank, item in enumerate(row.get("results", []), start=1)
        ]
    return [*lines, ""]


def write_report(
    paths: RunPaths, config: Config, metrics: dict[str, Any], out: RunPaths | None = None
) -> Path:
    """Write ``report.md`` (config summary, training curves, metrics, plots) and ``report.html``.

    Args:
        paths: The run (its logs are read from here).
        config: The run's config.
        metrics: What ``metrics.json`` holds.
        out: Where to write ``report.md`` and the training curves (a staging copy of the
            run's layout); the run itself by default.
    """
    out = out or paths
    curves = _training_curves(
        paths.logs / "csv" / "metrics.csv",
        paths.plots / "training_curves.png",
        out.plots / "training_curves.png",
    )
    terms = ", ".join(
        f"{term.weight:g} x {term.name}" if term.weight != 1 else term.name
        for term in config.loss.as_terms()
    )
    lines = [
        f"# {config.name} — {paths.root.name}",
        "",
        "## Recipe",
        "",
        f"- data: `{config.data.name}` {config.data.args or ''}",
        f"- model: `{config.model.backbone.name}` backbone, `{config.model.head.name}` head, "
        f"embedding size {config.model.embedding_size or 'the model default'}",
        f"- loss: {terms}",
        f"- optimizer: `{config.optimizer.name}` {config.optimizer.args or ''}; "
        f"scheduler: `{config.scheduler.name}`",
        f"- trainer: {config.trainer.epochs} epochs, seed {config.seed}, "
        f"{config.trainer.devices} x {config.trainer.accelerator}",
        f"- classes: {_classes(metrics.get('class_names'))}",
        f"- checkpoint evaluated: `checkpoints/{metrics.get('checkpoint', '?')}`",
        *_selection_lines(paths, config),
        f"- evaluation protocol: `{metrics.get('protocol', config.evaluate.protocol)}`; "
        f"training batches served by the `{metrics.get('data_pipeline') or 'workers'}` data path",
        "- full config: [config.toml](config.toml)",
        "",
        "## Metrics",
        "",
        "| metric | value [95% interval] |",
        "| --- | --- |",
        *(
            f"| {label} | {with_interval(metrics, section, key, value)} |"
            for section, key, label, value in headline_entries(metrics)
        ),
        "",
        "All numbers: [metrics.json](metrics.json). The same run on one interactive page: "
        "[report.html](report.html).",
        "",
        *_method_sections(metrics),
        *_rank_list_lines(rank_list_files([out.root, paths.root], metrics.get("plots", {}))),
    ]
    if curves is not None:
        lines += ["## Training", "", "![training curves](plots/training_curves.png)", ""]
    plots = metrics.get("plots", {})
    if plots:
        lines += ["## Plots", ""]
        lines += [f"- [{name}]({path})" for name, path in plots.items()]
        if "umap" in plots:
            lines += ["", f"![UMAP of the test features]({plots['umap']})"]
        lines.append("")
    atomic_write_text(out.report, "\n".join(lines))
    from plp_pipelines._report_html import write_html_report  # numpy, plp-viz: on first use

    write_html_report(paths, config, metrics, out=out)
    return out.report
