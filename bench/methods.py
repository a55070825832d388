"""Training methods: miners and cross-batch memory vs pytorch-metric-learning; methods in training.

``speed``: each plp miner against PML's miner of the same name (same tuples: the tests check
it), and :class:`plp_losses.CrossBatchMemory` against PML's (same values and gradients), on the
same random batches (``N`` embeddings of size 128, ``N // 4`` classes), on CPU with one thread.
Miners: the time of one call. XBM: one forward + backward of a batch against a full queue of
``4 N`` entries. Each side is timed in alternating rounds and the best (least disturbed) median
is kept; ratio = PML time / plp time (> 1: plp is faster).

``training``: test mAP and CPU seconds per training epoch of a plain recipe and of the same
recipe with each method (miner, cross-batch memory, ``hard_pk``, distillation), on digits and on
a CIFAR-format set, through the train pipeline; and the cost of one ``hard_pk`` refresh. See
:func:`training`.

    uv run python bench/methods.py --sizes small                   # make bench: speed only
    uv run python bench/methods.py --sizes all                     # the tables in bench/README.md
    uv run python bench/methods.py --sizes all --part training     # the training table only
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
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


# The training comparison: one recipe, each method added alone (config sections merged in).
RECIPE: dict[str, Any] = {
    "seed": 0,
    "model": {
        "backbone": {"name": "small_convnet", "args": {"width": 16}},
        "head": {"name": "embedding", "args": {"normalize": True}},
        "embedding_size": 32,
    },
    "loss": {"name": "contrastive", "args": {"neg_margin": 0.5}},
    "optimizer": {"name": "adam", "args": {"lr": 3e-3}},
    "trainer": {"accelerator": "cpu"},
    "evaluate": {"methods": ["reid"], "umap": False, "after_training": False, "bootstrap": 0},
}
PK = {"name": "pk", "args": {"classes_per_batch": 8, "samples_per_class": 8}}
HARD_PK = {"name": "hard_pk", "args": {**PK["args"], "neighbours": 3}}
METHODS: dict[str, dict[str, Any]] = {
    "plain (PxK, contrastive)": {},
    "+ miner multi_similarity": {"loss": {"miner": {"name": "multi_similarity"}}},
    "+ miner batch_easy_hard": {"loss": {"miner": {"name": "batch_easy_hard"}}},
    "+ cross-batch memory 512": {"loss": {"memory": {"size": 512, "start_iteration": 20}}},
    "+ hard_pk sampler": {"sampler": HARD_PK},
    "+ distill relational (width-64 teacher)": {"distill": "relational"},
    "+ distill embedding_mse (width-64 teacher)": {"distill": "embedding_mse"},
}


def write_cifar_format_set(root: Path, per_class: int = 200, test_per_class: int = 50) -> Path:
    """Write a learnable CIFAR-10-format set into ``root``; return ``root``.

    Ten classes in five pairs of look-alikes: a pair shares a smooth random colour pattern, its
    two classes differ by a faint second pattern. Each image is its class pattern shifted by up to
    6 pixels, brightened or darkened, plus strong pixel noise. Written as the official archive
    holds CIFAR-10 (``cifar-10-batches-py/``: five training batches, a test batch, the meta).
    """
    rng = np.random.default_rng(0)

    def smooth(count: int) -> np.ndarray:
        coarse = rng.normal(0, 1, (count, 3, 8, 8))
        return coarse.repeat(4, axis=2).repeat(4, axis=3)  # (count, 3, 32, 32)

    pairs, details = smooth(5), smooth(10)
    patterns = np.stack([pairs[c // 2] + 0.35 * details[c] for c in range(10)])

    def draw(labels: np.ndarray) -> np.ndarray:
        shifts = rng.integers(-6, 7, (len(labels), 2))
        images = np.stack(
            [
                np.roll(patterns[c], tuple(shift), axis=(1, 2))
                for c, shift in zip(labels, shifts, strict=True)
            ]
        )
        images = images * rng.uniform(0.6, 1.4, (len(labels), 1, 1, 1))
        images += rng.normal(0, 1.0, images.shape)
        return np.clip(128 + 40 * images, 0, 255).astype(np.uint8).reshape(len(labels), -1)

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.permutation(np.repeat(np.arange(10), per_class))
    batches = np.array_split(train, 5)
    for index, labels in enumerate([*batches, np.repeat(np.arange(10), test_per_class)]):
        name = f"data_batch_{index + 1}" if index < 5 else "test_batch"
        entry = {"labels": labels.tolist(), "data": draw(labels)}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = [f"{'abcde'[c // 2]}{c % 2 + 1}" for c in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def _data(name: str, root: Path, sampler: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"batch_size": 64, "val_fraction": 0.0, "sampler": sampler}
    if name == "cifar10":
        args.update(root=str(root), image_size=[16, 16])  # CPU-sized
    return {"name": name, "args": args}


def _config(name: str, data: dict[str, Any], epochs: int, **sections: Any) -> Any:
    from plp_pipelines._config import validate_config

    raw = {**RECIPE, "name": name, "data": data}
    raw["trainer"] = {**RECIPE["trainer"], "epochs": epochs}
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    return validate_config(raw, source=f"bench {name}")


def _trained(config: Any, runs: Path) -> tuple[Any, float]:
    """Train ``config``; return the run and the CPU seconds of the whole ``train`` call."""
    from plp_pipelines import train

    start = time.process_time()
    result = train(config, runs_root=runs, progress_bar=False)
    return result, time.process_time() - start


def _test_map(run: Path) -> float:
    from plp_pipelines import evaluate

    return float(evaluate(run, methods=["reid"])["reid"]["mAP"])


def _refresh_seconds(run: Path, repeats: int = 3) -> tuple[float, int]:
    """Return the CPU seconds of one ``hard_pk`` refresh of ``run``'s model, and the image count.

    A refresh embeds the training images without augmentation and builds the class graph.
    """
    from plp_data._hard_sampler import class_neighbours
    from plp_pipelines._embedding_sampler import feed_embedding_sampler
    from plp_pipelines._run import Run

    opened = Run.open(run)
    model, datamodule = opened.load_model(), opened.build_datamodule()
    datamodule.setup("fit")
    feed_embedding_sampler(datamodule, model)
    labels = np.asarray(datamodule.train_labels)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        embeddings = datamodule.embedding_source()
        class_neighbours(embeddings, labels, 3)
        times.append(time.process_time() - start)
    return min(times), len(labels)


def training(datasets: list[str], epochs: int) -> None:
    """Print test mAP and CPU seconds per epoch of each method (a Markdown table).

    Every run trains ``epochs`` epochs from seed 0 with the same recipe (a width-16 small
    convnet, 32-d L2-normalised embeddings, contrastive loss, PxK 8x8 batches of 64, Adam) and
    one method added; the distillation rows learn from the plain recipe at width 64, trained
    first (its own row); the plain recipe also runs with seeds 1 and 2 (the spread a method's
    difference must exceed). Seconds per epoch = CPU seconds of the whole ``train`` call (data and
    model set-up included, evaluation not) / epochs; mAP: ``reid`` on the test split
    (``trainval_test``). Finally, one ``hard_pk`` refresh of the trained model is timed.
    """
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as scratch:
        root = write_cifar_format_set(Path(scratch) / "cifar")
        runs = Path(scratch) / "runs"
        print("| data | method | test mAP | CPU s / epoch |\n|---|---|---|---|", flush=True)
        for dataset in datasets:
            wide = {"backbone": {"name": "small_convnet", "args": {"width": 64}}}
            teacher, seconds = _trained(
                _config("teacher", _data(dataset, root, PK), epochs, model=wide), runs
            )
            print(_training_row(dataset, "plain, width 64 (the teacher)", teacher, seconds, epochs))
            for method, sections in METHODS.items():
                sections = dict(sections)
                data = _data(dataset, root, sections.pop("sampler", PK))
                if "distill" in sections:
                    loss = sections.pop("distill")
                    sections["distill"] = {"teacher": str(teacher.run_dir), "loss": loss}
                result, seconds = _trained(_config("run", data, epochs, **sections), runs)
                print(_training_row(dataset, method, result, seconds, epochs), flush=True)
                if not sections and data["args"]["sampler"] is PK:  # the seed-to-seed spread
                    for seed in (1, 2):
                        again, seconds = _trained(_config("run", data, epochs, seed=seed), runs)
                        row = f"plain, seed {seed}"
                        print(_training_row(dataset, row, again, seconds, epochs), flush=True)
                if method == "+ hard_pk sampler":
                    refresh, count = _refresh_seconds(result.run_dir)
            print(f"\n{dataset}: one hard_pk refresh of {count} images: {refresh:.2f} CPU s\n")


def _training_row(data: str, method: str, result: Any, seconds: float, epochs: int) -> str:
    shown = "CIFAR-format" if data == "cifar10" else data
    return f"| {shown} | {method} | {_test_map(result.run_dir):.3f} | {seconds / epochs:.2f} |"


def main() -> None:
    """Run the benchmarks of the chosen sizes (``training`` with ``--sizes all`` only)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--part", choices=["speed", "training", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=["digits", "cifar10"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("speed", "both"):
        speed([128] if args.sizes == "small" else [128, 512], args.repeats, args.rounds)
    if args.part in ("training", "both") and args.sizes == "all":
        training(args.datasets, args.epochs)


if __name__ == "__main__":
    main()
