"""The test pipeline: features of every split, metrics, plots, report — one consistent state.

Everything an evaluation writes (features, plots, ``metrics.json``, ``report.md``) is first
written to a staging folder inside the run and moved into place only when all of it is done, so
a failed or killed evaluation leaves the previous results as they were. ``metrics.json`` records
per method the checkpoint its numbers come from; evaluating another checkpoint drops the other
methods' numbers (and plots) of the previous checkpoint instead of showing them under its name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import plp_eval
import plp_viz
from plp_pipelines._config import METHODS, Config
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._features import SplitFeatures, extract_features, save_features
from plp_pipelines._protocols import check_datamodule, check_model, has_classifier
from plp_pipelines._report import write_report
from plp_pipelines._run import Run
from plp_pipelines._runs import RunPaths, atomic_write_json

__all__ = ["evaluate"]

# Plots each method draws (metrics.json "plots" keys), so a dropped method loses its plots too.
METHOD_PLOTS = {
    "accuracy": ("confusion_matrix",),
    "reid": ("cmc", "rank_list", "distances"),
    "clustering": (),
}
RANK_LIST_QUERIES = 8
RANK_LIST_TOP_K = 8
# UMAP needs a few neighbours per point; smaller splits get every metric but no UMAP plot.
UMAP_MIN_SAMPLES = 10


def evaluate(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    methods: Sequence[str] | None = None,
    runs_root: str | Path = "runs",
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    config: Config | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a run and return its metrics, also written to ``metrics.json``.

    Features of ``trainval`` and ``test`` are extracted with ``model.embed`` (on the GPU when
    the run trains on one) and saved to ``features/<split>.npz``; the chosen methods are
    computed on them: ``accuracy`` (classifier logits of the test split; a model without a
    classifier is scored by 1-nearest-neighbour in trainval), ``reid`` by ``[evaluate]
    protocol``: ``trainval_test`` (test = query, trainval = gallery), ``query_gallery`` (the
    datamodule's own query/gallery splits and cameras) or ``test_leave_one_out`` (each test
    image queries the rest of the test split), with k-reciprocal re-ranked numbers beside
    the plain ones when ``[evaluate] rerank``; and ``clustering`` (KMeans on the test features
    with the true number of classes). A 2-D UMAP of the test features is drawn to
    ``plots/umap_test.png``. Under ``torch.distributed`` every rank extracts a shard and ranks
    a share of the queries; rank 0 writes.

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
        on_metrics: Called with the metrics as soon as they are computed, before the plots
            (UMAP's first fit in a process takes seconds): the command line prints them then.
            Nothing is written until the plots are done too.

    Raises:
        ConfigError: An unknown method, or a model/datamodule lacking what evaluation needs.
        RunError: No such run or checkpoint, a checkpoint for other data, diverged features.
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
    check_model(model)
    datamodule = opened.build_datamodule(datamodule)
    check_datamodule(datamodule)
    datamodule.setup("test")
    _check_checkpoint_fits_data(model, datamodule, checkpoint_path)

    device = _evaluation_device(config)
    model.to(device)
    protocol = config.evaluate.protocol
    splits = ["trainval", "test"] + (["query", "gallery"] if protocol == "query_gallery" else [])
    features: dict[str, SplitFeatures] = {}
    for split in splits:
        features[split] = extract_features(model, datamodule.split_dataloader(split))
        _check_finite(features[split], split)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    writer = not distributed or torch.distributed.get_rank() == 0

    metrics: dict[str, Any] = {"checkpoint": checkpoint_path.name, "protocol": protocol}
    if "reid" in methods:  # every rank ranks its share of the queries
        metrics.update(_reid(features, config, device, distributed))
    if not writer:
        return {}
    if "accuracy" in methods:
        metrics["accuracy"] = _accuracy(features["trainval"], features["test"])
    if "clustering" in methods:
        metrics["clustering"] = _clustering(features["test"], config)
    for method in methods:
        metrics[method]["checkpoint"] = checkpoint_path.name
    if "reid_reranked" in metrics:
        metrics["reid_reranked"]["checkpoint"] = checkpoint_path.name
    if on_metrics is not None:
        on_metrics(metrics)

    stage = _Stage(paths)
    try:
        for split, split_features in features.items():
            save_features(stage.file(paths.features / f"{split}.npz"), split_features)
        plots = _plots(stage, metrics, features, datamodule, config, protocol)
        previous = _previous_metrics(paths)
        kept: dict[str, Any] = {
            method: previous[method]
            for method in METHODS
            if method not in methods and _from_checkpoint(previous.get(method), checkpoint_path)
        }
        if "reid" in kept and _from_checkpoint(previous.get("reid_reranked"), checkpoint_path):
            kept["reid_reranked"] = previous["reid_reranked"]
        kept_plots = {
            name: path
            for method in kept
            for name in METHOD_PLOTS.get(method, ())
            if (path := previous.get("plots", {}).get(name))
        }
        metrics = {**kept, **metrics, "plots": {**kept_plots, **plots}}
        metrics["data_pipeline"] = getattr(datamodule, "data_pipeline", None)
        class_names = getattr(datamodule, "class_names", None)
        metrics["class_names"] = list(class_names) if class_names is not None else None
        atomic_write_json(stage.file(paths.metrics), metrics)
        write_report(paths, config, metrics, out=RunPaths(stage.root))
        stale = [
            paths.root / path
            for name, path in previous.get("plots", {}).items()
            if name not in metrics["plots"] and isinstance(path, str)
        ]
        stage.commit(stale)
    finally:
        stage.discard()
    return metrics


class _Stage:
    """A staging folder inside the run, mirroring its layout; committed file by file."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self.root = paths.root / f".evaluate-{os.getpid()}"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir()

    def file(self, final: Path) -> Path:
        """Return the staged path of the run file ``final``."""
        staged = self.root / final.relative_to(self.paths.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def commit(self, stale: list[Path]) -> None:
        """Move every staged file into place (metrics and report last); remove ``stale``."""
        last = {self.root / self.paths.metrics.name, self.root / self.paths.report.name}
        staged = sorted(p for p in self.root.rglob("*") if p.is_file() and p not in last)
        for path in [*staged, *sorted(last)]:
            if path.exists():
                final = self.paths.root / path.relative_to(self.root)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
        for path in stale:
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        shutil.rmtree(self.root, ignore_errors=True)


def _evaluation_device(config: Config) -> torch.device:
    """Return the device to embed and rank on: the GPU where the run trains on one."""
    if config.trainer.accelerator != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _check_checkpoint_fits_data(model: Any, datamodule: Any, checkpoint: Path) -> None:
    """Raise RunError if the checkpoint was trained for other classes, channels or sizes."""
    hyper_parameters = getattr(model, "hparams", {})
    for key in ("num_classes", "in_channels", "image_size"):
        expected = getattr(datamodule, key, None)
        stored = hyper_parameters.get(key)
        if (
            expected is None
            or stored is None
            or (key == "num_classes" and not has_classifier(model))
        ):
            continue
        if list(np.atleast_1d(stored)) != list(np.atleast_1d(expected)):
            raise RunError(
                f"checkpoint {checkpoint} was trained with {key} = {stored!r}, but the run's data "
                f"has {key} = {expected!r}: evaluate it with the data it was trained on"
            )


def _check_finite(split: SplitFeatures, name: str) -> None:
    bad = int((~np.isfinite(split.features)).any(axis=1).sum())
    if bad:
        raise RunError(
            f"features of split {name!r} have {bad} rows with NaN or inf: "
            "the model probably diverged during training"
        )


def _previous_metrics(paths: RunPaths) -> dict[str, Any]:
    """Return the run's ``metrics.json``, or {} when there is none or it is not a JSON dict."""
    try:
        previous = json.loads(paths.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _from_checkpoint(section: Any, checkpoint: Path) -> bool:
    return isinstance(section, dict) and section.get("checkpoint") == checkpoint.name


def _accuracy(trainval: SplitFeatures, test: SplitFeatures) -> dict[str, Any]:
    """Return the accuracy metrics; the confusion matrix under ``_confusion``, for the plot."""
    if test.logits is not None:
        result = plp_eval.accuracy_metrics(test.logits, test.labels)
        source = "classifier"
    else:
        indices, _ = plp_eval.rank_lists(test.features, trainval.features, k=1)
        predictions = trainval.labels[indices[:, 0]]
        num_classes = int(max(trainval.labels.max(), test.labels.max())) + 1
        result = plp_eval.accuracy_metrics(predictions, test.labels, num_classes=num_classes)
        source = "1-nearest-neighbour in trainval"
    return {"source": source, **result.to_dict(), "_confusion": result.confusion_matrix}


def _clustering(test: SplitFeatures, config: Config) -> dict[str, Any]:
    classes = len(np.unique(test.labels))
    if len(test.labels) <= classes:
        return {"skipped": f"{len(test.labels)} test images for {classes} classes: too few"}
    return plp_eval.clustering_metrics(test.features, test.labels, seed=config.seed).to_dict()


def _query_gallery(protocol: str) -> tuple[str, str]:
    return {"query_gallery": ("query", "gallery"), "test_leave_one_out": ("test", "test")}.get(
        protocol, ("test", "trainval")
    )


def _reid(
    features: dict[str, SplitFeatures], config: Config, device: torch.device, distributed: bool
) -> dict[str, Any]:
    """Return ``{"reid": ..., "reid_reranked": ...}`` (the second with ``[evaluate] rerank``)."""
    settings = config.evaluate
    query_split, gallery_split = _query_gallery(settings.protocol)
    query, gallery = features[query_split], features[gallery_split]
    with_cameras = query.cameras is not None and gallery.cameras is not None
    common: dict[str, Any] = {
        "query_cameras": query.cameras if with_cameras else None,
        "gallery_cameras": gallery.cameras if with_cameras else None,
        "metric": settings.reid_metric,
        "max_rank": settings.max_rank,
        "query_in_gallery": settings.protocol == "test_leave_one_out",
    }
    arrays = (query.features, query.labels, gallery.features, gallery.labels)
    result = plp_eval.reid_metrics(*arrays, **common, device=device, distributed=distributed)
    described = {"metric": settings.reid_metric, "query": query_split, "gallery": gallery_split}
    output: dict[str, Any] = {"reid": {**described, **result.to_dict()}}
    output["reid"]["_result"] = result
    if settings.rerank:
        reranked = plp_eval.rerank_reid_metrics(
            *arrays,
            **common,
            k1=settings.rerank_k1,
            k2=settings.rerank_k2,
            lambda_value=settings.rerank_lambda,
            device=device if device.type == "cuda" else None,
        )
        output["reid_reranked"] = {
            **described,
            "k1": settings.rerank_k1,
            "k2": settings.rerank_k2,
            "lambda": settings.rerank_lambda,
            **reranked.to_dict(),
        }
    return output


def _plots(
    stage: _Stage,
    metrics: dict[str, Any],
    features: dict[str, SplitFeatures],
    datamodule: Any,
    config: Config,
    protocol: str,
) -> dict[str, str]:
    """Draw the plots of the computed methods into the stage; return name -> run-relative path."""
    paths = stage.paths
    class_names = getattr(datamodule, "class_names", None)
    plots: dict[str, Path] = {}
    if "accuracy" in metrics:
        accuracy = metrics["accuracy"]
        confusion = np.asarray(accuracy.pop("_confusion"))
        plots["confusion_matrix"] = plp_viz.plot_confusion_matrix(
            confusion,
            stage.file(paths.plots / "confusion_matrix.png"),
            class_names=class_names,
        )
    if "reid" in metrics:
        result = metrics["reid"].pop("_result")
        query_split, gallery_split = _query_gallery(protocol)
        plots.update(
            _reid_plots(stage, config, datamodule, result, features, query_split, gallery_split)
        )
    if config.evaluate.umap and len(features["test"].labels) >= UMAP_MIN_SAMPLES:
        test = features["test"]
        embedding = plp_viz.umap_2d(
            test.features, seed=config.seed, max_samples=config.evaluate.umap_max_samples
        )
        plots["umap"] = plp_viz.plot_embedding(
            embedding.points,
            test.labels[embedding.indices],
            stage.file(paths.plots / "umap_test.png"),
            title=f"{config.name}: test features (UMAP)",
            class_names=class_names,
        )
    return {name: str(Path(path).relative_to(stage.root)) for name, path in plots.items()}


def _reid_plots(
    stage: _Stage,
    config: Config,
    datamodule: Any,
    result: Any,
    features: dict[str, SplitFeatures],
    query_split: str,
    gallery_split: str,
) -> dict[str, Path]:
    """Draw the CMC curve, the rank lists of the worst and some random queries, the histogram."""
    paths = stage.paths
    query, gallery = features[query_split], features[gallery_split]
    class_names = getattr(datamodule, "class_names", None)
    leave_one_out = query_split == gallery_split
    plots: dict[str, Path] = {
        "cmc": plp_viz.plot_cmc(
            result.cmc,
            stage.file(paths.plots / "cmc.png"),
            max_rank=config.evaluate.max_rank,
            title=f"{config.name}: CMC ({query_split} vs {gallery_split})",
        )
    }
    average_precision = np.asarray(result.average_precision, dtype=np.float64)
    if np.isfinite(average_precision).any():
        num_worst = RANK_LIST_QUERIES // 2
        worst, random = plp_viz.rank_list_queries(
            average_precision,
            num_worst=num_worst,
            num_random=RANK_LIST_QUERIES - num_worst,
            seed=config.seed,
        )
        chosen = np.concatenate([worst, random])  # worst first, as plot_rank_list expects
        top_k = min(RANK_LIST_TOP_K, len(gallery.labels) - int(leave_one_out))
        indices, _ = plp_eval.rank_lists(
            query.features[chosen],
            gallery.features,
            k=top_k + int(leave_one_out),
            metric=config.evaluate.reid_metric,
        )
        if leave_one_out:  # a query is not its own match: drop it from its list
            indices = np.stack(
                [
                    row[row != query_index][:top_k]
                    for row, query_index in zip(indices, chosen, strict=True)
                ]
            )
        query_set = datamodule.split_dataloader(query_split).dataset
        gallery_set = datamodule.split_dataloader(gallery_split).dataset
        query_images = np.stack([np.asarray(query_set[int(i)][0]) for i in chosen])
        shown = np.unique(indices)  # load only the gallery images on show, re-indexed
        gallery_images = np.stack([np.asarray(gallery_set[int(i)][0]) for i in shown])
        plots["rank_list"] = plp_viz.plot_rank_list(
            query_images,
            query.labels[chosen],
            gallery_images,
            gallery.labels[shown],
            np.searchsorted(shown, indices),
            stage.file(paths.plots / "rank_list.png"),
            max_queries=len(chosen),
            worst_queries=len(worst),
            query_average_precision=average_precision[chosen],
            class_names=class_names,
            seed=config.seed,
        )
    if len(query.labels) >= 2:
        plots["distances"] = plp_viz.plot_distance_histogram(
            query.features,
            query.labels,
            stage.file(paths.plots / "distance_histogram.png"),
            metric=config.evaluate.reid_metric,
            seed=config.seed,
        )
    return plots
