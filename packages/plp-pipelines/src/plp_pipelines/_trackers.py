"""Experiment trackers: Lightning's CSV, TensorBoard, MLflow and W&B loggers for a run.

``[logging] loggers`` names them. MLflow and W&B get the same content: the resolved config as
flat parameters, every per-epoch metric (through Lightning), the final ``metrics.json`` values,
``report.md``, ``metrics.json`` and the plots as artifacts, and tags naming the config and the
run folder. Their run ids are kept in ``logs/trackers.json`` from the start (a resumed run
continues the same MLflow / W&B run) and in ``run.json`` when training finishes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from plp_pipelines._config import Config
from plp_pipelines._errors import ConfigError
from plp_pipelines._runs import RunPaths, atomic_write_json

__all__ = ["EXTRAS", "Trackers", "check_loggers", "flat_params"]

# Logger name -> (module to import, the extra that installs it).
EXTRAS = {"mlflow": ("mlflow", "plp-pipelines[mlflow]"), "wandb": ("wandb", "plp-pipelines[wandb]")}
TRACKERS_FILE = "trackers.json"
# MLflow metric names allow letters, digits and ``_ - . : / `` and spaces.
MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.:/ ]")


def check_loggers(config: Config) -> None:
    """Raise ConfigError if a logger of ``[logging] loggers`` lacks its package (one line)."""
    for name in config.logging.loggers:
        if name in EXTRAS and not _installed(EXTRAS[name][0]):
            module, extra = EXTRAS[name]
            raise ConfigError(
                f"{config.source}: logging.loggers: {name!r} needs the {module} package, "
                f"which is not installed: pip install '{extra}'"
            )


def _installed(module: str) -> bool:
    """Return whether ``module`` can be imported (without importing it: mlflow takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def flat_params(config: Config) -> dict[str, Any]:
    """Return the resolved config as flat ``section.key`` parameters (lists and None as text)."""
    return dict(_flatten(config.model_dump(mode="json")))


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, bool | int | float | str):
            yield name, value
        else:
            yield name, json.dumps(value)


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Return the numbers of ``metrics.json`` as ``test/<section>/<key>`` (no lists, no text)."""
    flat = {}
    for section, values in metrics.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"test/{section}/{key}"] = float(value)
    return flat


def mlflow_name(name: str) -> str:
    """Return ``name`` as MLflow accepts it: ``@`` becomes ``_at_``, other signs ``_``."""
    return MLFLOW_UNSAFE.sub("_", name.replace("@", "_at_"))


class Trackers:
    """The Lightning loggers of one run, and what is sent to MLflow / W&B after evaluation.

    Args:
        config: The run's config.
        paths: The run directory.
        runs_root: Folder of the runs (the default MLflow store lives there).
        rank: The process's global rank (only rank 0 creates tracker runs and writes).
    """

    def __init__(self, config: Config, paths: RunPaths, runs_root: str | Path, rank: int) -> None:
        self.config = config
        self.paths = paths
        self.runs_root = Path(runs_root).resolve()
        self.rank = rank
        self.ids: dict[str, str] = self._read_ids()
        self.loggers: list[Any] = [self._build(name) for name in config.logging.loggers]

    def _read_ids(self) -> dict[str, str]:
        path = self.paths.logs / TRACKERS_FILE
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: str(v) for k, v in ids.items()} if isinstance(ids, dict) else {}

    def _build(self, name: str) -> Any:
        from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

        if name == "csv":
            return CSVLogger(self.paths.root, name="logs", version="csv")
        if name == "tensorboard":
            return TensorBoardLogger(self.paths.root, name="logs", version="tensorboard")
        if name == "mlflow":
            return self._mlflow()
        return self._wandb()

    @property
    def tags(self) -> dict[str, str]:
        """The tags naming the config and the run folder."""
        return {
            "plp.config": self.config.source,
            "plp.config_name": self.config.name,
            "plp.run_dir": str(self.paths.root.resolve()),
        }

    def _mlflow(self) -> Any:
        from pytorch_lightning.loggers import MLFlowLogger

        settings = self.config.logging.mlflow
        local = settings.tracking_uri is None
        uri = settings.tracking_uri or f"sqlite:///{self.runs_root / 'mlflow.db'}"

        class _PlpMLFlowLogger(MLFlowLogger):
            def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
                super().log_metrics({mlflow_name(k): v for k, v in metrics.items()}, step)

        logger = _PlpMLFlowLogger(
            experiment_name=settings.experiment or self.config.name,
            run_name=f"{self.config.name}/{self.paths.root.name}",
            tracking_uri=uri,
            tags=self.tags,
            artifact_location=(self.runs_root / "mlartifacts").as_uri() if local else None,
            run_id=self.ids.get("mlflow"),
        )
        if self.rank == 0:
            self.ids["mlflow"] = str(logger.run_id)  # creates the run (once)
            self._write_ids()
            logger.log_hyperparams({mlflow_name(k): v for k, v in flat_params(self.config).items()})
        return logger

    def _wandb(self) -> Any:
        from pytorch_lightning.loggers import WandbLogger

        settings = self.config.logging.wandb
        if "wandb" not in self.ids and self.rank == 0:
            self.ids["wandb"] = secrets.token_hex(6)  # W&B run ids: up to 64 letters and digits
            self._write_ids()

        class _PlpWandbLogger(WandbLogger):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                # Lightning passes anonymous=None, which wandb >= 0.22 warns about on every run.
                if self._wandb_init.get("anonymous") is None:
                    self._wandb_init.pop("anonymous", None)

        logger = _PlpWandbLogger(
            name=f"{self.config.name}/{self.paths.root.name}",
            save_dir=str(self.paths.logs),
            project=settings.project or self.config.name,
            entity=settings.entity,
            id=self.ids.get("wandb"),
            resume="allow",
            mode=settings.mode,
            tags=[self.config.name],
            config=flat_params(self.config),
            notes=f"plp run {self.paths.root.resolve()} ({self.config.source})",
        )
        return logger

    def _write_ids(self) -> None:
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.paths.logs / TRACKERS_FILE, self.ids)

    def close(self, exit_code: int, preempted: bool = False) -> None:
        """Finish the W&B runs of a fit that did not end (stopped, failed, interrupted).

        Lightning leaves them open; the process's W&B service (or a parent's, which
        ``WANDB_SERVICE`` names) would then hold the run id, and resuming it there fails with
        "run ID ... is in use". ``preempted`` marks the run as preempted first (SIGTERM).
        """
        for logger in self.loggers:
            run = getattr(logger, "_experiment", None) if "Wandb" in type(logger).__name__ else None
            if run is None:  # never started (or not rank 0)
                continue
            if preempted:
                run.mark_preempting()
            run.finish(exit_code=exit_code)

    def publish(self, metrics: Mapping[str, Any]) -> None:
        """Send the final metrics and the report, metrics and plots to MLflow and W&B."""
        if self.rank != 0:
            return
        numbers = final_metrics(metrics)
        files = [p for p in (self.paths.report, self.paths.metrics) if p.is_file()]
        plots = self.paths.plots
        for logger in self.loggers:
            kind = type(logger).__name__
            if "MLFlow" in kind:
                client, run_id = logger.experiment, logger.run_id
                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                batch = [Metric(mlflow_name(k), v, now, 0) for k, v in numbers.items()]
                for start in range(0, len(batch), 1000):
                    client.log_batch(run_id, metrics=batch[start : start + 1000])
                for path in files:
                    client.log_artifact(run_id, str(path))
                if plots.is_dir():
                    client.log_artifacts(run_id, str(plots), "plots")
            elif "Wandb" in kind:
                self._publish_wandb(logger, numbers, files, plots)

    def _publish_wandb(
        self, logger: Any, numbers: dict[str, float], files: list[Path], plots: Path
    ) -> None:
        import wandb

        run = logger.experiment
        run.summary.update(numbers)
        artifact = wandb.Artifact(f"{self.config.name}-results", type="results")
        for path in files:
            artifact.add_file(str(path))
        if plots.is_dir():
            artifact.add_dir(str(plots), name="plots")
        run.log_artifact(artifact)
        run.finish()
