"""One training epoch through plp's LightningModule vs a plain PyTorch loop doing the same work.

Both sides train the same architecture (a fresh PlpModel with the same seed) with Adam and
cross-entropy over the same DataLoader; the plain loop calls the model's backbone and head
directly. Timings are the median of ``--repeats`` epochs after one warm-up epoch each, best of
two alternating rounds per side; the ratio is plain time / Lightning time (throughput of plp
relative to the plain loop; 1.0 = equal, target >= 0.9).

    uv run python bench/models.py --sizes small   # make bench
    uv run python bench/models.py --sizes all     # the numbers in bench/README.md
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from plp_data import build_datamodule
from plp_models import PlpModel

warnings.filterwarnings("ignore")


def plain_epoch(model: PlpModel, loader: DataLoader, optimizer: torch.optim.Optimizer) -> None:
    model.train()
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        _, logits = model.head(model.backbone(images))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()


def time_plain(make_model, loader: DataLoader, repeats: int) -> float:
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    plain_epoch(model, loader, optimizer)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plain_epoch(model, loader, optimizer)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append(time.perf_counter() - self.start)


def time_lightning(make_model, loader: DataLoader, repeats: int) -> float:
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=repeats + 1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(make_model(), train_dataloaders=loader)
    return statistics.median(timer.times[1:])  # the first epoch is the warm-up


def digits_case() -> tuple[str, object, DataLoader]:
    datamodule = build_datamodule("digits", batch_size=64, val_fraction=0.0)
    loader = datamodule.train_dataloader()

    def make_model() -> PlpModel:
        torch.manual_seed(0)
        return PlpModel(num_classes=10, in_channels=1, image_size=(8, 8), embedding_size=64)

    return f"small_convnet, digits ({len(loader.dataset)} images, batch 64)", make_model, loader


def cifar_case(num_images: int) -> tuple[str, object, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(num_images, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (num_images,), generator=generator)
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True)

    def make_model() -> PlpModel:
        torch.manual_seed(0)
        return PlpModel(num_classes=10, backbone={"name": "resnet18_cifar"}, embedding_size=128)

    return f"resnet18_cifar, random 32x32 ({num_images} images, batch 64)", make_model, loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=["small", "all"], default="small")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.sizes == "small" else 5)
    cases = [digits_case(), cifar_case(256 if args.sizes == "small" else 1024)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} timed epochs")
    print("| case | plain loop (s/epoch) | plp LightningModule (s/epoch) | throughput ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, make_model, loader in cases:
        # Alternate the two sides and keep each one's best round, so that a burst of load from
        # another process does not land on one side only.
        plain = lightning = float("inf")
        for _ in range(2):
            plain = min(plain, time_plain(make_model, loader, repeats))
            lightning = min(lightning, time_lightning(make_model, loader, repeats))
        print(f"| {name} | {plain:.3f} | {lightning:.3f} | {plain / lightning:.2f} |", flush=True)


if __name__ == "__main__":
    main()
