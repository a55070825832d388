"""The exceptions plp-pipelines raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = ["ConfigError", "PlpError", "RunError", "TrainingDivergedError", "TrainingStoppedError"]


class ConfigError(PlpError, ValueError):
    """A config file or override is wrong; the message names the file, key and what is allowed."""


class RunError(PlpError):
    """A run directory, checkpoint or feature file is missing or unusable."""


class TrainingDivergedError(PlpError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class TrainingStoppedError(PlpError):
    """Training was stopped by a signal (SIGTERM); the message says how to resume it.

    The command line exits with :data:`EXIT_CODE` (128 + SIGTERM), as a process killed by the
    signal would, so schedulers see the preemption.
    """

    EXIT_CODE = 143
