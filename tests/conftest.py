"""Shared helpers for the cross-package tests: run ``invoke`` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plp_pipelines.testing import shared_runs_folder

ROOT = Path(__file__).resolve().parents[1]


def run_invoke(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m invoke ARGS`` in the repository root and return the finished process.

    ``env`` adds to (or replaces) variables of this process's environment.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="session")
def invoke():
    """The :func:`run_invoke` helper as a fixture."""
    return run_invoke


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder of trained runs, one training per recipe (plp_pipelines.testing)."""
    return shared_runs_folder(tmp_path_factory)
