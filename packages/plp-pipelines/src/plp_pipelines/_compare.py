"""Paired comparison of two evaluated runs on the same test set: ``invoke compare A B``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plp_core import BOOTSTRAP_RESAMPLES, PERMUTATIONS
from plp_pipelines._errors import ConfigError, RunError
from plp_pipelines._features import SplitFeatures, load_features
from plp_pipelines._methods import query_gallery_splits
from plp_pipelines._run import Run
from plp_pipelines._runs import RUNS_ROOT, atomic_write_json, atomic_write_text, create_run_dir

__all__ = ["COMPARABLE", "COMPARE_FOLDER", "ComparedRuns", "compare_runs"]

COMPARABLE = ("reid", "accuracy")
"""The evaluation methods whose metrics are means over queries (samples): those compared."""

COMPARE_FOLDER = "compare"
"""Comparisons go to ``<runs>/compare/<timestamp>/``."""


@dataclass(frozen=True)
class ComparedRuns:
    """What :func:`compare_runs` wrote.

    Attributes:
        folder: ``<runs>/compare/<timestamp>/`` holding ``compare.json`` and ``compare.md``.
        result: What ``compare.json`` holds.
        table: The comparison as an aligned text table (what the task prints).
    """

    folder: Path
    result: dict[str, Any]
    table: str


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    method: str = "reid",
    permutations: int = PERMUTATIONS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    runs_root: str | Path = RUNS_ROOT,
) -> ComparedRuns:
    """Compare two evaluated runs metric by metric on their shared test set.

    Each run's metrics are recomputed exactly from its saved features (``features/*.npz``,
    its own ``[evaluate]`` settings; the CMC length is the shorter of the two) and compared
    with ``plp_eval.compare``: per metric A, B, the difference A - B, its paired bootstrap
    interval over query identities (``resamples``) and a two-sided paired sign-flip
    randomisation p-value (``permutations``, or all 2^identities flips when fewer). Written
    to ``<runs_root>/compare/<timestamp>/compare.json`` and ``compare.md``.

    The runs must have been evaluated on the same samples: the same protocol, and every split
    compared holding the same sample ids, labels and cameras in the same order.

    Raises:
        ConfigError: A method that cannot be compared, or bad counts.
        RunError: A run not found or not evaluated, other protocols or other test sets.
    """
    import plp_eval

    if method not in COMPARABLE:
        raise ConfigError(
            f"--method {method!r} cannot be compared; expected one of {', '.join(COMPARABLE)}"
        )
    for name, count in (("--permutations", permutations), ("--resamples", resamples)):
        if count < 1:
            raise ConfigError(f"{name} must be >= 1, got {count}")
    first = Run.open(run_a, runs_root=runs_root)
    second = Run.open(run_b, runs_root=runs_root)
    protocols = (first.config.evaluate.protocol, second.config.evaluate.protocol)
    if method == "reid" and protocols[0] != protocols[1]:
        raise RunError(
            f"the runs evaluate by other protocols ({first.paths.root}: {protocols[0]}, "
            f"{second.paths.root}: {protocols[1]}): they rank other queries"
        )
    splits = query_gallery_splits(protocols[0]) if method == "reid" else ("trainval", "test")
    features_a = {split: load_features(first.paths.features / f"{split}.npz") for split in splits}
    features_b = {split: load_features(second.paths.features / f"{split}.npz") for split in splits}
    for split in dict.fromkeys(splits):
        _check_same_samples(split, features_a[split], features_b[split], first, second)
    results = [_result(method, run, features, first, second) for run, features in (
        (first, features_a), (second, features_b))]  # fmt: skip
    comparison = plp_eval.compare(
        *results, resamples=resamples, permutations=permutations, seed=seed
    )
    folder = create_run_dir(runs_root, COMPARE_FOLDER)
    statistics = comparison.to_dict()
    result = {
        "run_a": str(first.paths.root),
        "run_b": str(second.paths.root),
        "method": method,
        "protocol": protocols[0] if method == "reid" else None,
        "splits": list(dict.fromkeys(splits)),
        "statistics": statistics.pop("method"),
        **statistics,
    }
    atomic_write_json(folder / "compare.json", result)
    atomic_write_text(folder / "compare.md", _markdown(result))
    return ComparedRuns(folder, result, _table(result))


def _result(
    method: str, run: Run, features: dict[str, SplitFeatures], first: Run, second: Run
) -> Any:
    """Return one run's metrics (``ReidMetrics`` or ``AccuracyMetrics``) from its features."""
    from plp_pipelines._methods.accuracy import score
    from plp_pipelines._methods.reid import rank

    if method == "accuracy":
        return score(features["trainval"], features["test"])[0]
    query_split, gallery_split = query_gallery_splits(run.config.evaluate.protocol)
    max_rank = min(first.config.evaluate.max_rank, second.config.evaluate.max_rank)
    return rank(run.config, features[query_split], features[gallery_split], max_rank=max_rank)


def _check_same_samples(
    split: str, a: SplitFeatures, b: SplitFeatures, first: Run, second: Run
) -> None:
    """Raise RunError unless both runs' ``split`` holds the same samples in the same order."""
    where = f"{split} of {first.paths.root} and {second.paths.root}"
    if len(a.labels) != len(b.labels):
        raise RunError(
            f"the runs were evaluated on different test sets: {where} hold {len(a.labels)} and "
            f"{len(b.labels)} samples"
        )
    for what, left, right in (
        ("sample ids", a.sample_ids, b.sample_ids),
        ("labels", a.labels, b.labels),
        ("cameras", a.cameras, b.cameras),
    ):
        if (left is None) != (right is None):
            raise RunError(
                f"the runs were evaluated on different test sets: {where}: one has {what}"
            )
        if left is not None and right is not None and not np.array_equal(left, right):
            row = int(np.flatnonzero(np.asarray(left) != np.asarray(right))[0])
            raise RunError(
                f"the runs were evaluated on different test sets: {where} differ in their "
                f"{what} from row {row} ({left[row]} vs {right[row]})"
            )


def _rows(result: dict[str, Any]) -> list[list[str]]:
    """Return the table rows: metric, A, B, A - B, interval, p."""
    rows = []
    for name, values in result["metrics"].items():
        low, high = values["ci"]
        rows.append(
            [
                name,
                f"{values['a']:.4f}",
                f"{values['b']:.4f}",
                f"{values['difference']:+.4f}",
                f"[{low:+.4f}, {high:+.4f}]",
                f"{values['p_value']:.4f}",
            ]
        )
    return rows


HEADER = ["metric", "A", "B", "A - B", "95% CI of A - B", "p"]


def _table(result: dict[str, Any]) -> str:
    """Return the comparison as an aligned text table with its settings above it."""
    rows = [HEADER, *_rows(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        f"A: {result['run_a']}",
        f"B: {result['run_b']}",
        _settings(result),
        "",
    ]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _settings(result: dict[str, Any]) -> str:
    flips = (
        f"all {result['permutations']} sign flips"
        if result["exact"]
        else f"{result['permutations']} random sign flips"
    )
    return (
        f"{result['method']} on {result['num_valid_queries']} queries of "
        f"{result['num_identities']} identities; interval: {result['resamples']} paired "
        f"bootstrap resamples over identities; p: two-sided, {flips}; seed {result['seed']}"
    )


def _markdown(result: dict[str, Any]) -> str:
    """Return ``compare.md``."""
    lines = [
        "# Paired comparison",
        "",
        f"- A: `{result['run_a']}`",
        f"- B: `{result['run_b']}`",
        f"- {_settings(result)}",
        "- assumptions: query identities independent, the gallery fixed; p-values per metric, "
        "not corrected for several metrics",
        "",
        "| " + " | ".join(HEADER) + " |",
        "| " + " | ".join("---" for _ in HEADER) + " |",
        *("| " + " | ".join(row) + " |" for row in _rows(result)),
        "",
    ]
    return "\n".join(lines)
