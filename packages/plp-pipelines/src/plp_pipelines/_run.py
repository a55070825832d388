"""An opened run: its paths, config, ``run.json`` record, checkpoints, model and datamodule.

Every pipeline that works on a finished run (evaluate, explain, graph, align, export) opens it
with :meth:`Run.open`; none of them re-reads ``run.json`` or resolves checkpoints by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plp_pipelines._config import Config, load_config
from plp_pipelines._errors import RunError
from plp_pipelines._runs import RunPaths, atomic_write_json, resolve_run

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
        runs_root: str | Path = "runs",
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
        info = RunInfo.read(paths.run_info) if paths.run_info.is_file() else None
        return cls(paths, load_config(paths.config), info)

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
