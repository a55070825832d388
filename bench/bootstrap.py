"""plp-eval ``bootstrap`` and ``compare`` vs a per-resample numpy loop, on per-query values.

The per-query values come from a ranking that has already happened (``ReidMetrics``); the
bench times only what the confidence intervals and the paired test add. The baseline is the
direct implementation a user would write: per resample, draw the identities, gather their
queries (vectorised with ``np.repeat``), average. Both give the same intervals (the tests
check it on the same seed). The floor is the draws alone (``resamples x identities`` random
integers), which any identity bootstrap makes. Best of ``--repeats`` runs, the methods taking
turns.

    uv run python bench/bootstrap.py --sizes small   # make bench
    uv run python bench/bootstrap.py --sizes all     # the numbers in bench/README.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from plp_eval import ReidMetrics, bootstrap, compare
from plp_eval._match_ranks import summarize

# (queries, identities): Market-1501's test set, then 20k queries with 4 and 1 per identity.
SIZES = {
    "small": [(3368, 750)],
    "all": [(3368, 750), (20000, 5000), (20000, 20000)],
}
RESAMPLES = 1000


def _metrics(queries: int, identities: int, seed: int = 0) -> ReidMetrics:
    """Per-query values of a plausible evaluation (first ranks, AP, ...), all queries valid."""
    rng = np.random.default_rng(seed)
    labels = np.sort(
        np.concatenate([np.arange(identities), rng.integers(0, identities, queries - identities)])
    )
    values = np.empty((queries, 5))
    values[:, 0] = rng.geometric(0.6, queries)  # first-match rank
    values[:, 1:] = rng.beta(4.0, 2.0, (queries, 4))
    return summarize(values, 50, labels)


def _loop(metrics: ReidMetrics, resamples: int, seed: int) -> np.ndarray:
    """The baseline: one resample at a time, queries gathered with np.repeat."""
    table = metrics.per_query()
    steps, length = table.curves["cmc"]
    cmc = (steps[:, None] >= 1) & (steps[:, None] <= np.arange(1, length + 1))
    values = np.concatenate([table.values, cmc], axis=1)
    order = np.argsort(table.identities, kind="stable")
    _, starts, counts = np.unique(table.identities[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    statistics = np.empty((resamples, values.shape[1]))
    for b in range(resamples):
        drawn = rng.integers(len(starts), size=len(starts))
        sizes = counts[drawn]
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = order[np.repeat(starts[drawn], sizes) + offsets]
        statistics[b] = values[rows].mean(axis=0)
    return np.quantile(statistics, [0.025, 0.975], axis=0)


def _floor(identities: int, resamples: int) -> None:
    """Only the draws every identity bootstrap makes (``resamples x identities`` integers)."""
    rng = np.random.default_rng(0)
    block = max(1, (1 << 21) // identities)
    for start in range(0, resamples, block):
        rng.integers(identities, size=(min(block, resamples - start), identities))


def _time(function: Callable[[], object], repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Print a Markdown table of the bootstrap, the comparison and the baseline loop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        "| queries, identities | method | time s | baseline / method | method / floor |\n"
        "|---|---|---|---|---|",
        flush=True,
    )
    for queries, identities in SIZES[args.sizes]:
        metrics = _metrics(queries, identities)
        other = _metrics(queries, identities, seed=1)
        other = summarize(
            np.stack(
                [other.first_match_rank, other.average_precision, other.inp,
                 other.precision_at_r, other.ap_at_r], axis=1,
            ),
            50,
            metrics.query_labels,
        )  # fmt: skip
        bootstrap(metrics, resamples=10)  # warm-up (BLAS thread pools)
        methods: dict[str, Callable[[], object]] = {
            "loop (baseline)": partial(_loop, metrics, RESAMPLES, 0),
            "floor (the draws alone)": partial(_floor, identities, RESAMPLES),
            "plp bootstrap": partial(bootstrap, metrics, resamples=RESAMPLES),
            "plp compare (1000 resamples, 10000 sign flips)": partial(compare, metrics, other),
        }
        times = {name: np.inf for name in methods}
        for _ in range(args.repeats):  # the methods take turns: the same machine load
            for name, function in methods.items():
                times[name] = min(times[name], _time(function, 1))
        baseline, floor = times["loop (baseline)"], times["floor (the draws alone)"]
        for name, seconds in times.items():
            print(
                f"| {queries}, {identities} | {name} | {seconds:.3f} | {baseline / seconds:.1f} "
                f"| {seconds / floor:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
