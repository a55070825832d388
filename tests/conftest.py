"""Shared helpers for the cross-package tests: run ``invoke`` as a user would."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from plp_pipelines.testing import build_once, shared_run, shared_runs_folder

ROOT = Path(__file__).resolve().parents[1]


def _fork_server() -> Any:
    """Return the client of tests/_cli_server.py (loaded by path: tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_cli_server", ROOT / "tests" / "_cli_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ForkServer(ROOT)


_SERVER = _fork_server()


def _environment(env: dict[str, str] | None, unset: Sequence[str] = ()) -> dict[str, str]:
    """Return this process's environment, unbuffered, with ``env`` added and ``unset`` left out."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return {key: value for key, value in merged.items() if key not in unset}


def run_invoke(
    *args: str,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    fresh: bool = False,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m invoke ARGS`` in ``cwd`` (the repository) and return the finished process.

    ``env`` adds to (or replaces) variables of this process's environment. The command runs in
    a process forked from a server that has imported torch and Lightning once (_cli_server.py);
    ``fresh`` (or an ``env`` that changes how Python starts: ``PYTHON*``) starts a new Python.
    """
    if fresh or any(key.startswith("PYTHON") for key in env or {}):
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_environment(env),
            check=False,
        )
    return _SERVER.run(args, _environment(env), timeout, cwd)


def start_invoke(
    *args: str, env: dict[str, str] | None = None, unset: Sequence[str] = (), cwd: Path = ROOT
) -> Any:
    """Start ``python -m invoke ARGS`` (forked as in :func:`run_invoke`) and return it running:
    ``pid``, ``poll()``, ``wait(timeout)``, ``send_signal(n)``, ``kill()`` (its process group),
    ``communicate(timeout) -> (stdout, stderr)``. One command at a time per test process.
    ``env`` adds variables to this process's environment, ``unset`` leaves some out."""
    return _SERVER.start(args, _environment(env, unset), cwd)


@pytest.fixture(scope="session")
def invoke():
    """The :func:`run_invoke` helper as a fixture."""
    return run_invoke


@pytest.fixture(scope="session")
def invoke_started():
    """The :func:`start_invoke` helper as a fixture."""
    return start_invoke


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's folder of trained runs, one training per recipe (plp_pipelines.testing)."""
    return shared_runs_folder(tmp_path_factory)


MARKET_OVERRIDES = (
    "data.image_size=[64, 32]",
    "data.num_workers=0",
    "model.backbone={name='small_convnet'}",
    "model.embedding_size=32",
    "trainer.epochs=1",
    "evaluate.umap=false",
)


@pytest.fixture
def market_run(shared_runs: Path, tmp_path: Path) -> Path:
    """configs/market1501.toml trained for one epoch on plp_data.testing's Market-1501 set (a
    small backbone and images, no download), evaluated: this test's own copy of a shared run."""
    from plp_data.testing import market1501_names, write_market1501

    data = build_once(
        shared_runs,
        "market1501-data",
        lambda folder: write_market1501(folder / "market", market1501_names()),
    )
    root = data / "market"
    return shared_run(
        shared_runs,
        ROOT / "configs" / "market1501.toml",
        [f"data.root={root}", *MARKET_OVERRIDES],
        tmp_path / "runs",
    )


def read_wandb_records(path: Path) -> list[Any]:
    """Read a W&B offline ``.wandb`` file: LevelDB-log blocks of W&B protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending += chunk
        if kind in (1, 4):  # a FULL record, or the LAST piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture(scope="session")
def wandb_records():
    """The :func:`read_wandb_records` helper as a fixture."""
    return read_wandb_records
