"""Why the worst queries fail: their false top match and their best true match, explained.

For the queries of lowest AP under the run's protocol, the similarity of the query to its
best-ranked wrong gallery image and to its best-ranked match is attributed to both images
of each pair (:func:`plp_viz.explain_pairs`), drawn side by side in ``plots/pair_explain.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plp_pipelines._config import Config, override_config
from plp_pipelines._errors import RunError
from plp_pipelines._evaluate import weights_digest
from plp_pipelines._features import load_features
from plp_pipelines._methods import junk_keys, query_gallery_splits
from plp_pipelines._protocols import as_embedding_model, check_datamodule, check_model
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, atomic_write_json

__all__ = ["PAIR_EXPLAIN", "PAIR_QUERIES", "explain_pairs"]

PAIR_QUERIES = 4
"""Worst queries explained by default."""

PAIR_EXPLAIN = "pair_explain"
"""Stem of the plot and of its record (``plots/pair_explain.png``, ``.json``)."""


def explain_pairs(
    run: str | Path | None = None,
    *,
    queries: int | None = None,
    algorithm: str | None = None,
    layer: str | None = None,
    checkpoint: str | Path | None = None,
    runs_root: str | Path = RUNS_ROOT,
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Explain the worst queries' false top match and best true match; return the PNG's path.

    The queries are those of lowest AP (``reid_metrics`` on the run's saved features, by
    ``[evaluate] protocol`` and ``reid_metric``: the numbers of ``metrics.json``); for each, the
    best-ranked gallery image of another label and the best-ranked one of its label, under the
    metrics' junk rule (:func:`plp_eval.query_pairs`). Each pair's similarity (cosine, or minus
    the L2 distance) is attributed to the query with the gallery image fixed and to the gallery
    image with the query fixed, by ``algorithm`` (default ``[explain] algorithm``). Writes
    ``plots/pair_explain.png`` and ``plots/pair_explain.json`` (the pairs and the checkpoint),
    and refreshes ``report.html``.

    Args:
        run: The run directory; the newest run when None.
        queries: How many of the worst queries (default :data:`PAIR_QUERIES`).
        algorithm: A name from ``plp_viz.available_attributions()``.
        layer: Dotted module name for layer methods (default: the last ``Conv2d``).
        checkpoint: A checkpoint instead of the run's best (its features are recomputed by
            ``invoke evaluate --checkpoint`` first).
        runs_root: Folder holding the run directories.
        model: A model object to load the checkpoint's weights into.
        datamodule: The datamodule whose loaders give the images.
        overrides: ``explain.key=value`` settings for this call only (``--set``). The
            ``[evaluate]`` settings are those ``metrics.json``'s reid numbers were computed
            with (the run's, with the overrides its evaluation recorded), not changeable here.

    Raises:
        ConfigError: An override outside ``[explain]``, an unknown key or a bad value.
        RunError: No features yet (run ``invoke evaluate`` first) or no query with both a
            wrong item and a match.
    """
    import plp_eval
    import plp_viz
    from plp_pipelines._explain import EXPLAIN_SECTIONS, _embedding_with_gradients
    from plp_pipelines._report_html import write_html_report

    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    paths = opened.paths
    config = override_config(opened.config, overrides, EXPLAIN_SECTIONS, "explain")
    config = _as_evaluated(config, paths.metrics)
    settings = config.evaluate
    count = queries or PAIR_QUERIES
    query_split, gallery_split = query_gallery_splits(settings.protocol)
    query = load_features(paths.features / f"{query_split}.npz")
    gallery = load_features(paths.features / f"{gallery_split}.npz")
    query_keys, gallery_keys = junk_keys(query, gallery)  # the whole junk rule: cameras, groups
    junk: dict[str, Any] = {
        "query_cameras": query_keys,
        "gallery_cameras": gallery_keys,
        "query_in_gallery": settings.protocol == "test_leave_one_out",
    }
    arrays = (query.features, query.labels, gallery.features, gallery.labels)
    result = plp_eval.reid_metrics(*arrays, metric=settings.reid_metric, **junk)
    average_precision = np.asarray(result.average_precision, dtype=np.float64)
    pairs = [
        pair
        for pair in plp_eval.query_pairs(
            *arrays,
            np.argsort(average_precision, kind="stable"),
            metric=settings.reid_metric,
            **junk,
        )
        if pair.false_match is not None and pair.true_match is not None
    ][:count]
    if not pairs:
        raise RunError(f"no query of {paths.root} has both a wrong gallery item and a match")

    network = opened.load_model(checkpoint, model).eval()
    explained = as_embedding_model(network)
    check_model(network)
    datamodule = opened.build_datamodule(datamodule)
    data = check_datamodule(datamodule)
    datamodule.setup("test")
    query_set = datamodule.split_dataloader(query_split).dataset
    gallery_set = datamodule.split_dataloader(gallery_split).dataset

    def images(dataset: Any, rows: list[int]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(dataset[row][0]) for row in rows])

    rows = [pair.query for pair in pairs for _ in range(2)]
    others = [
        int(row) for pair in pairs for row in (pair.false_match, pair.true_match) if row is not None
    ]
    query_images = images(query_set, rows)
    gallery_images = images(gallery_set, others)
    attributions = plp_viz.explain_pairs(
        network,
        query_images,
        gallery_images,
        algorithm=algorithm or config.explain.algorithm,
        metric=settings.reid_metric,
        layer=layer if layer is not None else config.explain.layer,
        output=_embedding_with_gradients(explained),
    )
    captions = [
        text
        for pair in pairs
        for text in (
            f"false, rank {pair.false_rank} (AP {average_precision[pair.query]:.2f})",
            f"true match, rank {pair.true_rank}",
        )
    ]
    path = plp_viz.plot_pair_attributions(
        query_images,
        gallery_images,
        attributions,
        paths.plots / f"{PAIR_EXPLAIN}.png",
        query_labels=query.labels[rows].tolist(),
        gallery_labels=gallery.labels[others].tolist(),
        captions=captions,
        class_names=data.class_names,
    )
    atomic_write_json(
        paths.plots / f"{PAIR_EXPLAIN}.json",
        {
            "checkpoint": opened.checkpoint(checkpoint).name,
            "weights_sha256": weights_digest(network),
            "metric": settings.reid_metric,
            "query_split": query_split,
            "gallery_split": gallery_split,
            "pairs": [
                {
                    "query": pair.query,
                    "average_precision": float(average_precision[pair.query]),
                    "false_match": pair.false_match,
                    "false_rank": pair.false_rank,
                    "true_match": pair.true_match,
                    "true_rank": pair.true_rank,
                }
                for pair in pairs
            ],
        },
    )
    write_html_report(paths, config)
    return path


def _as_evaluated(config: Config, metrics: Path) -> Config:
    """Return ``config`` with the ``--set`` overrides its reid numbers were computed with.

    What is drawn follows the metrics: ``invoke evaluate --set evaluate.reid_metric=cosine``
    records the override in ``metrics.json``'s ``reid`` section, and the pairs rank by it too.
    """
    try:
        recorded = json.loads(metrics.read_text(encoding="utf-8"))["reid"].get("overrides", [])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return config  # no reid numbers yet: the features' own check says so
    if not isinstance(recorded, list) or not all(isinstance(item, str) for item in recorded):
        return config
    return override_config(config, recorded, ("evaluate",), "evaluate")
