"""Cross-domain evaluation: a run's model on other datasets (torchreid's ``targets``).

A dataset is named three ways: a config file (its ``[data]`` and its ``[evaluate]`` settings:
protocol, methods, metric), a datamodule name, or ``{name, args}`` (both with the run's
``[evaluate]`` settings). Each is served through the ``concat`` datamodule with a single part,
so its images are resized to the size the model was trained on, whatever their own. Each
result is written to ``<run>/eval/<dataset>/`` (features, plots, ``metrics.json``,
``report.md``) and recorded in the run's ``metrics.json`` under ``datasets.<dataset>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plp_core import did_you_mean
from plp_pipelines._config import Config, DataConfig, Named, load_config
from plp_pipelines._errors import ConfigError
from plp_pipelines._protocols import ModelFacts
from plp_pipelines._runs import RUNS_ROOT, atomic_write_json

__all__ = ["EVAL_FOLDER", "check_datasets", "evaluate_datasets", "resolve_dataset"]

EVAL_FOLDER = "eval"
# Arguments of a dataset's own [data] that the single-part union takes over (or drops).
_UNION_KEEPS = ("batch_size", "eval_batch_size", "num_workers")
_UNION_DROPS = ("sampler", "seed", "val_fraction", "val_classes", "pipeline")
# What a run's metrics.json records of another dataset (no plots, no class names).
_LEFT_OUT = ("plots", "class_names")


def resolve_dataset(spec: str | Named, run_config: Config, where: str) -> tuple[str, Config]:
    """Return the dataset's name and the config that evaluates the run's model on it.

    Args:
        spec: A config file, a datamodule name, or ``{name, args}``.
        run_config: The run's config (its ``[evaluate]`` settings apply unless a file's do).
        where: How to name ``spec`` in messages (``--data``, ``evaluate.datasets.1``).

    Raises:
        ConfigError: Neither a config file nor a datamodule (one line, with a close name).
    """
    import plp_data

    evaluate = run_config.evaluate
    if isinstance(spec, Named):
        name, data = spec.name, spec
    elif spec.endswith(".toml") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise ConfigError(f"{where}: config file {spec} not found")
        other = load_config(spec)
        name, data, evaluate = other.name, other.data, other.evaluate
    elif spec in plp_data.DATAMODULES:
        name, data = spec, Named(name=spec)
    else:
        names = plp_data.DATAMODULES.available()
        raise ConfigError(
            f"{where}: {spec!r} is neither a config file nor a datamodule"
            f"{did_you_mean(spec, names)}; datamodules: {', '.join(names)}"
        )
    part_args = {k: v for k, v in data.args.items() if k not in (*_UNION_KEEPS, *_UNION_DROPS)}
    union = {k: data.args[k] for k in _UNION_KEEPS if k in data.args}
    wrapped = DataConfig(
        name="concat",
        args={"datasets": [{"name": data.name, "args": part_args}], "val_fraction": 0.0, **union},
    )
    evaluate = evaluate.model_copy(update={"datasets": []})
    return name, run_config.model_copy(update={"data": wrapped, "evaluate": evaluate})


def check_datasets(config: Config) -> None:
    """Raise ConfigError if an ``[evaluate] datasets`` entry names no file or datamodule."""
    for index, spec in enumerate(config.evaluate.datasets):
        resolve_dataset(spec, config, f"{config.source}: evaluate.datasets.{index}")


def evaluate_datasets(
    run: str | Path | None = None,
    datasets: Sequence[str | Named] | None = None,
    *,
    checkpoint: str | Path | None = None,
    methods: Sequence[str] | None = None,
    runs_root: str | Path = RUNS_ROOT,
    model: Any = None,
    on_metrics: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate a run's model on other datasets; return each one's metrics by dataset name.

    Args:
        run: The run directory; the newest run when None.
        datasets: Config files, datamodule names or ``Named`` specs (default: the run's
            ``[evaluate] datasets``).
        checkpoint: A checkpoint instead of the run's best.
        methods: Evaluation methods (default: each dataset's ``[evaluate] methods``);
            ``accuracy`` is left out for a model whose classifier has other classes.
        runs_root: Folder holding the run directories.
        model: The model object, for runs trained from objects.
        on_metrics: Called with each dataset's name and metrics once they are computed.

    Raises:
        ConfigError: A dataset that is neither a file nor a datamodule, or whose images the
            model cannot take (another channel count).
        RunError: As :func:`plp_pipelines.evaluate`.
    """
    from plp_pipelines._build import build_datamodule
    from plp_pipelines._evaluate import evaluate
    from plp_pipelines._run import Run

    opened = Run.open(run, runs_root=runs_root, checkpoint=checkpoint)
    checkpoint_path = opened.checkpoint(checkpoint)
    loaded = opened.load_model(checkpoint_path, model)
    facts = ModelFacts.of(loaded)
    hparams = facts.hyper_parameters
    specs = list(opened.config.evaluate.datasets if datasets is None else datasets)
    results: dict[str, dict[str, Any]] = {}
    for index, spec in enumerate(specs):
        where = "--data" if datasets is not None else f"evaluate.datasets.{index}"
        name, config = resolve_dataset(spec, opened.config, where)
        name = _unique(name, results)
        if "image_size" in hparams:
            config.data.args["image_size"] = list(hparams["image_size"])
        datamodule = build_datamodule(config)
        if "in_channels" in hparams and hparams["in_channels"] != datamodule.in_channels:
            raise ConfigError(
                f"{where}: {name} has {datamodule.in_channels}-channel images, the model of "
                f"{opened.root} takes {hparams['in_channels']}"
            )
        chosen = list(methods or config.evaluate.methods)
        if facts.has_classifier and hparams.get("num_classes") != datamodule.num_classes:
            chosen = [method for method in chosen if method != "accuracy"]  # other classes
        metrics = evaluate(
            opened.root,
            checkpoint=checkpoint_path,
            methods=chosen,
            model=loaded,
            datamodule=datamodule,
            config=config,
            output=opened.root / EVAL_FOLDER / name,
        )
        if not metrics:  # a DDP rank other than 0: rank 0 writes
            continue
        results[name] = {k: v for k, v in metrics.items() if k not in _LEFT_OUT}
        results[name]["folder"] = f"{EVAL_FOLDER}/{name}"
        if on_metrics is not None:
            on_metrics(name, metrics)
    if results:
        _record(opened.paths.metrics, results)
    return results


def _unique(name: str, taken: dict[str, Any]) -> str:
    count = sum(1 for other in taken if other.split("#")[0] == name)
    return name if count == 0 else f"{name}#{count + 1}"


def _record(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Merge ``results`` into the run's ``metrics.json`` under ``datasets`` (atomically).

    Results of other weights (``weights_sha256``: another checkpoint, even one of the same file
    name) are dropped, so that the section never holds numbers of two models.
    """
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}
    datasets = metrics.get("datasets")
    datasets = datasets if isinstance(datasets, dict) else {}
    # Results of another checkpoint would sit beside these under one name: drop them.
    weights = {result.get("weights_sha256") for result in results.values()}
    kept = {
        name: value
        for name, value in datasets.items()
        if isinstance(value, dict) and value.get("weights_sha256") in weights
    }
    metrics["datasets"] = {**kept, **results}
    atomic_write_json(path, metrics)
