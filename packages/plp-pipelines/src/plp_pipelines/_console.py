"""A quiet console: Lightning's tips, device lines and known-harmless warnings kept out of sight.

The command-line tasks call :func:`quiet_console` unless ``--verbose`` is given; Python users who
want the same call it themselves. Errors and plp's own output are untouched. The experiment
trackers are quieted too: MLflow's INFO lines (``Creating initial MLflow database tables...``)
and W&B's ``wandb:`` lines (a run's history and summary, how to sync it) stay in their own
records.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

__all__ = ["QUIET_WARNINGS", "quiet_console"]

# Lightning's loggers: "GPU available", "TPU available", "Tip: ... litlogger", "Loading
# `train_dataloader` to estimate ...", "`Trainer.fit` stopped ..." are INFO messages there.
# Importing Lightning sets its top-level logger back to INFO, so the loggers that emit them
# (children, which Lightning leaves alone) are set too.
LIGHTNING_LOGGERS = (
    "pytorch_lightning",
    "pytorch_lightning.utilities.rank_zero",
    "pytorch_lightning.trainer.connectors.signal_connector",  # "Received SIGTERM" (plp says it)
    "lightning",
    "lightning.pytorch",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric",
    "lightning_fabric.utilities.rank_zero",
    "lightning_fabric.utilities.distributed",  # "Initializing distributed: GLOBAL_RANK: 0, ..."
)

# Warnings that say nothing a plp user can act on (plp chooses these settings on purpose).
QUIET_WARNINGS = (
    r".*does not have many workers.*",  # plp's device path serves batches without workers
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\).*",  # torch's pytree deprecation inside Lightning
    r".*It is recommended to use `self\.log\(.*sync_dist=True\)`.*",  # plp syncs what it compares
    r".*GPU available but not used.*",
    # DDP's note that a layer's gradient layout differs from its bucket's (a copy, not an error).
    r".*Grad strides do not match bucket view strides.*",
    r".*Starting from v1\.9\.0, `tensorboardX`.*",
    r".*TensorBoard support.*",
    # A resumed run continues in its own folders on purpose; plp keeps the CSV log's history.
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*Checkpoint directory .* exists and is not empty.*",
)


# mlflow sets its loggers to the level this variable names when it is imported (INFO by
# default); W&B prints nothing when the other is true. A value the user set is kept; DDP
# workers inherit both.
TRACKER_ENVIRONMENT = {"MLFLOW_LOGGING_LEVEL": "WARNING", "WANDB_SILENT": "true"}


class _DropMessages(logging.Filter):
    """Drops the log records whose message matches a pattern."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


# Lightning's MLflow logger warns when it creates an experiment, which a new config always does.
_NEW_EXPERIMENT = _DropMessages(r"Experiment with name .* not found\. Creating it\.$")


def quiet_console() -> None:
    """Quiet Lightning, MLflow and W&B on the console and ignore :data:`QUIET_WARNINGS`."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for variable, value in TRACKER_ENVIRONMENT.items():
        os.environ.setdefault(variable, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # where mlflow is imported already
    logging.getLogger("pytorch_lightning.loggers.mlflow").addFilter(_NEW_EXPERIMENT)
