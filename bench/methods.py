"""Training methods: miners and cross-batch memory vs pytorch-metric-learning; methods in training.

``speed``: each plp miner against PML's miner of the same name (same tuples: the tests check
it), and :class:`plp_losses.CrossBatchMemory` against PML's (same values and gradients), on the
same random batches (``N`` embeddings of size 128, ``N // 4`` classes), on CPU with one thread.
Miners: the time of one call. XBM: one forward + backward of a batch against a full queue of
``4 N`` entries. Each side is timed in alternating rounds and the best (least disturbed) median
is kept; ratio = PML time / plp time (> 1: plp is faster).

``training``: see :func:`training` (needs the train pipeline).

    uv run python bench/methods.py --sizes small   # make bench
    uv run python bench/methods.py --sizes all     # the numbers in bench/README.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance

import plp_losses

EMBEDDING = 128


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, EMBEDDING, generator=generator)
    return x, torch.randint(0, max(n // 4, 2), (n,), generator=generator)


def _best_median(
    calls: dict[str, Callable[[], Any]], repeats: int, rounds: int
) -> dict[str, float]:
    """Per call, the best over ``rounds`` of the median of ``repeats`` timed runs (alternating)."""
    best = {name: float("inf") for name in calls}
    for call in calls.values():
        call()  # warm-up
    for _ in range(rounds):
        for name, call in calls.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            best[name] = min(best[name], statistics.median(times))
    return best


def _miners() -> dict[str, tuple[Any, Any]]:
    l2 = LpDistance(normalize_embeddings=False)
    # Margins where some pairs are kept on N(0, I) embeddings of size 128 (distances ~16).
    return {
        "batch_hard": (
            plp_losses.MINERS.build("batch_hard"),
            pml_miners.BatchHardMiner(distance=l2),
        ),
        "batch_easy_hard": (
            plp_losses.MINERS.build("batch_easy_hard"),
            pml_miners.BatchEasyHardMiner(distance=l2),
        ),
        "multi_similarity": (
            plp_losses.MINERS.build("multi_similarity"),
            pml_miners.MultiSimilarityMiner(),
        ),
        "pair_margin": (
            plp_losses.MINERS.build("pair_margin", pos_margin=15.0, neg_margin=16.0),
            pml_miners.PairMarginMiner(15.0, 16.0, distance=l2),
        ),
        "triplet_margin semihard": (
            plp_losses.MINERS.build("triplet_margin", margin=0.5, type_of_triplets="semihard"),
            pml_miners.TripletMarginMiner(0.5, type_of_triplets="semihard", distance=l2),
        ),
    }


def _memories(n: int) -> dict[str, tuple[Any, Any]]:
    l2 = LpDistance(normalize_embeddings=False)
    size = 4 * n
    return {
        "XBM contrastive": (
            plp_losses.CrossBatchMemory(plp_losses.ContrastiveLoss(), EMBEDDING, size),
            pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(distance=l2), EMBEDDING, size),
        ),
        "XBM multi_similarity + miner": (
            plp_losses.CrossBatchMemory(
                plp_losses.MultiSimilarityLoss(),
                EMBEDDING,
                size,
                miner=plp_losses.MINERS.build("multi_similarity"),
            ),
            pml_losses.CrossBatchMemory(
                pml_losses.MultiSimilarityLoss(),
                EMBEDDING,
                size,
                miner=pml_miners.MultiSimilarityMiner(),
            ),
        ),
    }


def _step(memory: Any, x: torch.Tensor, y: torch.Tensor) -> None:
    """One forward + backward of a fresh leaf copy of ``x`` through ``memory``."""
    memory(x.clone().requires_grad_(True), y).backward()


def speed(sizes: list[int], repeats: int, rounds: int) -> None:
    """Print the miners' and XBM's times against PML's as a Markdown table."""
    print("| method | N | plp ms | PML ms | PML / plp |\n|---|---|---|---|---|")
    for n in sizes:
        x, y = _batch(n, 0)
        for name, (ours, theirs) in _miners().items():
            calls = {"plp": partial(ours, x, y), "pml": partial(theirs, x, y)}
            _row(name, n, _best_median(calls, repeats, rounds))
        for name, (ours, theirs) in _memories(n).items():
            for memory in (ours, theirs):  # fill the queue first: the steady state
                for seed in range(1, 5):
                    memory(*_batch(n, seed))
            calls = {"plp": partial(_step, ours, x, y), "pml": partial(_step, theirs, x, y)}
            _row(name, n, _best_median(calls, repeats, rounds))


def _row(name: str, n: int, times: dict[str, float]) -> None:
    ours, theirs = times["plp"], times["pml"]
    print(
        f"| {name} | {n} | {1e3 * ours:.2f} | {1e3 * theirs:.2f} | {theirs / ours:.2f} |",
        flush=True,
    )


def main() -> None:
    """Run the benchmarks of the chosen sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    speed([128] if args.sizes == "small" else [128, 512], args.repeats, args.rounds)


if __name__ == "__main__":
    main()
