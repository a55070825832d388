"""Repeated seeds: one normal run per seed, then a summary across them (``train --seeds``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plp_core import PlpError
from plp_pipelines._config import load_config
from plp_pipelines._errors import ConfigError, RunError, TrainingStoppedError
from plp_pipelines._prechecks import check_before_torch
from plp_pipelines._report import headline_entries
from plp_pipelines._runs import RUNS_ROOT, atomic_write_json, atomic_write_text, create_run_dir

if TYPE_CHECKING:
    from plp_pipelines._train import TrainResult

__all__ = ["SeedRuns", "seeds_of", "summary_table", "train_seeds"]


@dataclass(frozen=True)
class SeedRuns:
    """What :func:`train_seeds` produced.

    Attributes:
        folder: ``<runs>/<config name>/<timestamp>-seeds/`` with ``summary.json`` and
            ``summary.md``.
        runs: Each seed's :class:`TrainResult`, in seed order.
        summary: What ``summary.json`` holds.
    """

    folder: Path
    runs: list[TrainResult]
    summary: dict[str, Any]


def seeds_of(seeds: str | None, repeats: int | str | None, first: int = 0) -> list[int]:
    """Return the seeds of ``--seeds 0,1,2`` or ``--repeats N`` (seeds first .. first + N - 1).

    Raises:
        ConfigError: Both or neither given, a seed that is not a non-negative integer, a seed
            given twice, or a repeat count that is not a positive integer.
    """
    if (seeds is None) == (repeats is None):
        raise ConfigError("give --seeds 0,1,2 or --repeats N (one of them)")
    if repeats is not None:
        count = int(repeats) if str(repeats).strip().isdigit() else 0
        if count < 1:
            raise ConfigError(f"--repeats {repeats!r} is not a positive integer")
        return list(range(first, first + count))
    assert seeds is not None
    found = []
    for text in seeds.split(","):
        text = text.strip()
        if not text.isdigit():
            raise ConfigError(f"--seeds {seeds!r}: {text!r} is not a non-negative integer")
        found.append(int(text))
    if len(set(found)) != len(found):
        raise ConfigError(f"--seeds {seeds!r} repeats a seed: each seed trains one run")
    return found


def train_seeds(
    config: str | Path,
    seeds: Sequence[int],
    *,
    overrides: Sequence[str] = (),
    runs_root: str | Path = RUNS_ROOT,
    evaluate: bool | None = None,
    progress_bar: bool = True,
    on_run: Callable[[int, TrainResult], None] | None = None,
) -> SeedRuns:
    """Train one run of ``config`` per seed and summarise their metrics across the seeds.

    Every run is an ordinary run folder (``seed`` set to each seed; the other keys as the
    config and ``overrides`` say). All configs are checked before the first run starts. The
    summary (``<runs>/<name>/<timestamp>-seeds/summary.json`` and ``summary.md``) gives, per
    headline metric, each run's value with its bootstrap interval, and across the runs the
    mean, standard deviation, min, max and a t-interval of the mean
    (``plp_eval.summarize_repeats``). A failed seed stops the series: the finished runs stay,
    their summary is written, and the error says which seed failed.

    Raises:
        ConfigError: Bad config, overrides or seeds.
        RunError: A seed failed (its error in the same line).
    """
    if not seeds:
        raise ConfigError("no seeds to train")
    recipes = [load_config(config, [*overrides, f"seed={seed}"]) for seed in seeds]
    check_before_torch(recipes[0])  # they differ in their seeds only
    from plp_pipelines._train import train  # Lightning: after the configs are checked

    finished: list[tuple[int, TrainResult]] = []
    for seed, recipe in zip(seeds, recipes, strict=True):
        try:
            result = train(
                recipe, runs_root=runs_root, evaluate=evaluate, progress_bar=progress_bar
            )
        except PlpError as error:
            folder = _write_summary(recipes[0].name, config, finished, runs_root)
            if isinstance(error, TrainingStoppedError):
                raise
            kept = f"{len(finished)} finished run(s) kept" + (
                f", summary in {folder}" if finished else ""
            )
            raise RunError(f"seed {seed} failed ({kept}): {error}") from None
        except BaseException:
            _write_summary(recipes[0].name, config, finished, runs_root)
            raise
        finished.append((seed, result))
        if on_run is not None:
            on_run(seed, result)
    folder = _write_summary(recipes[0].name, config, finished, runs_root)
    assert folder is not None
    summary = _summary(config, finished)
    return SeedRuns(folder, [result for _, result in finished], summary)


def _write_summary(
    name: str, config: str | Path, finished: list[tuple[int, TrainResult]], runs_root: str | Path
) -> Path | None:
    """Write ``summary.json`` and ``summary.md`` of the finished runs; None when there is none."""
    if not finished:
        return None
    folder = create_run_dir(runs_root, name, label="seeds")
    summary = _summary(config, finished)
    atomic_write_json(folder / "summary.json", summary)
    atomic_write_text(folder / "summary.md", _markdown(summary))
    return folder


def _summary(config: str | Path, finished: list[tuple[int, TrainResult]]) -> dict[str, Any]:
    """Return ``summary.json``: each run, and each headline metric across the runs."""
    import plp_eval

    runs: list[dict[str, Any]] = []
    columns: dict[str, dict[str, Any]] = {}
    for seed, result in finished:
        values: dict[str, float] = {}
        intervals: dict[str, Any] = {}
        for section, key, label, value in headline_entries(result.metrics):
            values[label] = value
            ci = result.metrics.get(section, {}).get("ci")
            if isinstance(ci, dict) and isinstance(ci.get(key), list):
                intervals[label] = ci[key]
            columns.setdefault(label, {"section": section, "key": key})
        runs.append(
            {"seed": seed, "run_dir": str(result.run_dir), "metrics": values, "ci": intervals}
        )
    across = {}
    for label, where in columns.items():
        column = [run["metrics"][label] for run in runs if label in run["metrics"]]
        if len(column) == len(runs):
            across[label] = {**where, **plp_eval.summarize_repeats(column).to_dict()}
    return {
        "config": str(config),
        "seeds": [seed for seed, _ in finished],
        "runs": runs,
        "metrics": across,
        "method": (
            "across seeds: mean, sample standard deviation, min, max and Student's t-interval "
            "of the mean (runs independent, the metric about normal across seeds); each run's "
            "own interval is its percentile bootstrap over query identities"
        ),
    }


def _markdown(summary: dict[str, Any]) -> str:
    """Return ``summary.md``: one row per metric, the seeds' values and their spread."""
    seeds = summary["seeds"]
    header = ["metric", "mean", "std", "min", "max", "95% t-interval"]
    header += [f"seed {seed}" for seed in seeds]
    lines = [
        f"# {len(seeds)} seeds of {summary['config']}",
        "",
        *(f"- seed {run['seed']}: `{run['run_dir']}`" for run in summary["runs"]),
        f"- {summary['method']}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for label, row in summary["metrics"].items():
        interval = row["t_interval"]
        cells = [
            label,
            f"{row['mean']:.4f}",
            "-" if row["std"] is None else f"{row['std']:.4f}",
            f"{row['min']:.4f}",
            f"{row['max']:.4f}",
            "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
        ]
        for run in summary["runs"]:
            ci = run["ci"].get(label)
            text = f"{run['metrics'][label]:.4f}"
            cells.append(text + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def summary_table(summary: dict[str, Any]) -> str:
    """Return the across-seeds rows as an aligned text table (what the task prints)."""
    rows = [["metric", "mean", "std", "95% t-interval"]]
    for label, row in summary["metrics"].items():
        interval = row["t_interval"]
        rows.append(
            [
                label,
                f"{row['mean']:.4f}",
                "-" if row["std"] is None else f"{row['std']:.4f}",
                "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
