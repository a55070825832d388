"""The train pipeline: fit, checkpoint, log, record the run; then test if configured."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

import plp_data
from plp_pipelines._build import build_datamodule, build_model
from plp_pipelines._callbacks import AtomicCheckpointIO, StopOnNonFiniteLoss
from plp_pipelines._config import Config, config_to_toml
from plp_pipelines._errors import RunError
from plp_pipelines._runs import (
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    create_run_dir,
    record_newest,
)

__all__ = ["RUN_DIR_ENV", "TrainResult", "resume", "train"]

# Rank 0 publishes its run directory here so that the DDP workers Lightning launches (by
# re-running the same command) write into the same run instead of creating their own.
RUN_DIR_ENV = "PLP_RUN_DIR"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: The run directory.
        best_checkpoint: The checkpoint with the lowest validation loss (or the last one).
        metrics: The test metrics when ``[evaluate] after_training``, else empty.
    """

    run_dir: Path
    best_checkpoint: Path
    metrics: dict[str, Any]


def check_data(datamodule: pl.LightningDataModule) -> None:
    """Load a plp datamodule's splits and build its sampler now, before any run directory exists.

    Missing files, empty splits and impossible P x K settings then fail before training starts
    (with plp-data's message) instead of inside Lightning's fit loop.
    """
    if isinstance(datamodule, plp_data.PlpDataModule):
        datamodule.setup("fit")
        datamodule.train_dataloader()  # builds (so checks) the configured sampler


def train(
    config: Config | None = None,
    *,
    model: pl.LightningModule | None = None,
    datamodule: pl.LightningDataModule | None = None,
    runs_root: str | Path = "runs",
    evaluate: bool | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Train a model and return its run directory, best checkpoint and (optionally) test metrics.

    The model and datamodule are built from ``config`` unless given as objects (any
    LightningModule with ``embed(images)`` and any LightningDataModule with ``split_dataloader``
    for ``trainval`` and ``test``). The run is recorded as the newest only after training
    succeeded, so a crashed run never becomes the one that ``evaluate`` picks by default.

    Args:
        config: The recipe; defaults to :class:`Config()` (digits) when objects are given.
        model: A LightningModule to train instead of the one ``config`` describes.
        datamodule: A datamodule to train on instead of the one ``config`` describes.
        runs_root: Folder holding the run directories.
        evaluate: Run the test pipeline afterwards; defaults to ``[evaluate] after_training``.
        progress_bar: Show Lightning's progress bar.
    """
    config = config or Config()
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    datamodule = datamodule or build_datamodule(config)
    model = model or build_model(config, datamodule)  # type: ignore[arg-type]
    check_data(datamodule)

    def new_run() -> RunPaths:
        paths = RunPaths(create_run_dir(runs_root, config.name))
        atomic_write_text(paths.config, config_to_toml(config))
        return paths

    return _in_shared_run(
        new_run,
        lambda paths: _fit_and_test(
            config, model, datamodule, paths, runs_root, evaluate, progress_bar
        ),
    )


def resume(
    run: str | Path | None = None,
    *,
    name: str | None = None,
    runs_root: str | Path = "runs",
    evaluate: bool | None = None,
    progress_bar: bool = True,
) -> TrainResult:
    """Continue an interrupted run from its ``checkpoints/last.ckpt`` and return as :func:`train`.

    The run's own ``config.toml`` is used, so the continued run trains exactly what the
    interrupted one did; with the same seed its final metrics equal an uninterrupted run's.

    Args:
        run: The run directory; by default the newest unfinished run of config ``name``.
        name: The config name whose newest run to resume (``runs_root/name/``).
        runs_root: Folder holding the run directories.
        evaluate: Run the test pipeline afterwards; defaults to ``[evaluate] after_training``.
        progress_bar: Show Lightning's progress bar.
    """
    from plp_pipelines._config import load_config

    run_dir = Path(run) if run is not None else _newest_unfinished(Path(runs_root), name)
    paths = RunPaths(run_dir)
    last = paths.checkpoints / "last.ckpt"
    if paths.run_info.is_file():
        raise RunError(f"{run_dir} finished training already: nothing to resume")
    if not last.is_file():
        raise RunError(f"{run_dir} has no checkpoints/last.ckpt to resume from")
    config = load_config(paths.config)
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    datamodule = build_datamodule(config, str(paths.config))
    model = build_model(config, datamodule, str(paths.config))
    check_data(datamodule)
    return _in_shared_run(
        lambda: paths,
        lambda shared: _fit_and_test(
            config, model, datamodule, shared, runs_root, evaluate, progress_bar, resume_from=last
        ),
    )


def _newest_unfinished(runs_root: Path, name: str | None) -> Path:
    if name is None:
        raise RunError("resume: name the run (--run) or the config whose newest run to resume")
    folder = runs_root / name
    candidates = sorted(folder.glob("*/checkpoints/last.ckpt")) if folder.is_dir() else []
    if not candidates:
        raise RunError(f"resume: no run of {name!r} under {runs_root}/ has a checkpoint yet")
    return candidates[-1].parent.parent


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
    paths: RunPaths,
    runs_root: str | Path,
    evaluate: bool | None,
    progress_bar: bool,
    resume_from: Path | None = None,
) -> TrainResult:

    has_validation = _has_validation(datamodule)
    checkpoint = ModelCheckpoint(
        dirpath=paths.checkpoints,
        filename="epoch={epoch}-val_loss={val_loss:.4f}" if has_validation else "epoch={epoch}",
        monitor="val_loss" if has_validation else None,
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    trainer = pl.Trainer(
        max_epochs=config.trainer.epochs,
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        strategy=config.trainer.strategy,
        precision=config.trainer.precision,  # type: ignore[arg-type]
        deterministic=config.trainer.deterministic,
        log_every_n_steps=config.trainer.log_every_n_steps,
        gradient_clip_val=config.trainer.gradient_clip_val,
        default_root_dir=paths.root,
        callbacks=[checkpoint, StopOnNonFiniteLoss()],
        plugins=[AtomicCheckpointIO()],
        logger=[
            CSVLogger(paths.root, name="logs", version="csv"),
            TensorBoardLogger(paths.root, name="logs", version="tensorboard"),
        ],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=not getattr(datamodule, "uses_custom_sampler", False),
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    best = Path(
        trainer.strategy.broadcast(checkpoint.best_model_path or checkpoint.last_model_path)
    )
    if trainer.global_rank == 0:
        atomic_write_json(
            paths.run_info,
            {
                "best_checkpoint": best.name,
                "last_checkpoint": Path(checkpoint.last_model_path).name,
                "epochs": trainer.current_epoch,
                "seed": config.trainer.seed,
            },
        )
        record_newest(paths.root, runs_root)
    metrics: dict[str, Any] = {}
    if config.evaluate.after_training if evaluate is None else evaluate:
        from plp_pipelines._evaluate import evaluate as run_evaluation

        # Every DDP rank takes part in the feature extraction; rank 0 writes the results.
        metrics = run_evaluation(
            paths.root, checkpoint=best, model=model, datamodule=datamodule, config=config
        )
    return TrainResult(paths.root, best, metrics)


def _has_validation(datamodule: pl.LightningDataModule) -> bool:
    """Return whether training will validate (so checkpoints can follow ``val_loss``)."""
    fraction = getattr(datamodule, "val_fraction", None)
    if fraction is not None:
        return bool(fraction > 0)
    return type(datamodule).val_dataloader is not pl.LightningDataModule.val_dataloader
