"""plp's invoke tasks: ``uv run invoke --list``; each task's docstring is its ``--help``.

Heavy libraries (torch, Lightning, umap) are imported inside the task bodies only, so that
listing the tasks is instant. A user error (bad config, missing run, bad argument) ends the task
with one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from invoke import Context, Exit, task

DEFAULT_CONFIG = "configs/digits.toml"
RUNS = "runs"
METHOD_CHOICES = ("accuracy", "reid", "clustering", "all")


def _is_user_error(error: BaseException) -> bool:
    """Return whether ``error`` is one of plp's own errors (each package's base or subclass).

    plp raises its own exception classes only for bad input (config, arguments, data, runs), so
    the class's home module is the test; this needs no import of the packages themselves.
    """
    return any(cls.__module__.split(".")[0].startswith("plp_") for cls in type(error).__mro__)


@contextmanager
def _user_facing() -> Iterator[None]:
    """Turn plp's bad-input errors into one line on stderr and exit code 2."""
    try:
        yield
    except Exception as error:
        if _is_user_error(error):
            raise Exit(f"plp: error: {error}", code=2) from None
        raise


def _say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


@task(
    help={
        "config": f"TOML recipe (default: {DEFAULT_CONFIG})",
        "set": "override a key, e.g. --set trainer.epochs=3 (repeatable)",
        "runs": "folder of run directories (default: runs)",
        "skip_evaluate": "do not run the test pipeline after training, whatever "
        "[evaluate] after_training says",
    },
    iterable=["set_"],
)
def train(
    c: Context,
    config: str = DEFAULT_CONFIG,
    set_: list[str] | None = None,
    runs: str = RUNS,
    skip_evaluate: bool = False,
) -> None:
    """Train the model a config describes; write a run directory; then test it if configured."""
    with _user_facing():
        import plp_pipelines

        recipe = plp_pipelines.load_config(config, set_ or [])
        result = plp_pipelines.train(
            recipe, runs_root=runs, evaluate=False if skip_evaluate else None
        )
    _say("", f"run directory: {result.run_dir}", f"best checkpoint: {result.best_checkpoint}")
    if result.metrics:
        _say("", plp_pipelines.format_metrics_table(result.metrics))
        _say("", f"report: {result.run_dir / 'report.md'}")


@task(
    help={
        "run": "run directory (default: the newest run)",
        "checkpoint": "a checkpoint to evaluate instead of the run's best",
        "method": "accuracy, reid, clustering or all (default: all)",
        "runs": "folder of run directories (default: runs)",
    }
)
def evaluate(
    c: Context,
    run: str | None = None,
    checkpoint: str | None = None,
    method: str = "all",
    runs: str = RUNS,
) -> None:
    """Extract features of trainval and test, draw their UMAP, compute and print metrics."""
    if method not in METHOD_CHOICES:
        raise Exit(
            f"plp: error: --method {method!r} is not a method; expected one of "
            f"{', '.join(METHOD_CHOICES)}",
            code=2,
        )
    with _user_facing():
        import plp_pipelines

        methods = None if method == "all" else [method]
        metrics = plp_pipelines.evaluate(
            run, checkpoint=checkpoint, methods=methods, runs_root=runs
        )
    _say(plp_pipelines.format_metrics_table(metrics, methods))


def _not_built(name: str) -> Callable[..., Any]:
    def body(c: Context) -> None:
        raise Exit(f"plp: `invoke {name}` is not built yet (see the open issues)", code=1)

    body.__name__ = name
    body.__doc__ = f"Not built yet: the {name} pipeline (coming with plp-viz and plp-pipelines)."
    return task(body)


explain = _not_built("explain")
graph = _not_built("graph")
align = _not_built("align")


@task
def lint(c: Context) -> None:
    """Check formatting and lint with ruff, then types with mypy."""
    c.run("ruff format --check .", pty=False)
    c.run("ruff check .", pty=False)
    c.run("mypy packages/*/src tasks.py", pty=False)


@task(help={"args": "extra pytest arguments, e.g. '-k reid -x'"})
def test(c: Context, args: str = "") -> None:
    """Run lint, then every test (package tests and cross-package tests)."""
    lint(c)
    c.run(f"{sys.executable} -m pytest {args}", pty=False)


@task(help={"full": "run the full-size benchmarks (minutes; default: small sizes)"})
def bench(c: Context, full: bool = False) -> None:
    """Run every benchmark in bench/ and print its table (see bench/README.md)."""
    scripts = sorted(p for p in Path("bench").glob("*.py") if not p.name.startswith("_"))
    if not scripts:
        raise Exit("plp: no benchmarks in bench/ yet", code=1)
    for script in scripts:
        c.run(f"{sys.executable} {script} {'--sizes all' if full else '--sizes small'}", pty=False)
