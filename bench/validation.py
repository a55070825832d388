"""Retrieval validation's cost against a training epoch of the CIFAR recipe (configs/cifar.toml).

The recipe's model (ResNet-18-CIFAR, 128-d embedding, cross-entropy, SGD + cosine) and its data
path (the CIFAR-10 datamodule reading files in the real format, ``val_fraction = 0.1``; random
pixels) train for two epochs with a validation each epoch, once with retrieval validation
(``val/mAP``, ``val/rank1``: leave-one-out over the validation images, exact) and once with the
validation loss only. Timed on the second epoch: the training batches (epoch start to
validation start) and the validation loop. The baseline is the training epoch of the same run.

At full size the training part has 45,000 images and validation 5,000; timing that on 2 CPU
cores takes most of an hour, so the default sizes are smaller and the full-size ratio is also
extrapolated from the measured per-image costs plus the ranking measured at 5,000 images.

    uv run python bench/validation.py --sizes small   # make bench (500 images)
    uv run python bench/validation.py --sizes all     # 1,000 images; the bench/README.md table
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

import plp_data
import plp_eval
from plp_data.testing import write_cifar_batches
from plp_models import PlpModel, RetrievalValidation
from plp_pipelines import load_config

warnings.filterwarnings("ignore")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar.toml"
FULL_TRAIN, FULL_VAL = 45_000, 5_000


class Timer(pl.Callback):
    """Wall times of each epoch's training batches and of its validation loop."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.validation: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_validation_start(self, trainer, module) -> None:
        self.validation_start = time.perf_counter()
        if not trainer.sanity_checking:
            self.train.append(self.validation_start - self.start)

    def on_validation_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.validation.append(time.perf_counter() - self.validation_start)


def run(root: Path, retrieval: bool) -> tuple[float, float, int, int]:
    """Return (training s, validation s, training images, validation images) of epoch 2."""
    config = load_config(CONFIG, [f"data.args.root={root}", "data.args.num_workers=0"])
    pl.seed_everything(config.seed, verbose=False)
    datamodule = plp_data.build_datamodule(config.data.name, seed=config.seed, **config.data.args)
    model = PlpModel(
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        image_size=datamodule.image_size,
        backbone=config.model.backbone.model_dump(),
        head=config.model.head.model_dump(),
        embedding_size=config.model.embedding_size or 128,
        losses=[term.model_dump() for term in config.loss.as_terms()],
        optimizer=config.optimizer.model_dump(),
        scheduler=config.scheduler.model_dump(),
    )
    split = datamodule.validation_split()
    assert split is not None
    if retrieval:
        model.retrieval_validation = RetrievalValidation(len(split.labels))
    timer = Timer()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return timer.train[-1], timer.validation[-1], len(datamodule.train_labels), len(split.labels)


def ranking_seconds(num_images: int, dim: int = 128, classes: int = 10) -> float:
    """Return the best of two leave-one-out rankings of ``num_images`` clustered features."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, num_images)
    features = (rng.normal(size=(classes, dim))[labels] + rng.normal(size=(num_images, dim))) / 2
    features = features.astype(np.float32)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        plp_eval.reid_metrics(features, labels, features, labels, query_in_gallery=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    args = parser.parse_args()
    images = 500 if args.sizes == "small" else 1_000
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as folder:
        write_cifar_batches(folder, per_batch=images // 5, num_test=10)
        train_s, val_loss_s, num_train, num_val = run(Path(folder), retrieval=False)
        train_r, val_s, _, _ = run(Path(folder), retrieval=True)
    rank_s = ranking_seconds(FULL_VAL)
    print(
        "| images (train / val) | training s | validation s (loss only) "
        "| validation s (retrieval) | validation / training | retrieval extra / training |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    extra = max(val_s - val_loss_s, 0.0)
    print(
        f"| {num_train} / {num_val} | {train_r:.2f} | {val_loss_s:.2f} | {val_s:.2f} "
        f"| {val_s / train_r:.3f} | {extra / train_r:.3f} |"
    )
    per_train_image = (train_s + train_r) / 2 / num_train
    full = (val_s / num_val * FULL_VAL + rank_s) / (per_train_image * FULL_TRAIN)
    print(
        f"\nranking {FULL_VAL} validation images (leave-one-out, 128-d): {rank_s:.2f} s; "
        f"extrapolated full recipe ({FULL_TRAIN} / {FULL_VAL}): validation / training = {full:.3f}"
    )


if __name__ == "__main__":
    main()
