"""The test pipeline: features of every split, a 2-D UMAP, metrics, report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

import plp_eval
import plp_viz
from plp_pipelines._config import METHODS, Config
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._features import SplitFeatures, extract_features, save_features
from plp_pipelines._report import write_report
from plp_pipelines._run import Run
from plp_pipelines._runs import RunPaths, atomic_write_json

__all__ = ["evaluate"]


def evaluate(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    methods: Sequence[str] | None = None,
    runs_root: str | Path = "runs",
    model: pl.LightningModule | None = None,
    datamodule: Any = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Evaluate a run and return its metrics, also written to ``metrics.json``.

    Features of ``trainval`` and ``test`` are extracted with ``model.embed`` and saved to
    ``features/<split>.npz``; the chosen methods are computed on them: ``accuracy`` (classifier
    logits of the test split; a model without a classifier is scored by 1-nearest-neighbour in
    trainval), ``reid`` (test = query, trainval = gallery; with ``[evaluate] protocol =
    "query_gallery"`` the datamodule's own query/gallery splits and cameras) and ``clustering``
    (KMeans on the test features with the true number of classes). A 2-D UMAP of the test
    features is drawn to ``plots/umap_test.png``.

    Args:
        run: The run directory; the newest run under ``runs_root`` when None.
        checkpoint: A checkpoint to evaluate instead of the run's best (its run directory is
            the folder above ``checkpoints/``).
        methods: Subset of ``accuracy``, ``reid``, ``clustering``; defaults to the config's.
        runs_root: Folder holding the run directories.
        model: A model object whose weights are loaded from the checkpoint (for runs trained
            from objects rather than a config).
        datamodule: The datamodule to read the splits from instead of the config's.
        config: The run's config instead of the one saved in the run directory.
    """
    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    paths = opened.paths
    config = config or opened.config
    methods = list(methods or config.evaluate.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(
            f"--method {unknown[0]!r} is not a method; expected one of {', '.join(METHODS)}"
        )
    checkpoint_path = opened.checkpoint(checkpoint)
    model = opened.load_model(checkpoint_path, model)
    datamodule = opened.build_datamodule(datamodule)
    datamodule.setup("test")

    protocol = config.evaluate.protocol
    splits = ["trainval", "test"] + (["query", "gallery"] if protocol == "query_gallery" else [])
    features: dict[str, SplitFeatures] = {}
    for split in splits:
        loader = datamodule.split_dataloader(split)
        features[split] = extract_features(model, loader)
        _check_finite(features[split], split)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}  # every rank helped extract; rank 0 alone computes and writes
    for split, split_features in features.items():
        save_features(paths.features / f"{split}.npz", split_features)

    metrics: dict[str, Any] = _previous_metrics(paths)
    metrics["checkpoint"] = checkpoint_path.name
    plots: dict[str, str] = {}
    if "accuracy" in methods:
        metrics["accuracy"], confusion = _accuracy(features["trainval"], features["test"])
        plots["confusion_matrix"] = _relative(
            plp_viz.plot_confusion_matrix(confusion, paths.plots / "confusion_matrix.png"), paths
        )
    if "reid" in methods:
        query_split, gallery_split = (
            ("query", "gallery") if protocol == "query_gallery" else ("test", "trainval")
        )
        query, gallery = features[query_split], features[gallery_split]
        metrics["reid"], cmc = _reid(query, gallery, config)
        plots.update(
            _reid_plots(paths, config, datamodule, (query_split, query), (gallery_split, gallery))
        )
        plots["cmc"] = _relative(
            plp_viz.plot_cmc(
                cmc,
                paths.plots / "cmc.png",
                max_rank=config.evaluate.max_rank,
                title=f"{config.name}: CMC ({query_split} vs {gallery_split})",
            ),
            paths,
        )
    if "clustering" in methods:
        test = features["test"]
        metrics["clustering"] = plp_eval.clustering_metrics(
            test.features, test.labels, seed=config.trainer.seed
        ).to_dict()

    if config.evaluate.umap:
        test = features["test"]
        embedding = plp_viz.umap_2d(
            test.features, seed=config.trainer.seed, max_samples=config.evaluate.umap_max_samples
        )
        umap_path = paths.plots / "umap_test.png"
        plp_viz.plot_embedding(
            embedding.points,
            test.labels[embedding.indices],
            umap_path,
            title=f"{config.name}: test features (UMAP)",
        )
        plots["umap"] = str(umap_path.relative_to(paths.root))
    metrics["plots"] = {**metrics.get("plots", {}), **plots}
    atomic_write_json(paths.metrics, metrics)
    write_report(paths, config, metrics)
    return metrics


def resolve_checkpoint(paths: RunPaths, checkpoint: str | Path | None) -> Path:
    """Return ``checkpoint`` or the run's best checkpoint (transitional: use Run.checkpoint)."""
    return Run.open(paths.root).checkpoint(checkpoint)


def _check_finite(split: SplitFeatures, name: str) -> None:
    bad = int((~np.isfinite(split.features)).any(axis=1).sum())
    if bad:
        raise RunError(
            f"features of split {name!r} have {bad} rows with NaN or inf: "
            "the model probably diverged during training"
        )


def _previous_metrics(paths: RunPaths) -> dict[str, Any]:
    if not paths.metrics.is_file():
        return {}
    try:
        return dict(json.loads(paths.metrics.read_text()))
    except json.JSONDecodeError:
        return {}


def _relative(path: Path, paths: RunPaths) -> str:
    return str(path.relative_to(paths.root))


def _accuracy(trainval: SplitFeatures, test: SplitFeatures) -> tuple[dict[str, Any], np.ndarray]:
    if test.logits is not None:
        result = plp_eval.accuracy_metrics(test.logits, test.labels)
        return {"source": "classifier", **result.to_dict()}, result.confusion_matrix
    indices, _ = plp_eval.rank_lists(test.features, trainval.features, k=1)
    predictions = trainval.labels[indices[:, 0]]
    num_classes = int(max(trainval.labels.max(), test.labels.max())) + 1
    result = plp_eval.accuracy_metrics(predictions, test.labels, num_classes=num_classes)
    return (
        {"source": "1-nearest-neighbour in trainval", **result.to_dict()},
        result.confusion_matrix,
    )


RANK_LIST_QUERIES = 8
RANK_LIST_TOP_K = 8


def _reid_plots(
    paths: RunPaths,
    config: Config,
    datamodule: pl.LightningDataModule,
    query: tuple[str, SplitFeatures],
    gallery: tuple[str, SplitFeatures],
) -> dict[str, str]:
    """Draw the rank lists of a few seeded queries and the pair-distance histogram."""
    (query_split, query_features), (gallery_split, gallery_features) = query, gallery
    rng = np.random.default_rng(config.trainer.seed)
    count = min(RANK_LIST_QUERIES, len(query_features.labels))
    chosen = np.sort(rng.choice(len(query_features.labels), size=count, replace=False))
    indices, _ = plp_eval.rank_lists(
        query_features.features[chosen],
        gallery_features.features,
        k=min(RANK_LIST_TOP_K, len(gallery_features.labels)),
        metric=config.evaluate.reid_metric,
    )
    query_set = datamodule.split_dataloader(query_split).dataset  # type: ignore[attr-defined]
    gallery_set = datamodule.split_dataloader(gallery_split).dataset  # type: ignore[attr-defined]
    query_images = np.stack([np.asarray(query_set[int(i)][0]) for i in chosen])
    shown = np.unique(indices)  # load only the gallery images on show, re-indexed
    gallery_images = np.stack([np.asarray(gallery_set[int(i)][0]) for i in shown])
    rank_list = plp_viz.plot_rank_list(
        query_images,
        query_features.labels[chosen],
        gallery_images,
        gallery_features.labels[shown],
        np.searchsorted(shown, indices),
        paths.plots / "rank_list.png",
        max_queries=count,
    )
    histogram = plp_viz.plot_distance_histogram(
        query_features.features,
        query_features.labels,
        paths.plots / "distance_histogram.png",
        metric=config.evaluate.reid_metric,
        seed=config.trainer.seed,
    )
    return {"rank_list": _relative(rank_list, paths), "distances": _relative(histogram, paths)}


def _reid(
    query: SplitFeatures, gallery: SplitFeatures, config: Config
) -> tuple[dict[str, Any], np.ndarray]:
    with_cameras = query.cameras is not None and gallery.cameras is not None
    result = plp_eval.reid_metrics(
        query.features,
        query.labels,
        gallery.features,
        gallery.labels,
        query_cameras=query.cameras if with_cameras else None,
        gallery_cameras=gallery.cameras if with_cameras else None,
        metric=config.evaluate.reid_metric,
        max_rank=config.evaluate.max_rank,
    )
    return {"metric": config.evaluate.reid_metric, **result.to_dict()}, result.cmc
