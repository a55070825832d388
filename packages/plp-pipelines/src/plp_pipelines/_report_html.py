"""``report.html``: the run on one self-contained page (images and scripts inlined, no network).

Beside ``report.md``: the recipe, the metrics (with confidence intervals where computed), the
training curves, an interactive UMAP of the test features (hover: thumbnail and label; click:
that image's rank list), the worst queries' rank lists and pairwise explanations, the audit
lists and the ROC when present. For data with files the rank lists name each image's file.
Parts drawn by other commands are read from the run (``plots/umap_test.html``,
``plots/audit.html``, ``plots/pair_explain.png``), so every command that changes them can
rewrite the page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plp_pipelines._config import Config
from plp_pipelines._runs import RunPaths, atomic_write_text

if TYPE_CHECKING:
    from plp_pipelines._methods import EvaluationContext

__all__ = [
    "REPORT_HTML",
    "REPORT_POINTS",
    "RANK_LIST_LENGTH",
    "THUMBNAIL_SIDE",
    "draw_interactive_umap",
    "write_html_report",
]

REPORT_HTML = "report.html"
REPORT_POINTS = 600
"""The interactive UMAP shows at most this many test images (a seeded sample beyond)."""
RANK_LIST_LENGTH = 5
"""Gallery images in each clickable rank list."""
THUMBNAIL_SIDE = 32
"""Longest side of a thumbnail in pixels (photographs as JPEG, grey images as PNG)."""

# Plots shown in their own sections; every other plot image goes under "More plots".
_PLACED = {"training_curves", "umap", "umap_html", "rank_list", "audit", "audit_html"}
_PLACED |= {"audit_lists", "roc"}


def _thumbnail(image: Any) -> str:
    import plp_viz

    array = np.asarray(image)
    colour = array.ndim == 3 and array.shape[0] == 3
    return plp_viz.image_uri(
        array, max_side=THUMBNAIL_SIDE, image_format="jpeg" if colour else "png"
    )


def draw_interactive_umap(context: EvaluationContext, embedding: Any, path: Path) -> Path:
    """Write the UMAP of the test features as a report.html part; return ``path``.

    Each point's tooltip shows its thumbnail and label; a click opens its rank list: the
    test image as a query against the protocol's gallery, under the metrics' junk rule.
    """
    import plp_viz
    from plp_pipelines._methods.audit import label_name

    config = context.config
    test = context.features["test"]
    rows = np.asarray(embedding.indices)
    points = np.asarray(embedding.points)
    if len(rows) > REPORT_POINTS:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(rows), REPORT_POINTS, False))
        rows, points = rows[keep], points[keep]
    gallery = context.features[context.gallery_split]
    ranked = _rank_lists(context, rows)
    test_set = context.datamodule.split_dataloader("test").dataset
    gallery_set = context.datamodule.split_dataloader(context.gallery_split).dataset
    thumbs = [_thumbnail(test_set[int(row)][0]) for row in rows]
    shown = np.unique(ranked[ranked >= 0])
    gallery_thumbs = {int(i): _thumbnail(gallery_set[int(i)][0]) for i in shown}
    names = context.data.class_names
    anchors = [f"query-{int(row)}" for row in rows]
    query_files, gallery_files = None, None  # data with files: named by file, else by row
    if test.paths is not None and gallery.paths is not None:
        query_files = [str(test.paths[row]) for row in rows]
        gallery_files = [[str(gallery.paths[i]) for i in line if i >= 0] for line in ranked]
    captions = query_files or [f"test[{int(row)}]" for row in rows]
    figure = plp_viz.interactive_embedding(
        points,
        test.labels[rows],
        thumbs,
        links=[f"#{anchor}" for anchor in anchors],
        captions=captions,
        class_names=names,
    )
    lists = plp_viz.html_rank_lists(
        anchors,
        thumbs,
        test.labels[rows].tolist(),
        [[gallery_thumbs[int(i)] for i in line if i >= 0] for line in ranked],
        [[int(gallery.labels[i]) for i in line if i >= 0] for line in ranked],
        titles=[
            f"{caption} ({label_name(int(test.labels[row]), names)}): its first "
            f"{RANK_LIST_LENGTH} in {context.gallery_split}"
            for caption, row in zip(captions, rows, strict=True)
        ],
        class_names=names,
        query_files=query_files,
        gallery_files=gallery_files,
    )
    text = (
        f"<p>{len(rows)} of {len(test.labels)} test images (at most {REPORT_POINTS}); "
        "hover a point for its image, click it for its rank list.</p>" + figure.to_html() + lists
    )
    atomic_write_text(path, text)
    return path


def _rank_lists(context: EvaluationContext, rows: np.ndarray) -> np.ndarray:
    """Return the first :data:`RANK_LIST_LENGTH` gallery items of each test row (-1: none).

    As the metrics rank (``plp_eval.protocol_rank_lists``): the gallery by distance, the
    junk rule applied (the query itself under leave-one-out; same label and camera with
    cameras).
    """
    from plp_pipelines._methods.reid import protocol_lists

    test = context.features["test"]
    gallery = context.features[context.gallery_split]
    return np.asarray(protocol_lists(context.config, test, gallery, rows, RANK_LIST_LENGTH))


def _metrics_rows(metrics: Mapping[str, Any]) -> list[str]:
    """Return table rows of the headline metrics, each with its confidence interval if any."""
    from plp_pipelines._report import headline_entries

    rows = []
    for section, key, label, value in headline_entries(dict(metrics)):
        bounds = _interval(metrics.get(section, {}), key)
        ci = f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if isinstance(bounds, list | tuple) else ""
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{value:.4f}</td><td>{ci}</td></tr>")
    return rows


def _interval(section: Any, key: str) -> Any:
    """Return ``[low, high]`` of ``key`` from a section's ``ci`` (or its ``bootstrap``'s), if any.

    plp-eval's bootstrap writes ``{"ci": {metric: [low, high]}, ...}``; a method stores it in
    its section directly or under ``bootstrap``.
    """
    if not isinstance(section, dict):
        return None
    for holder in (section, section.get("bootstrap")):
        if isinstance(holder, dict) and isinstance(holder.get("ci"), dict):
            return holder["ci"].get(key)
    return None


class _Files:
    """Reads a run file from the staged output first, then from the run."""

    def __init__(self, paths: RunPaths, out: RunPaths) -> None:
        self.roots = [out.root, paths.root]

    def find(self, relative: str) -> Path | None:
        for root in self.roots:
            if (root / relative).is_file():
                return root / relative
        return None

    def image(self, relative: str, alt: str) -> str:
        import plp_viz

        path = self.find(relative)
        if path is None or path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg"):
            return ""
        return f'<img class="plot" alt="{html.escape(alt)}" src="{plp_viz.file_uri(path)}">'

    def text(self, relative: str) -> str:
        path = self.find(relative)
        return path.read_text(encoding="utf-8") if path is not None else ""


def write_html_report(
    paths: RunPaths,
    config: Config,
    metrics: Mapping[str, Any] | None = None,
    out: RunPaths | None = None,
) -> Path:
    """Write ``report.html`` (one self-contained file) beside ``report.md``; return its path.

    Args:
        paths: The run.
        config: Its config.
        metrics: What ``metrics.json`` holds (read from the run when None).
        out: Where to write (a staging copy of the run's layout); the run itself by default.
    """
    import plp_viz

    out = out or paths
    if metrics is None:
        try:
            metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
    files = _Files(paths, out)
    plots: dict[str, str] = dict(metrics.get("plots", {}))
    title = f"{config.name} — {paths.root.name}"
    parts = [f"<h1>{html.escape(title)}</h1>", _recipe(config, metrics)]
    parts += [
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>95% CI</th></tr>",
        *_metrics_rows(metrics),
        "</table><p>All numbers: <code>metrics.json</code>.</p>",
    ]
    curves = files.image("plots/training_curves.png", "training curves")
    if curves:
        parts += ["<h2>Training</h2>", curves]
    umap = files.text(plots["umap_html"]) if "umap_html" in plots else ""
    if umap:
        parts += ["<h2>Test features (UMAP)</h2>", umap]
    parts += _worst_queries(files, plots, metrics)
    if "audit_html" in plots:
        parts.append(files.text(plots["audit_html"]))
    if "roc" in plots:
        parts += ["<h2>ROC</h2>", files.image(plots["roc"], "ROC")]
    more = [
        files.image(path, name)
        for name, path in plots.items()
        if name not in _PLACED and not (name == "umap" and umap)
    ]
    if any(more):
        parts += ["<h2>More plots</h2>", *[m for m in more if m]]
    page = plp_viz.html_page(title, [part for part in parts if part])
    target = out.root / REPORT_HTML
    atomic_write_text(target, page)
    return target


def _recipe(config: Config, metrics: Mapping[str, Any]) -> str:
    terms = ", ".join(
        f"{term.weight:g} x {term.name}" if term.weight != 1 else term.name
        for term in config.loss.as_terms()
    )
    items = [
        f"data: {config.data.name} {config.data.args or ''}",
        f"model: {config.model.backbone.name} backbone, {config.model.head.name} head, "
        f"embedding size {config.model.embedding_size or 'the model default'}",
        f"loss: {terms}",
        f"optimizer: {config.optimizer.name} {config.optimizer.args or ''}; "
        f"scheduler: {config.scheduler.name}",
        f"trainer: {config.trainer.epochs} epochs, seed {config.seed}, "
        f"{config.trainer.devices} x {config.trainer.accelerator}",
        f"checkpoint evaluated: checkpoints/{metrics.get('checkpoint', '?')}",
        f"evaluation protocol: {metrics.get('protocol', config.evaluate.protocol)}",
    ]
    return "<h2>Recipe</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Return whether two records come from the same weights (by name for records before sha256)."""
    if a.get("weights_sha256") and b.get("weights_sha256"):
        return bool(a["weights_sha256"] == b["weights_sha256"])
    return bool(a.get("checkpoint") == b.get("checkpoint"))


def _rank_list_table(rows: list[dict[str, Any]]) -> str:
    """Return the rank list plot's rows by file as a table (empty without files)."""
    if not rows:
        return ""
    lines = ["<table><tr><th>query</th><th>label</th><th>AP</th><th>ranked files</th></tr>"]
    for row in rows:
        ranked = "".join(
            f"<li>{'✓' if item.get('match') else '✗'} <code>{html.escape(str(item.get('path')))}"
            f"</code> ({html.escape(str(item.get('label')))})</li>"
            for item in row.get("results", [])
        )
        lines.append(
            f"<tr><td>{html.escape(str(row.get('kind', '')))}: "
            f"<code>{html.escape(str(row.get('query')))}</code></td>"
            f"<td>{html.escape(str(row.get('label')))}</td>"
            f"<td>{float(row.get('AP', float('nan'))):.3f}</td><td><ol>{ranked}</ol></td></tr>"
        )
    return "".join(lines) + "</table>"


def _worst_queries(
    files: _Files, plots: Mapping[str, str], metrics: Mapping[str, Any]
) -> list[str]:
    """Return the worst queries' section: their rank lists and pairwise explanations."""
    from plp_pipelines._report import rank_list_files

    parts = []
    if "rank_list" in plots:
        parts.append(files.image(plots["rank_list"], "rank lists of the worst queries"))
        parts.append(_rank_list_table(rank_list_files(files.roots, dict(plots))))
    record = files.text("plots/pair_explain.json")
    try:
        explained = json.loads(record) if record else {}
    except ValueError:
        explained = {}
    if _same_weights(explained, metrics):
        parts += [
            "<h3>Why they fail: false top match and best true match, explained</h3>",
            files.image("plots/pair_explain.png", "pairwise explanations"),
        ]
    return ["<h2>Worst queries</h2>", *parts] if parts else []
