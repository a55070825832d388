"""plp-losses vs pytorch-metric-learning: forward + backward time of the same loss.

Each pair computes the same value (the tests check it to 1e-5) on the same random batch
(``N`` embeddings of size 128, ``N // 4`` classes). Time is the median of ``--repeats`` runs
after two warm-up runs, on CPU with one thread, plp and PML taking turns (the same machine
load for both), in CPU seconds of the process (with one thread, the work itself: wall time
on a loaded machine also counts the waits); the ratio is PML time / plp time (> 1: plp is
faster).

    uv run python bench/losses.py --sizes small   # make bench
    uv run python bench/losses.py --sizes all     # the numbers in bench/README.md
    uv run python bench/losses.py --sizes all --losses contrastive   # one loss
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml
from pytorch_metric_learning import miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer

import plp_losses


def _time(
    fns: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...], n: int, repeats: int
) -> list[float]:
    """Median CPU seconds of forward + backward of each of ``fns``, in turns on one batch."""
    torch.manual_seed(0)
    x0, y = torch.randn(n, 128), torch.randint(0, max(n // 4, 2), (n,))
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats + 2):
        for fn, kept in zip(fns, times, strict=True):
            x = x0.clone().requires_grad_(True)
            start = time.process_time()
            fn(x, y).backward()
            if i >= 2:
                kept.append(time.process_time() - start)
    return [statistics.median(kept) for kept in times]


def _pairs() -> dict[str, tuple[Callable, Callable]]:
    l2 = LpDistance(normalize_embeddings=False)
    pml_hard = pml.TripletMarginLoss(margin=0.2, distance=l2, reducer=MeanReducer())
    hard_miner = miners.BatchHardMiner(distance=l2)
    arc_pml = pml.ArcFaceLoss(num_classes=256, embedding_size=128)
    arc_plp = plp_losses.ArcFaceLoss(num_classes=256, embedding_size=128)
    with torch.no_grad():
        arc_plp.weight.copy_(arc_pml.W.T)
    return {
        "triplet batch_all": (
            plp_losses.TripletMarginLoss(),
            pml.TripletMarginLoss(margin=0.2, distance=l2),
        ),
        "triplet batch_hard": (
            plp_losses.TripletMarginLoss(mining="batch_hard"),
            lambda x, y: pml_hard(x, y, hard_miner(x, y)),
        ),
        "contrastive": (plp_losses.ContrastiveLoss(), pml.ContrastiveLoss(distance=l2)),
        "multi_similarity": (plp_losses.MultiSimilarityLoss(), pml.MultiSimilarityLoss()),
        "ntxent": (plp_losses.NTXentLoss(), pml.NTXentLoss()),
        "arcface": (arc_plp, arc_pml),
    }


def main() -> None:
    """Print a Markdown table of plp and PML times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--losses", nargs="+", choices=sorted(_pairs()), help="default: all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [128] if args.sizes == "small" else [128, 512]
    print("| loss | N | plp ms | PML ms | PML / plp |\n|---|---|---|---|---|")
    for name, (ours, theirs) in _pairs().items():
        if args.losses and name not in args.losses:
            continue
        for n in sizes:
            t_ours, t_theirs = _time((ours, theirs), n, args.repeats)
            print(
                f"| {name} | {n} | {1e3 * t_ours:.2f} | {1e3 * t_theirs:.2f} "
                f"| {t_theirs / t_ours:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
