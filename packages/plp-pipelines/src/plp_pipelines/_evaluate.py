"""The test pipeline: features of every split, metrics, plots, report — one consistent state.

Everything an evaluation writes (features, plots, ``metrics.json``, ``report.md``) is first
written to a staging folder inside the run and committed only when all of it is done
(``_staging``), so a failed, stopped or killed evaluation leaves the previous results as they
were. ``metrics.json`` records per method the checkpoint its numbers come from, by name and by
content (the sha256 of its weights): evaluating another checkpoint — another run's
``last.ckpt`` too — drops the other methods' numbers (and plots) of the previous one instead
of showing them under its name. SIGTERM or Ctrl-C stops an evaluation with one line
(``StoppedError``) and nothing written.

What each method computes, draws and reports is the method's own (``plp_pipelines._methods``);
this module extracts the features, runs the chosen methods and writes one consistent state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import plp_viz
from plp_pipelines._compile import compile_model
from plp_pipelines._config import Config, override_config
from plp_pipelines._devices import evaluation_device
from plp_pipelines._errors import RunError
from plp_pipelines._features import SplitFeatures, extract_features, save_features
from plp_pipelines._methods import (
    EvaluationContext,
    EvaluationMethod,
    available_methods,
    build_method,
    check_methods,
)
from plp_pipelines._protocols import (
    DataFacts,
    ModelFacts,
    as_embedding_model,
    check_datamodule,
    check_model,
)
from plp_pipelines._report import write_report
from plp_pipelines._report_html import draw_interactive_umap
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, RunPaths, atomic_write_json
from plp_pipelines._staging import Stage
from plp_pipelines._stopping import stop_on_signals

__all__ = ["evaluate"]

# UMAP needs a few neighbours per point; smaller splits get every metric but no UMAP plot.
UMAP_MIN_SAMPLES = 10
UMAP_PLOTS = ("umap", "umap_html")  # the metrics.json plots keys of the UMAP
SIZE_KEYS = ("num_classes", "in_channels", "image_size")


def evaluate(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    methods: Sequence[str] | None = None,
    runs_root: str | Path = RUNS_ROOT,
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    config: Config | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    umap: bool | None = None,
    output: str | Path | None = None,
    overrides: Sequence[str] = (),
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
    ``plots/umap_test.png`` when the config's own methods run (``[evaluate] umap``), not when
    ``methods`` names some: its first fit in a process (numba's compile, not cached across
    processes) would cost more than the metrics asked for. Under ``torch.distributed`` every
    rank extracts a shard and ranks a share of the queries; rank 0 writes.

    Args:
        run: The run directory; the newest run under ``runs_root`` when None.
        checkpoint: A checkpoint to evaluate instead of the run's best (its run directory is
            the folder above ``checkpoints/``).
        methods: Names of evaluation methods (``accuracy``, ``reid``, ``clustering``, ...:
            :func:`plp_pipelines.available_methods`); defaults to the config's.
        runs_root: Folder holding the run directories.
        model: A model object whose weights are loaded from the checkpoint (for runs trained
            from objects rather than a config).
        datamodule: The datamodule to read the splits from instead of the config's.
        config: The run's config instead of the one saved in the run directory.
        on_metrics: Called with the metrics as soon as they are computed, before the plots
            (UMAP's first fit in a process takes seconds): the command line prints them then.
            Nothing is written until the plots are done too.
        umap: Draw the UMAP (True) or not (False); by default drawn when ``methods`` is None
            and ``[evaluate] umap``. Not drawn, the previous UMAP of the same checkpoint stays.
        output: Write features, plots, ``metrics.json`` and ``report.md`` to this folder
            instead of the run's: the model evaluated on another dataset (``datamodule``),
            whose classes may differ from the run's (see :func:`evaluate_datasets`).
        overrides: ``evaluate.key=value`` settings for this evaluation only (``--set``),
            recorded in each method's section of ``metrics.json``; other sections are refused.

    Raises:
        ConfigError: An unknown method, or a model/datamodule lacking what evaluation needs.
        RunError: No such run or checkpoint, a checkpoint for other data, diverged features.
        StoppedError: SIGTERM or Ctrl-C stopped it (nothing written).
    """
    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    finish = "run the same `invoke evaluate` again to finish it"
    with stop_on_signals(lambda what: stopped_message(opened.root, what, finish)):
        return evaluate_opened(
            opened,
            checkpoint=checkpoint,
            methods=methods,
            model=model,
            datamodule=datamodule,
            config=config,
            on_metrics=on_metrics,
            umap=umap,
            output=output,
            overrides=overrides,
        )


def stopped_message(run: Path, what: str, finish: str) -> str:
    """Return the line for an evaluation of ``run`` stopped by ``what``: what is kept, what next."""
    return (
        f"evaluation of {run} stopped by {what}: nothing was written, the run's earlier results "
        f"are as they were; {finish}"
    )


def evaluate_opened(
    opened: Run,
    *,
    checkpoint: str | Path | None = None,
    methods: Sequence[str] | None = None,
    model: torch.nn.Module | None = None,
    datamodule: Any = None,
    config: Config | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    umap: bool | None = None,
    output: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate the opened run as :func:`evaluate` does (no signal handling of its own)."""
    paths = opened.paths if output is None else RunPaths(output)
    config = override_config(config or opened.config, overrides, ("evaluate",), "evaluate")
    draw_umap = (methods is None and config.evaluate.umap) if umap is None else umap
    chosen = [
        build_method(name)
        for name in check_methods(list(methods or config.evaluate.methods), flag="--method")
    ]
    checkpoint_path = opened.checkpoint(checkpoint)
    loaded = opened.load_model(checkpoint_path, model)
    weights = weights_digest(loaded)
    evaluated = as_embedding_model(loaded)
    if config.trainer.compile:
        compile_model(evaluated)
    model_facts = check_model(evaluated)
    datamodule = opened.build_datamodule(datamodule)
    data = check_datamodule(datamodule)
    datamodule.setup("test")
    _check_checkpoint_fits_data(model_facts, data, checkpoint_path, other_data=output is not None)

    device = evaluation_device(config)
    evaluated.to(device)
    protocol = config.evaluate.protocol
    splits = ["trainval", "test"] + (["query", "gallery"] if protocol == "query_gallery" else [])
    features: dict[str, SplitFeatures] = {}
    for split in splits:
        features[split] = extract_features(evaluated, datamodule.split_dataloader(split))
        _check_finite(features[split], split)
        features[split].paths, features[split].groups = data.files_and_groups(split)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    writer = not distributed or torch.distributed.get_rank() == 0
    context = EvaluationContext(
        config, features, datamodule, data, device, distributed, checkpoint_path
    )

    identity = {
        "checkpoint": checkpoint_path.name,
        "weights_sha256": weights,
        **({"overrides": list(overrides)} if overrides else {}),
    }
    metrics: dict[str, Any] = {**identity, "protocol": protocol}
    for method in chosen:  # every rank ranks its share of the queries
        if method.every_rank:
            metrics.update(method.compute(context))
    if not writer:
        return {}
    for method in chosen:
        if not method.every_rank:
            metrics.update(method.compute(context))
    for method in chosen:
        for section in method.sections:
            if section in metrics:
                metrics[section].update(identity)
    if on_metrics is not None:
        on_metrics(metrics)

    paths.root.mkdir(parents=True, exist_ok=True)
    stage = Stage(paths)
    try:
        for split, split_features in features.items():
            save_features(stage.file(paths.features / f"{split}.npz"), split_features)
        plots = _plots(stage, chosen, context, draw_umap=draw_umap)
        previous = _previous_metrics(paths)
        kept, kept_plots = _kept_results(previous, chosen, weights)
        if not draw_umap and _from_checkpoint(previous, weights):
            kept_plots.update(_previous_plots(previous, UMAP_PLOTS))  # same features
        metrics = {**kept, **metrics, "plots": {**kept_plots, **plots}}
        metrics["data_pipeline"] = data.data_pipeline
        metrics["class_names"] = data.class_names
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


def _kept_results(
    previous: dict[str, Any], chosen: Sequence[EvaluationMethod], checkpoint: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the previous sections (and their plots) of methods not rerun, of these weights.

    A method's results are kept only when they come from the same weights (``checkpoint``: the
    sha256 of them), so that ``metrics.json`` never shows numbers of two checkpoints side by
    side, whatever the files are called.
    """
    rerun = {method.name for method in chosen}
    kept: dict[str, Any] = {}
    others = previous.get("datasets")
    if isinstance(others, dict):  # other datasets' results (evaluate_datasets) of this checkpoint
        same = {k: v for k, v in others.items() if _from_checkpoint(v, checkpoint)}
        if same:
            kept["datasets"] = same
    kept_plots: dict[str, str] = {}
    for name in available_methods():
        if name in rerun:
            continue
        method = build_method(name)
        if not _from_checkpoint(previous.get(method.sections[0]), checkpoint):
            continue
        for section in method.sections:
            if _from_checkpoint(previous.get(section), checkpoint):
                kept[section] = previous[section]
        for plot in method.plots:
            if path := previous.get("plots", {}).get(plot):
                kept_plots[plot] = path
    return kept, kept_plots


def _check_checkpoint_fits_data(
    model: ModelFacts, data: DataFacts, checkpoint: Path, other_data: bool = False
) -> None:
    """Raise RunError if the checkpoint was trained for other classes, channels or sizes.

    ``other_data``: a dataset other than the run's, whose classes may differ.
    """
    keys = ("in_channels", "image_size") if other_data else SIZE_KEYS
    for key in keys:
        expected = getattr(data, key)
        stored = model.hyper_parameters.get(key)
        if (
            expected is None
            or stored is None
            or (key == "num_classes" and not model.has_classifier)
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


def _from_checkpoint(section: Any, digest: str) -> bool:
    return isinstance(section, dict) and section.get("weights_sha256") == digest


def weights_digest(model: torch.nn.Module) -> str:
    """Return the sha256 of ``model``'s weights: names, dtypes, shapes and bytes, in order.

    What an evaluation's numbers come from, whatever the checkpoint file is called or holds
    besides (its run folder, the trainer's state): two runs trained alike get the same digest.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):  # a module's extra state
            digest.update(f"{name}={tensor!r};".encode())
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{list(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _previous_plots(previous: dict[str, Any], names: Sequence[str]) -> dict[str, str]:
    """Return the previous evaluation's plots among ``names`` (name -> run path)."""
    plots = previous.get("plots")
    if not isinstance(plots, dict):
        return {}
    return {name: plots[name] for name in names if isinstance(plots.get(name), str)}


def _plots(
    stage: Stage,
    chosen: Sequence[EvaluationMethod],
    context: EvaluationContext,
    *,
    draw_umap: bool,
) -> dict[str, str]:
    """Draw the chosen methods' plots and the UMAP into the stage; return name -> run path."""
    paths = stage.paths
    plots: dict[str, Path] = {}
    for method in chosen:
        plots.update(method.draw(context, lambda name: stage.file(paths.plots / name)))
    config, test = context.config, context.features["test"]
    if draw_umap and len(test.labels) >= UMAP_MIN_SAMPLES:
        embedding = plp_viz.umap_2d(
            test.features, seed=config.seed, max_samples=config.evaluate.umap_max_samples
        )
        plots["umap"] = plp_viz.plot_embedding(
            embedding.points,
            test.labels[embedding.indices],
            stage.file(paths.plots / "umap_test.png"),
            title=f"{config.name}: test features (UMAP)",
            class_names=context.data.class_names,
        )
        plots["umap_html"] = draw_interactive_umap(
            context, embedding, stage.file(paths.plots / "umap_test.html")
        )
    return {name: str(Path(path).relative_to(stage.root)) for name, path in plots.items()}
