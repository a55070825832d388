"""Run directories: ``runs/<config name>/<timestamp>/`` and the record of the newest run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from plp_pipelines._errors import RunError

__all__ = [
    "LATEST_FILE",
    "RunPaths",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "create_run_dir",
    "newest_run",
    "record_newest",
    "resolve_run",
]

LATEST_FILE = "LATEST"


class RunPaths:
    """The files of one run directory, by name."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        """The resolved config, ``config.toml``."""
        return self.root / "config.toml"

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        """The folder of CSV and TensorBoard logs."""
        return self.root / "logs"

    @property
    def features(self) -> Path:
        """The folder of extracted features, one ``<split>.npz`` each."""
        return self.root / "features"

    @property
    def plots(self) -> Path:
        """The folder of plots."""
        return self.root / "plots"

    @property
    def metrics(self) -> Path:
        """``metrics.json``."""
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        """``report.md``."""
        return self.root / "report.md"

    @property
    def run_info(self) -> Path:
        """``run.json``: best and last checkpoint, written when training ends."""
        return self.root / "run.json"


def create_run_dir(runs_root: str | Path, name: str) -> Path:
    """Create and return a new, empty ``runs_root/name/<YYYYmmdd-HHMMSS>[-N]`` directory."""
    parent = Path(runs_root) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create run directory under {parent}: {error.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise RunError(f"run directory {parent} is not writable")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{n}" for n in range(1, 1000))]:
        candidate = parent / f"{stamp}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise RunError(f"cannot create run directory {candidate}: {error.strerror}") from None
        return candidate
    raise RunError(f"too many runs started in the same second under {parent}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or kill at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record_newest(run_dir: str | Path, runs_root: str | Path) -> None:
    """Record ``run_dir`` as the newest run of ``runs_root`` (atomically)."""
    run_dir, runs_root = Path(run_dir).resolve(), Path(runs_root).resolve()
    atomic_write_text(runs_root / LATEST_FILE, str(run_dir.relative_to(runs_root)) + "\n")


def newest_run(runs_root: str | Path) -> Path:
    """Return the newest successfully trained run under ``runs_root``."""
    latest = Path(runs_root) / LATEST_FILE
    if not latest.is_file():
        raise RunError(
            f"no run recorded in {runs_root}/ yet: train one first "
            "(uv run invoke train --config configs/digits.toml)"
        )
    run_dir = Path(runs_root) / latest.read_text(encoding="utf-8").strip()
    if not run_dir.is_dir():
        raise RunError(f"{latest} points to {run_dir}, which does not exist")
    return run_dir


def resolve_run(run: str | Path | None, runs_root: str | Path) -> Path:
    """Return ``run`` checked to be a run directory, or the newest run when ``run`` is None."""
    if run is None:
        return newest_run(runs_root)
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.toml").is_file():
        raise RunError(f"{run_dir} is not a plp run directory (no config.toml)")
    return run_dir
