"""A user's own model and data going through plp's train, test and explain pipelines.

No config file and no registry: any LightningModule with ``embed(images)`` and any
LightningDataModule with ``split_dataloader("trainval" | "test")`` will do. Its runs go to their
own folder, ``runs/examples/``: the command-line tasks, which rebuild models from configs, leave
them alone (``run.json`` records that the run was made from Python objects). Run it with

    uv run python examples/custom_model.py
"""

from __future__ import annotations

import sys

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import plp_pipelines
from plp_pipelines import Config


class TinyNet(nn.Module):
    """The user's network: 1x8x8 images to a 16-d embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 16)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class Classifier(pl.LightningModule):
    """Wraps the network for Lightning; ``embed`` is what plp evaluates."""

    has_classifier = True  # plp also saves and scores the logits

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.net = TinyNet()
        self.head = nn.Linear(16, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.log("val_loss", F.cross_entropy(self(images), labels))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Squares(pl.LightningDataModule):
    """Four classes: a bright 3x3 square in one of the image's four corners, plus noise."""

    def __init__(self, per_class: int = 60, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        images = 0.3 * torch.randn(4 * per_class, 1, 8, 8, generator=generator)
        labels = torch.arange(4).repeat_interleave(per_class)
        for index, label in enumerate(labels.tolist()):
            row, column = divmod(label, 2)
            images[index, 0, row * 5 : row * 5 + 3, column * 5 : column * 5 + 3] += 2.0
        test = torch.arange(len(labels)) % 4 == 0
        self.splits = {
            "trainval": TensorDataset(images[~test], labels[~test]),
            "test": TensorDataset(images[test], labels[test]),
        }

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        return DataLoader(self.splits["trainval"], batch_size=32, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return self.split_dataloader("test")

    def split_dataloader(self, split: str) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=64)


def main(runs_root: str = "runs/examples") -> dict:
    """Train, test and explain; return the metrics."""
    config = Config(name="custom", trainer={"epochs": 5}, evaluate={"umap_max_samples": 500})
    result = plp_pipelines.train(
        config, model=Classifier(), datamodule=Squares(), runs_root=runs_root, progress_bar=False
    )
    print(plp_pipelines.format_metrics_table(result.metrics))
    overlay = plp_pipelines.explain(
        result.run_dir, model=Classifier(), datamodule=Squares(), samples=4, runs_root=runs_root
    )
    print(f"run directory: {result.run_dir}\nattributions: {overlay}")
    return result.metrics


if __name__ == "__main__":
    main(*sys.argv[1:2])
