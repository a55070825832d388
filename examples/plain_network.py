"""A plain ``nn.Module`` embedding network trained by plp with a config's loss and optimizer.

No LightningModule to write: plp wraps the network (``plp_models.NetworkModel``), trains it with
the P x K batches and batch-hard triplet loss of ``configs/digits_triplet.toml``, then tests it.
The run is kept in its own runs folder, ``runs/examples/``, and its ``run.json`` says it was made
from Python objects. Run it with

    uv run python examples/plain_network.py
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

import plp_pipelines


class Embedder(nn.Module):
    """1x8x8 digits to L2-normalised 32-d embeddings."""

    def __init__(self, embedding_size: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, embedding_size),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(images), dim=1)


def main(runs_root: str = "runs/examples", epochs: int = 10) -> dict:
    """Train and test the network; return the metrics."""
    config = plp_pipelines.load_config(
        "configs/digits_triplet.toml",
        [f"trainer.epochs={epochs}", "evaluate.umap=false", "name=plain_network"],
    )
    result = plp_pipelines.train(config, model=Embedder(), runs_root=runs_root, progress_bar=False)
    print(plp_pipelines.format_metrics_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return result.metrics


if __name__ == "__main__":
    main(*sys.argv[1:2])
