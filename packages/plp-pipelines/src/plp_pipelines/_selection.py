"""What training selects by: retrieval validation, the checkpoint monitor, early stopping.

Checked before the run folder exists: the monitor must be a metric the run logs (one line
listing them otherwise), the model must have a backbone to freeze, and so on. The monitor's
mode follows its name: losses are minimised, accuracies and retrieval metrics maximised.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plp_core import did_you_mean
from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError

__all__ = [
    "Selection",
    "TrainingPlan",
    "plan_training",
    "best_epoch",
    "logged_metrics",
    "monitor_mode",
    "plan_selection",
    "relocated_checkpoint_state",
    "retrieval_validation",
]

# The protocol of the run -> (leave-one-out?, metrics validation logs).
VALIDATION_PROTOCOLS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "trainval_test": (True, ("mAP", "rank1")),
    "test_leave_one_out": (True, ("mAP", "rank1", "MAP@R", "precision@1")),
    "query_gallery": (False, ("mAP", "rank1")),
}


def monitor_mode(name: str) -> str:
    """Return ``"min"`` for a loss, ``"max"`` for accuracies and retrieval metrics."""
    return "min" if "loss" in name else "max"


def retrieval_validation(config: Config, model: Any, split: Any) -> Any:
    """Return the :class:`plp_models.RetrievalValidation` of the run, or None.

    Retrieval validation runs when ``[evaluate] methods`` holds ``reid``, the model is plp's
    (it ranks inside its validation loop) and the datamodule has a validation split. It follows
    the run's protocol on the validation images: leave-one-out for ``test_leave_one_out`` and
    ``trainval_test`` (the validation images query each other: a gallery of the whole training
    part would cost a third of an epoch each time), queries against a gallery per identity and
    camera for ``query_gallery``.
    """
    import plp_models

    if "reid" not in config.evaluate.methods or split is None:
        return None
    if not isinstance(model, plp_models.PlpModel):
        return None
    leave_one_out, metrics = VALIDATION_PROTOCOLS[config.evaluate.protocol]
    unrankable = _unrankable(split, leave_one_out)
    if unrankable:
        return _without_retrieval(config, metrics, unrankable)
    try:
        return plp_models.RetrievalValidation(
            len(split.labels),
            queries=None if leave_one_out else split.queries,
            metric=config.evaluate.reid_metric,
            max_rank=config.evaluate.max_rank,
            metrics=metrics,
        )
    except plp_models.PlpModelsError as error:
        raise ConfigError(
            f"{config.source}: validation: {error}; hold out more identities "
            "(data.args.val_classes)"
        ) from None


def _unrankable(split: Any, leave_one_out: bool) -> str:
    """Return why no validation image could ever be a query with a match ("" if one can)."""
    import numpy as np

    if leave_one_out:
        _, counts = np.unique(split.labels, return_counts=True)
        if (counts >= 2).any():
            return ""
        return f"no class of the {len(split.labels)} validation images has a second image"
    if np.asarray(split.queries).any():
        return ""
    return (
        f"no identity of the {len(split.labels)} validation images has a second image "
        "(from another camera)"
    )


def _without_retrieval(config: Config, metrics: tuple[str, ...], why: str) -> None:
    """Skip retrieval validation, with one warning; ConfigError if a monitor needs it.

    The validation split is fixed for the run, so an unrankable one stays unrankable: the
    run trains and validates its loss, but cannot select or stop by ``val/mAP`` and the like.
    """
    names = {f"val/{name}" for name in metrics}
    stopping = config.trainer.early_stopping
    for key, monitor in (
        ("checkpoint.monitor", config.checkpoint.monitor),
        ("trainer.early_stopping.monitor", stopping.monitor if stopping else None),
    ):
        if monitor in names:
            raise ConfigError(
                f"{config.source}: {key}: {monitor!r} can never be computed: {why}, so no "
                "image has a match to find; hold out more (data.args.val_fraction or val_classes)"
            )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # once, not once per DDP process
        warnings.warn(
            f"{config.source}: retrieval validation is skipped: {why}, so no image has a match "
            "to find (val/ retrieval metrics are not logged; the test set is still evaluated)",
            stacklevel=3,
        )
    return None


def logged_metrics(has_classifier: bool, validates: bool, retrieval: Any) -> list[str]:
    """Return the names of the per-epoch metrics a plp model logs in this run."""
    names = ["train_loss"] + (["train_acc"] if has_classifier else [])
    if validates:
        names += ["val_loss"] + (["val_acc"] if has_classifier else [])
    if retrieval is not None:
        names += list(retrieval.names)
    return names


@dataclass(frozen=True)
class Selection:
    """How the run chooses its best checkpoint and when it stops.

    Attributes:
        monitor: The metric choosing the best checkpoint (None: the last epoch).
        mode: ``min`` or ``max``.
        early_stopping: ``(monitor, mode, patience, min_delta)`` or None.
    """

    monitor: str | None
    mode: str
    early_stopping: tuple[str, str, int, float] | None

    def callbacks(self, config: Config, checkpoints: Path) -> tuple[Any, list[Any]]:
        """Return the ModelCheckpoint and the other callbacks of the selection."""
        from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

        monitor = self.monitor
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", (monitor or "").replace("@", "_at_"))
        checkpoint = _run_checkpoint_class(ModelCheckpoint)(
            dirpath=checkpoints,
            filename=f"epoch={{epoch}}-{slug}={{{monitor}:.4f}}" if monitor else "epoch={epoch}",
            monitor=monitor,
            mode=self.mode,
            save_top_k=config.checkpoint.save_top_k if monitor else 1,
            save_last=True,
            auto_insert_metric_name=False,
        )
        others: list[Any] = []
        if self.early_stopping is not None:
            name, mode, patience, min_delta = self.early_stopping
            others.append(
                EarlyStopping(monitor=name, mode=mode, patience=patience, min_delta=min_delta)
            )
        return checkpoint, others


def relocated_checkpoint_state(state: dict[str, Any], dirpath: str) -> dict[str, Any]:
    """Return a ModelCheckpoint state saved in another folder with its paths moved to ``dirpath``.

    A run folder copied or moved elsewhere keeps its checkpoints' names; only the folder changed.
    Lightning drops the state of a checkpoint saved elsewhere (its "dirpath has changed" note): the
    resumed run then writes ``last-v1.ckpt`` beside a stale ``last.ckpt`` and forgets its best k.

    Args:
        state: ``ModelCheckpoint.state_dict()`` as the checkpoint saved it.
        dirpath: The folder the callback saves into now.
    """
    saved = state.get("dirpath")
    if not saved or saved == dirpath:
        return state

    def moved(path: Any) -> Any:
        if isinstance(path, str) and path and Path(path).parent == Path(saved):
            return str(Path(dirpath) / Path(path).name)
        return path

    state = {key: moved(value) for key, value in state.items()}
    state["dirpath"] = dirpath
    if isinstance(state.get("best_k_models"), dict):
        state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    return state


@functools.cache  # one class per base, not one per run
def _run_checkpoint_class(base: type) -> type:
    """Return a ModelCheckpoint that resumes a moved run (:func:`relocated_checkpoint_state`)."""

    class RunCheckpoint(base):
        @property
        def state_key(self) -> str:
            # ModelCheckpoint's own key (it names the class): checkpoints stay interchangeable.
            key: str = super().state_key
            return key.replace(type(self).__qualname__, base.__qualname__, 1)

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            if self.dirpath is not None:
                state_dict = relocated_checkpoint_state(state_dict, str(self.dirpath))
            super().load_state_dict(state_dict)

    return RunCheckpoint


def plan_selection(config: Config, logged: list[str] | None, validates: bool) -> Selection:
    """Return the run's :class:`Selection`; raise ConfigError for a metric the run never logs.

    Args:
        config: The run's config.
        logged: The metrics the model logs (None: unknown, for a model of the user's own).
        validates: Whether the run validates.
    """
    monitor = config.checkpoint.monitor
    if monitor is None:
        monitor = "val_loss" if validates else None
    else:
        _check_logged(config, "checkpoint.monitor", monitor, logged, validates)
    stopping = config.trainer.early_stopping
    early: tuple[str, str, int, float] | None = None
    if stopping is not None:
        name = stopping.monitor or monitor
        if name is None:
            raise ConfigError(
                f"{config.source}: trainer.early_stopping: the run does not validate, so it has "
                "no metric to stop on; set its monitor, or data.args.val_fraction / val_classes"
            )
        if stopping.monitor is not None:
            _check_logged(config, "trainer.early_stopping.monitor", name, logged, validates)
        early = (name, monitor_mode(name), stopping.patience, stopping.min_delta)
    return Selection(monitor, monitor_mode(monitor or "val_loss"), early)


def _check_logged(
    config: Config, key: str, name: str, logged: list[str] | None, validates: bool
) -> None:
    if logged is None or name in logged:
        return
    hint = "" if validates else " (it does not validate: set data.args.val_fraction or val_classes)"
    raise ConfigError(
        f"{config.source}: {key}: {name!r} is not a metric this run logs"
        f"{did_you_mean(name, logged)}; it logs: {', '.join(logged)}{hint}"
    )


EPOCH_IN_NAME = re.compile(r"epoch=(\d+)")


def best_epoch(checkpoint: Path) -> int | None:
    """Return the epoch in a checkpoint's file name (``epoch=7-...``), or None."""
    match = EPOCH_IN_NAME.search(checkpoint.name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class TrainingPlan:
    """Everything the train pipeline adds to Lightning's fit for selection and habits.

    Attributes:
        selection: The checkpoint monitor and early stopping.
        validates: Whether the run validates.
        retrieval: The model's retrieval validation, or None.
        freeze_backbone_epochs: Epochs with the backbone frozen.
        ema: The decay of the weights' moving average, or None.
    """

    selection: Selection
    validates: bool
    retrieval: Any
    freeze_backbone_epochs: int
    ema: float | None

    def callbacks(self, config: Config, checkpoints: Path) -> tuple[Any, list[Any]]:
        """Return the ModelCheckpoint and the other callbacks (early stopping, freeze, EMA)."""
        import plp_models

        checkpoint, others = self.selection.callbacks(config, checkpoints)
        if self.freeze_backbone_epochs:
            others.append(plp_models.FreezeBackbone(self.freeze_backbone_epochs))
        if self.ema is not None:
            others.append(plp_models.ExponentialMovingAverage(self.ema))
        return checkpoint, others


def plan_training(config: Config, model: Any, datamodule: Any, validates: bool) -> TrainingPlan:
    """Check and return the run's :class:`TrainingPlan`; set the model's retrieval validation.

    Raises:
        ConfigError: A monitor the run does not log, a backbone to freeze that the model lacks,
            a logger whose package is missing (one line each, before any run folder exists).
    """
    import plp_data
    import plp_models
    from plp_pipelines._trackers import check_loggers

    check_loggers(config)
    split = None
    if validates and isinstance(datamodule, plp_data.PlpDataModule):
        split = datamodule.validation_split()
    retrieval = retrieval_validation(config, model, split)
    if isinstance(model, plp_models.PlpModel):
        model.retrieval_validation = retrieval
        logged: list[str] | None = logged_metrics(model.has_classifier, validates, retrieval)
    else:
        logged = None
    freeze = config.trainer.freeze_backbone_epochs
    if freeze and not isinstance(getattr(model, "backbone", None), torch_module()):
        raise ConfigError(
            f"{config.source}: trainer.freeze_backbone_epochs: {type(model).__name__} has no "
            "'backbone' module to freeze"
        )
    return TrainingPlan(
        plan_selection(config, logged, validates), validates, retrieval, freeze, config.trainer.ema
    )


def torch_module() -> type:
    """Return ``torch.nn.Module`` (imported on use: configs are checked without torch)."""
    from torch import nn

    return nn.Module
