"""Fixtures of plp-pipelines' tests: trained runs shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from plp_pipelines.testing import shared_runs_folder


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder of trained runs (see :mod:`plp_pipelines.testing`)."""
    return shared_runs_folder(tmp_path_factory)
