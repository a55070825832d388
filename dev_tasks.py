"""plp's developer tasks (lint, test, bench) and the short flags of every task.

Kept apart from the user's tasks in tasks.py; invoke finds them because tasks.py imports them
(invoke puts tasks.py's folder on ``sys.path``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Context, Exit, Task

__all__ = ["MAX_FILE_LINES", "SHORT_FLAGS", "bench", "files_over", "lint", "task", "test"]

SHORT_FLAGS = {
    "config": "c",
    "run": "r",
    "checkpoint": "k",
    "set": "s",
    "method": "m",
    "algorithm": "a",
    "layer": "l",
    "output": "o",
    "images": "i",
    "query": "q",
    "verbose": "v",
}
"""Long option -> its one-letter flag, the same on every task; other options are long only."""


class _Task(Task[Any]):
    """A task whose short flags are :data:`SHORT_FLAGS`'s, not invoke's first free letter."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        long = opts["names"][0]
        opts["names"] = [long, *([SHORT_FLAGS[long]] if long in SHORT_FLAGS else [])]
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    """``invoke.task`` whose tasks take :data:`SHORT_FLAGS` (``@task`` or ``@task(help=...)``)."""
    from invoke import task as invoke_task

    decorate: Callable[..., Any] = invoke_task
    return decorate(*args, klass=_Task, **kwargs)


@task
def lint(c: Context) -> None:
    """Check formatting and lint with ruff (complexity <= 15), file lengths, then mypy."""
    c.run("ruff format --check .", pty=False)
    c.run("ruff check .", pty=False)
    too_long = files_over(MAX_FILE_LINES)
    if too_long:
        raise Exit(f"plp: files over {MAX_FILE_LINES} lines: {', '.join(too_long)}", code=1)
    c.run("mypy packages/*/src tasks.py dev_tasks.py", pty=False)


MAX_FILE_LINES = 600


def files_over(limit: int) -> list[str]:
    """Return the Python files of the project (sources, tests, benchmarks) over ``limit`` lines."""
    files = [Path("tasks.py"), Path("dev_tasks.py"), *Path().glob("packages/*/src/**/*.py")]
    files += [*Path().glob("packages/*/tests/**/*.py"), *Path().glob("tests/**/*.py")]
    files += [*Path().glob("bench/**/*.py"), *Path().glob("examples/**/*.py")]
    counts = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in files}
    return [f"{path} ({count})" for path, count in sorted(counts.items()) if count > limit]


@task(
    help={
        "args": "extra pytest arguments, e.g. '-k reid -x'",
        "fast": "skip the slow tests (end to end, subprocesses, packaging): a few minutes",
    }
)
def test(c: Context, args: str = "", fast: bool = False) -> None:
    """Run lint, then every test on every core (pytest-xdist); print the 15 slowest."""
    lint(c)
    selection = '-m "not slow" ' if fast else ""
    # One worker per core; a test file stays on one worker (its module fixtures, e.g. a trained
    # run, built once) unless conftest.py lists it in SPREAD_OVER_WORKERS.
    c.run(
        f"{sys.executable} -m pytest -n auto --dist loadfile --durations=15 {selection}{args}",
        pty=False,
    )


@task(help={"full": "run the full-size benchmarks (minutes; default: small sizes)"})
def bench(c: Context, full: bool = False) -> None:
    """Run every benchmark in bench/ and print its table (see bench/README.md)."""
    scripts = sorted(p for p in Path("bench").glob("*.py") if not p.name.startswith("_"))
    if not scripts:
        raise Exit("plp: no benchmarks in bench/ yet", code=1)
    for script in scripts:
        c.run(f"{sys.executable} {script} {'--sizes all' if full else '--sizes small'}", pty=False)
