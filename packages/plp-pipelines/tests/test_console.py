"""The quiet console: trackers' chatter off, a user's own tracker settings kept."""

from __future__ import annotations

import logging

import pytest

from plp_pipelines import _console


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch):
    """Run quiet_console with the environment and loggers restored afterwards."""
    for variable in _console.TRACKER_ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    levels = {
        name: logging.getLogger(name).level for name in ("mlflow", *_console.LIGHTNING_LOGGERS)
    }
    mlflow_lightning = logging.getLogger("pytorch_lightning.loggers.mlflow")
    yield _console.quiet_console
    mlflow_lightning.removeFilter(_console._NEW_EXPERIMENT)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_quiet_console_silences_trackers_but_keeps_what_the_user_set(quiet, monkeypatch) -> None:
    import os

    monkeypatch.setenv("WANDB_SILENT", "false")
    quiet()
    assert os.environ["WANDB_SILENT"] == "false"  # the user's choice
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"
    assert logging.getLogger("mlflow").getEffectiveLevel() == logging.WARNING


def test_quiet_console_drops_only_lightnings_new_experiment_line(quiet, caplog) -> None:
    quiet()
    logger = logging.getLogger("pytorch_lightning.loggers.mlflow")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Experiment with name digits not found. Creating it.")
        logger.warning("Discarding metric with string value x=y.")
    assert [record.getMessage() for record in caplog.records] == [
        "Discarding metric with string value x=y."
    ]


def test_quiet_console_hides_the_notes_of_every_ddp_run(quiet) -> None:
    """DDP's notes, in Lightning's and torch's own words, are not shown; other warnings are."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet()
        for message in (
            "It is recommended to use `self.log('train_loss', ..., sync_dist=True)` when logging "
            "on epoch level in distributed setting to accumulate the metric across devices.",
            "Grad strides do not match bucket view strides. This may indicate grad was not "
            "created according to the gradient layout contract.",
            "a warning of the user's own",
        ):
            warnings.warn(message, UserWarning, stacklevel=1)
    assert [str(warning.message) for warning in caught] == ["a warning of the user's own"]
    distributed = logging.getLogger("lightning_fabric.utilities.distributed")
    assert not distributed.isEnabledFor(logging.INFO)  # "Initializing distributed: ..."
