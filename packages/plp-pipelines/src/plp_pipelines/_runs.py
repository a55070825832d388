"""Run directories: ``runs/<config name>/<timestamp>/`` and the record of the newest run."""

from __future__ import annotations

import errno
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
    "RUNS_ROOT",
    "RunPaths",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_runs_root",
    "create_run_dir",
    "newest_run",
    "record_newest",
    "resolve_run",
]

LATEST_FILE = "LATEST"
#: Where run directories go unless a pipeline is told otherwise (``--runs``).
RUNS_ROOT = "runs"


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


def check_runs_root(runs_root: str | Path) -> None:
    """Raise RunError if ``runs_root`` cannot record runs (checked before training starts).

    ``runs_root/LATEST`` must be a file (or absent): a folder or anything else there would make
    the run unrecordable after training, so it is refused now, in one line.
    """
    latest = Path(runs_root) / LATEST_FILE
    if latest.is_symlink() or (latest.exists() and not latest.is_file()):
        raise RunError(
            f"{latest} is not plp's record of the newest run (a file): it is a "
            f"{'symlink' if latest.is_symlink() else 'folder'}; move it away"
        )
    if Path(runs_root).exists() and not Path(runs_root).is_dir():
        raise RunError(f"cannot create run directory under {runs_root}: Not a directory")


def create_run_dir(runs_root: str | Path, name: str, *, label: str = "") -> Path:
    """Create and return a new, empty ``runs_root/name/<YYYYmmdd-HHMMSS>[-label][-N]`` directory.

    ``label`` names what the folder holds when it is no run (``seeds``: a seed summary).
    """
    if name == LATEST_FILE:
        raise RunError(f"{name!r} is reserved: {runs_root}/{LATEST_FILE} records the newest run")
    parent = Path(runs_root) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = STORAGE_ERRORS.get(error.errno or 0, error.strerror)
        raise RunError(f"cannot create run directory under {parent}: {reason}") from None
    if not os.access(parent, os.W_OK):
        raise RunError(f"run directory {parent} is not writable")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{n}" for n in range(1, 1000))]:
        candidate = parent / f"{stamp}{'-' + label if label else ''}{suffix}"
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
    The file gets the permissions the umask gives a new file (``mkstemp`` alone gives 0600).

    Raises:
        RunError: The disk is full, read-only or not writable (one line naming the path).
    """
    path = Path(path)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in STORAGE_ERRORS:
            raise RunError(f"cannot write {path}: {STORAGE_ERRORS[error.errno]}") from None
        raise
    return path


# OS errors a full, read-only or locked-down disk gives, in the user's words.
STORAGE_ERRORS = {
    errno.ENOSPC: "disk full (no space left on the device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def _umask() -> int:
    """Return the process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def record_newest(run_dir: str | Path, runs_root: str | Path) -> bool:
    """Record ``run_dir`` as the newest run of ``runs_root`` (atomically), relative to it.

    The path is taken as written, symlinks not resolved, so a ``runs/<name>`` that is a link to
    another disk keeps its runs recorded as ``<name>/<timestamp>``. A run outside ``runs_root``
    (resumed with ``--run`` elsewhere) is not recorded: ``LATEST`` only ever names a folder
    under its root. Returns whether it was recorded.
    """
    relative = os.path.relpath(os.path.abspath(run_dir), os.path.abspath(runs_root))
    if relative == os.curdir or relative.split(os.sep)[0] == os.pardir:
        return False
    atomic_write_text(Path(runs_root) / LATEST_FILE, relative + "\n")
    return True


def newest_run(runs_root: str | Path) -> Path:
    """Return the newest successfully trained run under ``runs_root``."""
    latest = Path(runs_root) / LATEST_FILE
    if not latest.is_file():
        raise RunError(
            f"no run recorded in {runs_root}/ yet: train one first "
            "(uv run invoke train --config configs/digits.toml)"
        )
    try:
        recorded = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot read {latest}: {error}") from None
    if not recorded or Path(recorded).is_absolute() or ".." in Path(recorded).parts:
        raise RunError(
            f"{latest} holds {recorded!r}, not a run folder under {runs_root}/: "
            "train a run to rewrite it, or name the run with --run"
        )
    run_dir = Path(runs_root) / recorded
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
