"""An evaluation's staging folder: results written aside, then moved into place as one commit.

Everything an evaluation writes goes to ``<run>/.evaluate-<pid>/`` first, mirroring the run's
layout. Committing writes ``COMMIT.json`` into it (from then on the new results are the run's,
in full) and moves the files into place, ``metrics.json`` and ``report.md`` last, with SIGTERM
and Ctrl-C held back. If the process dies in the middle (power, SIGKILL, a failing disk), the
next :func:`finish_stages` of that run — every pipeline's :meth:`Run.open` and every new
evaluation — moves the rest: the run never keeps a mix of two evaluations. Staging folders of
dead processes that never committed are removed there too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from plp_pipelines._runs import RunPaths, atomic_write_json
from plp_pipelines._stopping import signals_held

__all__ = ["STAGE_PREFIX", "Stage", "finish_stages"]

STAGE_PREFIX = ".evaluate-"
COMMIT_RECORD = "COMMIT.json"


class Stage:
    """The staging folder of this process's evaluation of a run."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        finish_stages(paths.root)
        self.root = paths.root / f"{STAGE_PREFIX}{os.getpid()}"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir()

    def file(self, final: Path) -> Path:
        """Return the staged path of the run file ``final``."""
        staged = self.root / final.relative_to(self.paths.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def commit(self, stale: list[Path]) -> None:
        """Make the staged files the run's (metrics and report last); remove ``stale`` files."""
        with signals_held():
            record = [str(path.relative_to(self.paths.root)) for path in stale]
            atomic_write_json(self.root / COMMIT_RECORD, {"stale": record})
            _roll_forward(self.paths.root, self.root)

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        shutil.rmtree(self.root, ignore_errors=True)


def finish_stages(run_root: Path) -> None:
    """Finish the committed staging folders of ``run_root`` whose process is gone; remove the rest.

    Folders of live processes (an evaluation running now) are left alone.
    """
    for stage in run_root.glob(f"{STAGE_PREFIX}*"):
        pid = stage.name.removeprefix(STAGE_PREFIX)
        if not pid.isdigit() or _alive(int(pid)) or not stage.is_dir():
            continue
        if not (stage / COMMIT_RECORD).is_file():
            shutil.rmtree(stage, ignore_errors=True)
            continue
        try:
            _roll_forward(run_root, stage)
        except OSError:  # a read-only run: finished by the next writer
            continue


def _alive(pid: int) -> bool:
    """Return whether another process ``pid`` runs (this process's own folders are finished)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _roll_forward(run_root: Path, stage: Path) -> None:
    """Move what is left in the committed ``stage`` into ``run_root``; remove its stale files."""
    try:
        stale = json.loads((stage / COMMIT_RECORD).read_text(encoding="utf-8"))["stale"]
    except (OSError, ValueError, KeyError, TypeError):
        stale = []
    last = {stage / RunPaths(run_root).metrics.name, stage / RunPaths(run_root).report.name}
    staged = sorted(
        p for p in stage.rglob("*") if p.is_file() and p not in last and p.name != COMMIT_RECORD
    )
    for path in [*staged, *sorted(last)]:
        if path.exists():
            final = run_root / path.relative_to(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
    for relative in stale:
        if isinstance(relative, str) and not _escapes(Path(relative)):
            (run_root / relative).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)


def _escapes(relative: Path) -> bool:
    return relative.is_absolute() or ".." in relative.parts
