"""The exceptions plp-pipelines raises."""

from __future__ import annotations

from plp_core import PlpError

__all__ = [
    "ConfigError",
    "PlpError",
    "RunError",
    "StoppedError",
    "TrainingDivergedError",
    "TrainingStoppedError",
]


class ConfigError(PlpError, ValueError):
    """A config file or override is wrong; the message names the file, key and what is allowed."""


class RunError(PlpError):
    """A run directory, checkpoint or feature file is missing or unusable."""


class TrainingDivergedError(PlpError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class StoppedError(PlpError):
    """A pipeline was stopped by SIGTERM or Ctrl-C; the message says what is kept and what next.

    The command line exits with :attr:`exit_code`: 143 (128 + SIGTERM) or 130 (128 + SIGINT),
    as a process killed by the signal would, so schedulers see the preemption.
    """

    def __init__(self, message: str, exit_code: int = 143) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TrainingStoppedError(StoppedError):
    """Training was stopped by a signal (SIGTERM or Ctrl-C); the message says how to resume it."""

    EXIT_CODE = 143
