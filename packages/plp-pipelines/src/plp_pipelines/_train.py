"""The train pipeline: fit, checkpoint, log, record the run; then test if configured."""

from __future__ import annotations

import csv
import io
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

import plp_data
import plp_models
from plp_pipelines._build import build_datamodule, build_model, loss_terms
from plp_pipelines._callbacks import AtomicCheckpointIO, RecordInterrupt, StopOnNonFiniteLoss
from plp_pipelines._checkpoints import check_resumable
from plp_pipelines._checks import (
    check_data,
    check_model_fits,
    check_protocol,
    check_spawn,
    check_trainer,
)
from plp_pipelines._compile import compile_model
from plp_pipelines._components import check_components
from plp_pipelines._config import Config, config_to_toml
from plp_pipelines._cross_domain import check_datasets, evaluate_datasets
from plp_pipelines._devices import DeviceSpeedups, resolve_precision
from plp_pipelines._distill import load_teacher
from plp_pipelines._embedding_sampler import feed_embedding_sampler
from plp_pipelines._errors import ConfigError, StoppedError, TrainingStoppedError
from plp_pipelines._protocols import SIZES, DataFacts, check_datamodule, check_model
from plp_pipelines._run import Run, RunInfo, class_name
from plp_pipelines._runs import (
    RUNS_ROOT,
    RunPaths,
    atomic_write_text,
    check_runs_root,
    record_newest,
)
from plp_pipelines._selection import TrainingPlan, best_epoch, plan_training
from plp_pipelines._stopping import EXIT_CODES, stop_on_signals
from plp_pipelines._trackers import Trackers

__all__ = ["RUN_DIR_ENV", "TrainResult", "resume", "train"]

# Rank 0 publishes its run directory here so that the DDP workers Lightning launches (by
# re-running the same command) write into the same run instead of creating their own.
RUN_DIR_ENV = "PLP_RUN_DIR"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: The run directory.
        best_checkpoint: The checkpoint chosen by ``monitor`` (or the last one).
        metrics: The test metrics when ``[evaluate] after_training``, else empty.
        data_pipeline: How the training batches were served (``device`` or ``workers``).
        monitor: The metric that chose the best checkpoint (None: the last epoch).
        best_score: Its value at the best checkpoint.
        best_epoch: The epoch of the best checkpoint.
    """

    run_dir: Path
    best_checkpoint: Path
    metrics: dict[str, Any]
    data_pipeline: str = "workers"
    monitor: str | None = None
    best_score: float | None = None
    best_epoch: int | None = None


def train(
    config: Config | None = None,
    *,
    model: torch.nn.Module | None = None,
    datamodule: pl.LightningDataModule | None = None,
    runs_root: str | Path = RUNS_ROOT,
    evaluate: bool | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Train a model and return its run directory, best checkpoint and (optionally) test metrics.

    The model and datamodule are built from ``config`` unless given as objects: any
    LightningModule with ``embed(images)``, or a plain ``nn.Module`` embedding network (trained
    with the config's loss, optimizer and schedule; ``network.classifier`` gives logits for
    losses that take them), and any LightningDataModule with ``split_dataloader`` for
    ``trainval`` and ``test``. Everything is checked before the run folder is created: component
    names and arguments, trainer settings, whether the model fits in memory. The run is
    recorded as the newest only after training succeeded, so a crashed run never becomes the one
    that ``evaluate`` picks by default.

    Args:
        config: The recipe; defaults to :class:`Config()` (digits) when objects are given.
        model: A LightningModule or ``nn.Module`` to train instead of the one ``config``
            describes.
        datamodule: A datamodule to train on instead of the one ``config`` describes.
        runs_root: Folder holding the run directories.
        evaluate: Run the test pipeline afterwards; defaults to ``[evaluate] after_training``.
        progress_bar: Show Lightning's progress bar.
    """
    config = config or Config()
    made_from_objects = model is not None or datamodule is not None
    if not isinstance(model, pl.LightningModule):  # the config's components are used
        check_components(config)
    if model is not None and config.distill is not None:
        raise ConfigError(f"{config.source}: distill: distils into the config's model only")
    check_datasets(config)
    check_trainer(config)
    check_runs_root(runs_root)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = datamodule or build_datamodule(config)
    # A config's model is sized from the datamodule; a plain network needs the class count.
    needs = SIZES if model is None else () if isinstance(model, pl.LightningModule) else SIZES[:1]
    data = check_datamodule(datamodule, needs)
    check_data(datamodule)
    check_protocol(config, datamodule)
    model = _model_to_train(config, model, datamodule, data, load_teacher(config, data))
    check_spawn(config, model, datamodule)
    plan = plan_training(config, model, datamodule, _has_validation(datamodule, data))

    def new_run() -> RunPaths:
        text = _recipe(config, model, datamodule, made_from_objects)
        return Run.create(config, text, runs_root=runs_root).paths

    return _in_shared_run(
        new_run,
        lambda paths: _fit_and_test(
            config, model, datamodule, data, plan, paths, runs_root, evaluate, progress_bar
        ),
    )


def resume(
    run: str | Path | None = None,
    *,
    name: str | None = None,
    runs_root: str | Path = RUNS_ROOT,
    evaluate: bool | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Continue an interrupted run from its ``checkpoints/last.ckpt`` and return as :func:`train`.

    The run's own ``config.toml`` is used, so the continued run trains exactly what the
    interrupted one did; with the same seed its final metrics equal an uninterrupted run's.
    ``last.ckpt`` is checked as ``evaluate`` checks checkpoints (safe to load, the model of the
    config, weights of its shapes) before anything is written. A run whose training finished
    but whose evaluation was stopped gets its evaluation (and is then recorded as the newest).

    Args:
        run: The run directory; by default the newest unfinished run (no ``run.json``) of
            config ``name`` that has a ``last.ckpt``.
        name: The config name whose newest run to resume (``runs_root/name/``).
        runs_root: Folder holding the run directories.
        evaluate: Run the test pipeline afterwards; defaults to ``[evaluate] after_training``.
        progress_bar: Show Lightning's progress bar.
    """
    opened = Run.open_unfinished(run, name=name, runs_root=runs_root)
    if opened.info is not None:  # training finished; the evaluation after it did not
        return _finish_evaluation(opened, runs_root, evaluate)
    config, last = opened.config, opened.last_checkpoint()
    check_components(config)
    check_trainer(config)
    check_runs_root(runs_root)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = build_datamodule(config)
    data = check_datamodule(datamodule, SIZES)
    model = build_model(config, datamodule, load_teacher(config, data))
    check_resumable(last, model, opened.paths.config)
    check_data(datamodule)
    check_protocol(config, datamodule)
    check_spawn(config, model, datamodule)
    plan = plan_training(config, model, datamodule, _has_validation(datamodule, data))
    return _in_shared_run(
        lambda: opened.paths,
        lambda shared: _fit_and_test(
            config,
            model,
            datamodule,
            data,
            plan,
            shared,
            runs_root,
            evaluate,
            progress_bar,
            resume_from=last,
        ),
    )


def _in_shared_run(
    make_paths: Callable[[], RunPaths], body: Callable[[RunPaths], TrainResult]
) -> TrainResult:
    """Run ``body`` in the run directory of rank 0, also in DDP workers Lightning launches."""
    launched_rank = int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))
    if launched_rank and RUN_DIR_ENV in os.environ:
        # A DDP worker that Lightning started by re-running this command: share rank 0's run.
        return body(RunPaths(os.environ[RUN_DIR_ENV]))
    paths = make_paths()
    os.environ[RUN_DIR_ENV] = str(paths.root)
    try:
        return body(paths)
    finally:
        os.environ.pop(RUN_DIR_ENV, None)


def _fit_and_test(
    config: Config,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    data: DataFacts,
    plan: TrainingPlan,
    paths: RunPaths,
    runs_root: str | Path,
    evaluate: bool | None,
    progress_bar: bool,
    resume_from: Path | None = None,
) -> TrainResult:
    has_validation = _has_validation(datamodule, data)
    checkpoint, selection_callbacks = plan.callbacks(config, paths.checkpoints)
    interrupt = RecordInterrupt()
    trackers = Trackers(config, paths, runs_root, rank=_launched_rank())
    if config.trainer.compile:
        compile_model(model)
    trainer = pl.Trainer(
        max_epochs=config.trainer.epochs,
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        strategy=config.trainer.strategy,
        precision=resolve_precision(  # type: ignore[arg-type]
            config.trainer.precision, config.trainer.accelerator
        ),
        deterministic=config.trainer.deterministic,
        log_every_n_steps=config.trainer.log_every_n_steps,
        limit_val_batches=1.0 if has_validation else 0,  # val_fraction = 0: no validation
        check_val_every_n_epoch=config.trainer.val_every,
        gradient_clip_val=config.trainer.gradient_clip_val,
        default_root_dir=paths.root,
        callbacks=[
            checkpoint,
            *selection_callbacks,
            StopOnNonFiniteLoss(),
            interrupt,
            DeviceSpeedups(config.trainer.deterministic),
        ],
        plugins=[AtomicCheckpointIO()],
        logger=trackers.loggers or False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=not data.uses_custom_sampler,
    )
    history = _csv_history(paths) if resume_from is not None else []
    feed_embedding_sampler(datamodule, model)  # for samplers that draw from embeddings
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except SIGTERMException:
        trackers.close(EXIT_CODES["SIGTERM"], preempted=True)
        raise _stopped(trainer, paths, "SIGTERM") from None
    except SystemExit:  # Lightning's answer to Ctrl-C, after its clean-up
        if not isinstance(interrupt.exception, KeyboardInterrupt):
            trackers.close(1)
            raise
        trackers.close(EXIT_CODES["Ctrl-C"])
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores it now
        raise _stopped(trainer, paths, "Ctrl-C") from None
    except BaseException:
        trackers.close(1)
        raise
    finally:
        if history:
            _keep_csv_history(paths, history)
    best = Path(
        trainer.strategy.broadcast(checkpoint.best_model_path or checkpoint.last_model_path)
    )
    score = checkpoint.best_model_score
    best_score = float(score) if score is not None and checkpoint.monitor else None
    evaluating = config.evaluate.after_training if evaluate is None else evaluate
    info: RunInfo | None = None
    if trainer.global_rank == 0:
        made_from_objects = type(model) is not plp_models.PlpModel or not isinstance(
            datamodule, plp_data.PlpDataModule
        )
        info = RunInfo(
            best_checkpoint=best.name,
            last_checkpoint=Path(checkpoint.last_model_path).name,
            epochs=trainer.current_epoch,
            seed=config.seed,
            made_from="objects" if made_from_objects else "config",
            model=class_name(model),
            datamodule=class_name(datamodule),
            data_pipeline=data.data_pipeline,
            monitor=checkpoint.monitor,
            best_score=best_score,
            best_epoch=best_epoch(best),
            trackers=trackers.ids or None,
            compiled=config.trainer.compile or None,
            evaluation="pending" if evaluating else None,
        )
        info.write(paths.run_info)
    metrics: dict[str, Any] = {}
    if evaluating:
        # Every DDP rank takes part in the feature extraction; rank 0 writes the results.
        try:
            metrics = _evaluate_after_training(paths, best, model, datamodule, config, runs_root)
        except StoppedError as error:  # `train --resume` publishes to the same tracker runs
            trackers.close(error.exit_code, preempted=error.exit_code == EXIT_CODES["SIGTERM"])
            raise
    if info is not None:
        if evaluating:
            info.evaluation = "done"
            info.write(paths.run_info)
        record_newest(paths.root, runs_root)  # only now: the newest run has its results
    trackers.publish(metrics)
    return TrainResult(
        paths.root,
        best,
        metrics,
        data.data_pipeline or "workers",
        checkpoint.monitor,
        best_score,
        best_epoch(best),
    )


def _evaluate_after_training(
    paths: RunPaths,
    checkpoint: Path,
    model: Any = None,
    datamodule: Any = None,
    config: Config | None = None,
    runs_root: str | Path = RUNS_ROOT,
) -> dict[str, Any]:
    """Evaluate a trained run, and on ``[evaluate] datasets``; a stop names ``train --resume``."""
    from plp_pipelines._evaluate import evaluate_opened, stopped_message

    opened = Run.open(paths.root)
    config = config or opened.config
    finish = f"finish it with `uv run invoke train --resume --run {paths.root}`"
    with stop_on_signals(lambda what: stopped_message(paths.root, what, finish)):
        metrics = evaluate_opened(
            opened, checkpoint=checkpoint, model=model, datamodule=datamodule, config=config
        )
        if config.evaluate.datasets:  # cross-domain: the model on other datasets
            others = evaluate_datasets(
                paths.root, checkpoint=checkpoint, model=model, runs_root=runs_root
            )
            if others:
                metrics["datasets"] = {**metrics.get("datasets", {}), **others}
    return metrics


def _finish_evaluation(opened: Run, runs_root: str | Path, evaluate: bool | None) -> TrainResult:
    """Run the evaluation a finished training did not get to; record the run as the newest.

    Its results go to the run's MLflow / W&B runs (``logs/trackers.json``), as they would
    have after training.
    """
    info = opened.info
    assert info is not None
    best = opened.checkpoint()
    metrics: dict[str, Any] = {}
    if evaluate is not False:
        metrics = _evaluate_after_training(opened.paths, best, runs_root=runs_root)
    info.evaluation = "done" if evaluate is not False else None
    info.write(opened.paths.run_info)
    record_newest(opened.root, runs_root)
    if metrics:
        Trackers(opened.config, opened.paths, runs_root, rank=_launched_rank()).publish(metrics)
    return TrainResult(
        opened.root,
        best,
        metrics,
        info.data_pipeline or "workers",
        info.monitor,
        info.best_score,
        info.best_epoch,
    )


def _launched_rank() -> int:
    """Return this process's rank as Lightning's DDP launcher numbers it (0 when alone)."""
    return int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))


def _has_validation(datamodule: pl.LightningDataModule, data: DataFacts) -> bool:
    """Return whether training will validate (so checkpoints can follow ``val_loss``)."""
    if data.has_validation is not None:
        return data.has_validation
    if data.val_fraction is not None:
        return bool(data.val_fraction > 0)
    return type(datamodule).val_dataloader is not pl.LightningDataModule.val_dataloader


def _model_to_train(
    config: Config,
    model: torch.nn.Module | None,
    datamodule: Any,
    data: DataFacts,
    teacher: plp_models.PlpModel | None = None,
) -> pl.LightningModule:
    """Return the LightningModule to train: the given one, a plain network wrapped, or built."""
    if model is None:
        check_model_fits(config, datamodule, teacher)
        return build_model(config, datamodule, teacher)
    check_model(model, for_training=True)
    if isinstance(model, pl.LightningModule):
        return model
    assert data.num_classes is not None  # checked: train() asks the datamodule for it
    try:
        return plp_models.NetworkModel(
            model,
            num_classes=data.num_classes,
            losses=loss_terms(config),
            optimizer=config.optimizer.model_dump(),
            scheduler=config.scheduler.model_dump(),
        )
    except plp_models.PlpModelsError as error:
        raise ConfigError(str(error)) from None  # plp-models' message names the component


def _recipe(config: Config, model: Any, datamodule: Any, made_from_objects: bool) -> str:
    """Return the ``config.toml`` text: the resolved config, or what the objects really were."""
    if isinstance(model, plp_models.PlpModel) and config.model.embedding_size is None:
        config = config.model_copy(deep=True)
        config.model.embedding_size = int(model.hparams["embedding_size"])
    text = config_to_toml(config)
    if not made_from_objects:
        return text
    header = [
        "# This run was trained from Python objects, not from this file's [data] and [model]:",
        f"#   model:      {class_name(model)}",
        f"#   datamodule: {class_name(datamodule)}",
    ]
    if isinstance(model, plp_models.NetworkModel):
        header.append(f"#   network:    {model.hparams['network']}")
    header.append("# Its [trainer], [evaluate], [loss] and [optimizer] settings are the ones used.")
    return "\n".join(header) + "\n" + text


def _stopped(trainer: pl.Trainer, paths: RunPaths, what: str) -> TrainingStoppedError:
    """Return the error for a SIGTERM or Ctrl-C: ``last.ckpt`` kept (saved now if none yet).

    The ``last.ckpt`` of the last finished epoch is kept as it is: resuming from an epoch's end
    gives the uninterrupted run's numbers exactly. Stopped in the first epoch, the current state
    is saved as ``last.ckpt`` so that the run can still be resumed.
    """
    last = paths.checkpoints / "last.ckpt"
    if not last.exists():
        trainer.save_checkpoint(last)
    return TrainingStoppedError(
        f"training stopped by {what} in epoch {trainer.current_epoch}; {last} kept: resume with "
        f"`uv run invoke train --resume --run {paths.root}`",
        EXIT_CODES[what],
    )


CSV_LOG = Path("logs") / "csv" / "metrics.csv"


def _csv_history(paths: RunPaths) -> list[dict[str, str]]:
    """Return the rows of the run's CSV log (read before a resumed fit overwrites it)."""
    log = paths.root / CSV_LOG
    if not log.is_file():
        return []
    with log.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _keep_csv_history(paths: RunPaths, history: list[dict[str, str]]) -> None:
    """Put the epochs logged before a resume back in front of the resumed fit's CSV log."""
    new_rows = _csv_history(paths)
    resumed_from = min((int(row["epoch"]) for row in new_rows if row.get("epoch")), default=None)
    if resumed_from is not None:
        history = [row for row in history if row.get("epoch") and int(row["epoch"]) < resumed_from]
    rows = history + new_rows
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(paths.root / CSV_LOG, buffer.getvalue())
