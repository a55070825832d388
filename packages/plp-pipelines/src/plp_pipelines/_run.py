"""An opened run: its paths, config, ``run.json`` record, checkpoints, model and datamodule.

Every pipeline opens its run here: training creates one with :meth:`Run.create`, resuming
finds and opens one with :meth:`Run.open_unfinished`, and the pipelines that work on a
finished run (evaluate, explain, graph, align, export) use :meth:`Run.open`; none of them
re-reads ``run.json`` or resolves checkpoints by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plp_pipelines._config import Config, load_config
from plp_pipelines._errors import RunError
from plp_pipelines._runs import (
    RUNS_ROOT,
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    create_run_dir,
    resolve_run,
)
from plp_pipelines._staging import finish_stages

__all__ = ["Run", "RunInfo"]


class RunInfo(BaseModel):
    """``run.json``: written when training finishes; what the run is and which checkpoints.

    Attributes:
        best_checkpoint: File name (in ``checkpoints/``) of the best checkpoint.
        last_checkpoint: File name of the last checkpoint.
        epochs: Epochs trained.
        seed: The run's seed.
        made_from: ``config`` (rebuilt from ``config.toml``) or ``objects`` (a model and a
            datamodule handed to :func:`plp_pipelines.train` from Python).
        model: The model's class (``module.Class``).
        datamodule: The datamodule's class.
        data_pipeline: How training batches were served (``device`` or ``workers``), if known.
        monitor: The metric that chose ``best_checkpoint`` (None: the last epoch).
        best_score: Its value there.
        best_epoch: The epoch of ``best_checkpoint``.
        trackers: MLflow / W&B run ids (``{"mlflow": ..., "wandb": ...}``), if any.
        compiled: True when the networks were trained under ``torch.compile``
            (``[trainer] compile``).
        evaluation: ``pending`` while the evaluation after training has not finished (it was
            stopped or failed: ``invoke train --resume`` runs it), ``done`` once it has; absent
            when no evaluation followed training.
    """

    model_config = ConfigDict(extra="forbid")

    best_checkpoint: str
    last_checkpoint: str
    epochs: int = Field(ge=0)
    seed: int
    made_from: Literal["config", "objects"] = "config"
    model: str | None = None
    datamodule: str | None = None
    data_pipeline: str | None = None
    monitor: str | None = None
    best_score: float | None = None
    best_epoch: int | None = None
    trackers: dict[str, str] | None = None
    compiled: bool | None = None
    evaluation: Literal["pending", "done"] | None = None

    @classmethod
    def read(cls, path: Path) -> RunInfo:
        """Return the record at ``path``.

        Raises:
            RunError: The file is not JSON or not a run record (one line naming it).
        """
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunError(f"{path}: not a JSON run record ({error})") from None
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
            raise RunError(f"{path}: not a plp run record: {where}: {problem['msg']}") from None

    def write(self, path: Path) -> None:
        """Write the record to ``path`` atomically."""
        atomic_write_json(path, self.model_dump(exclude_none=True))


def _unfinished(paths: RunPaths) -> bool:
    """Return whether the run has no ``run.json`` or one whose evaluation is pending."""
    if not paths.run_info.exists():
        return True
    try:
        return RunInfo.read(paths.run_info).evaluation == "pending"
    except RunError:
        return False


def class_name(obj: object) -> str:
    """Return ``module.Class`` of ``obj``."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class Run:
    """A run directory opened for a pipeline.

    Attributes:
        paths: The run's files by name.
        config: The run's ``config.toml``.
        info: Its ``run.json`` record, or None while training has not finished.
    """

    def __init__(self, paths: RunPaths, config: Config, info: RunInfo | None) -> None:
        self.paths = paths
        self.config = config
        self.info = info

    @classmethod
    def open(
        cls,
        run: str | Path | None = None,
        *,
        runs_root: str | Path = RUNS_ROOT,
        checkpoint: str | Path | None = None,
    ) -> Run:
        """Return the run ``run``, the run holding ``checkpoint``, or the newest run.

        Raises:
            RunError: No such run, a checkpoint that does not exist, or an unreadable record.
        """
        if checkpoint is not None and run is None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise RunError(f"checkpoint {checkpoint} does not exist")
            run = checkpoint.resolve().parent.parent
        paths = RunPaths(resolve_run(run, runs_root))
        finish_stages(paths.root)  # an evaluation's commit cut short: finish it first
        info = RunInfo.read(paths.run_info) if paths.run_info.is_file() else None
        return cls(paths, load_config(paths.config), info)

    @classmethod
    def create(cls, config: Config, text: str, *, runs_root: str | Path = RUNS_ROOT) -> Run:
        """Return a new run ``runs_root/<config name>/<timestamp>/`` holding ``config.toml``.

        Args:
            config: The recipe the run trains.
            text: What ``config.toml`` says (the resolved config, or what objects were used).
            runs_root: Folder holding the run directories.

        Raises:
            RunError: The folder cannot be created or written.
        """
        paths = RunPaths(create_run_dir(runs_root, config.name))
        atomic_write_text(paths.config, text)
        return cls(paths, config, None)

    @classmethod
    def open_unfinished(
        cls, run: str | Path | None = None, *, name: str | None = None, runs_root: str | Path
    ) -> Run:
        """Return the unfinished run ``run``, or the newest unfinished run of config ``name``.

        A run is unfinished while it has no ``run.json`` (it can be resumed when it also has
        ``checkpoints/last.ckpt``, :meth:`last_checkpoint`) or while the evaluation after its
        training is pending (:attr:`evaluation_pending`).

        Raises:
            RunError: No run named or found, or the run finished training and evaluation.
        """
        if run is None:
            run = cls._newest_unfinished(Path(runs_root), name)
        opened = cls.open(run, runs_root=runs_root)
        if opened.evaluation_pending:
            return opened
        if opened.info is not None:
            raise RunError(f"{opened.root} finished training already: nothing to resume")
        opened.last_checkpoint()
        return opened

    @property
    def evaluation_pending(self) -> bool:
        """Whether training finished but the evaluation that was to follow it did not."""
        return self.info is not None and self.info.evaluation == "pending"

    @staticmethod
    def _newest_unfinished(runs_root: Path, name: str | None) -> Path:
        if name is None:
            raise RunError("resume: name the run (--run) or the config whose newest run to resume")
        folder = runs_root / name
        candidates = sorted(folder.glob("*/checkpoints/last.ckpt")) if folder.is_dir() else []
        unfinished = [c.parent.parent for c in candidates if _unfinished(RunPaths(c.parent.parent))]
        if not unfinished:
            raise RunError(
                f"resume: no unfinished run of {name!r} under {runs_root}/ has a "
                "checkpoints/last.ckpt"
            )
        return unfinished[-1]

    def last_checkpoint(self) -> Path:
        """Return ``checkpoints/last.ckpt``, checked to exist.

        Raises:
            RunError: The run has no last checkpoint (it never finished an epoch).
        """
        last = self.paths.checkpoints / "last.ckpt"
        if not last.is_file():
            raise RunError(f"{self.root} has no checkpoints/last.ckpt to resume from")
        return last

    @property
    def root(self) -> Path:
        """The run directory."""
        return self.paths.root

    @property
    def made_from_objects(self) -> bool:
        """Whether the run was trained from Python objects rather than its config."""
        return self.info is not None and self.info.made_from == "objects"

    def checkpoint(self, checkpoint: str | Path | None = None) -> Path:
        """Return ``checkpoint`` or the run's best checkpoint, checked to exist.

        Raises:
            RunError: The run has not finished training, or the file does not exist.
        """
        if checkpoint is not None:
            path = Path(checkpoint)
        elif self.info is not None:
            path = self.paths.checkpoints / self.info.best_checkpoint
        else:
            raise RunError(f"{self.root} has no run.json: its training did not finish")
        if not path.is_file():
            raise RunError(f"checkpoint {path} does not exist")
        return path

    def _needs_objects(self, what: str) -> None:
        if self.made_from_objects and self.info is not None:
            raise RunError(
                f"run {self.root} was trained from Python objects ({what}: "
                f"{getattr(self.info, what)}), not from its config: pass the {what} object "
                f"from Python (e.g. plp_pipelines.evaluate(run, {what}=...))"
            )

    def build_datamodule(self, datamodule: Any = None) -> Any:
        """Return ``datamodule`` or the one the run's config names."""
        if datamodule is not None:
            return datamodule
        self._needs_objects("datamodule")
        from plp_pipelines._build import build_datamodule

        return build_datamodule(self.config)

    def load_model(self, checkpoint: str | Path | None = None, model: Any = None) -> Any:
        """Return the model of ``checkpoint`` (default: the best), into ``model`` if given.

        The checkpoint must have the architecture of the run's config (one line otherwise).
        """
        from plp_pipelines._checkpoints import load_model

        path = self.checkpoint(checkpoint)
        if model is None:
            self._needs_objects("model")
        return load_model(path, model, self.config, f"the config of run {self.root}")
