"""Trained runs shared by a test session: each recipe trained once, each test given its own copy.

Training a run is the slowest step of most pipeline tests. ``shared_run`` trains a recipe (a
config file plus ``--set`` overrides) the first time any test of the session asks for it, under
a lock so that parallel pytest-xdist workers wait for one another instead of training it twice,
and copies the finished run folder into the caller's own runs root. A test may then evaluate,
export or damage its copy freely.

Copies are for tests that read or evaluate a run. Checkpoints keep the absolute folder that
Lightning's checkpoint callback saved into, so a test that *resumes* training must train its own.

Usage in a ``conftest.py`` (the folder must be shared by every worker of one session)::

    @pytest.fixture(scope="session")
    def shared_runs(tmp_path_factory):
        return shared_runs_folder(tmp_path_factory)

    def test_something(shared_runs, tmp_path):
        run = shared_run(shared_runs, "configs/digits.toml", ["trainer.epochs=1"], tmp_path)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_once", "shared_run", "shared_runs_folder"]

_DONE = "DONE"


def shared_runs_folder(tmp_path_factory: Any) -> Path:
    """Return this test session's folder of shared runs, the same for every xdist worker.

    Args:
        tmp_path_factory: pytest's ``tmp_path_factory``; under pytest-xdist each worker's base
            folder sits inside the session's, so the shared folder is the parent of it.
    """
    base = Path(tmp_path_factory.getbasetemp())
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / "plp-shared-runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_once(folder: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Return ``folder/key``, built by ``build(folder/key)`` once per session, whatever the worker.

    The first caller builds it under a file lock while the others wait; a build left half done by
    a worker that died is removed and done again. The folder counts as built only once ``build``
    has returned (a marker file is written then).

    Args:
        folder: The session's shared folder (:func:`shared_runs_folder`).
        key: The name of what is built (a file-system-safe name, unique to its contents).
        build: Fills the folder it is given (which does not exist yet).
    """
    built = folder / key
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (built / _DONE).exists():
            shutil.rmtree(built, ignore_errors=True)  # a worker that died half way
            build(built)
            (built / _DONE).write_text("")
    return built


def shared_run(
    folder: Path,
    config: str | Path,
    overrides: Sequence[str],
    runs_root: Path,
) -> Path:
    """Return a copy, under ``runs_root``, of the run a recipe trains; train it once per session.

    Args:
        folder: The session's shared folder (:func:`shared_runs_folder`).
        config: The TOML recipe.
        overrides: ``--set`` style overrides, e.g. ``["trainer.epochs=1"]``.
        runs_root: The caller's runs root; the run is copied to ``runs_root/<name>/<stamp>`` and
            ``runs_root/LATEST`` names it, as a fresh training would leave them.

    Returns:
        The copied run folder.
    """
    from plp_pipelines import load_config, train
    from plp_pipelines._runs import record_newest

    def build(built: Path) -> None:
        configured = load_config(Path(config), list(overrides))
        trained = train(configured, runs_root=built / "runs", progress_bar=False)
        (built / "relative").write_text(str(trained.run_dir.relative_to(built / "runs")))

    text = Path(config).read_text()
    key = hashlib.sha256("\n".join([text, *overrides]).encode()).hexdigest()[:16]
    built = build_once(folder, key, build)
    relative = Path((built / "relative").read_text())
    target = Path(runs_root) / relative
    shutil.copytree(built / "runs" / relative, target)
    record_newest(target, runs_root)
    return target
