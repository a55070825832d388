"""Feature extraction: features and logits from one pass equal ``embed`` and ``model(images)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from plp_models import PlpModel
from plp_pipelines._features import extract_features


class _Apart(torch.nn.Module):
    """The same model seen through ``embed`` and ``__call__`` only (no one-pass member)."""

    has_classifier = True

    def __init__(self, model: PlpModel) -> None:
        super().__init__()
        self.model = model

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


@pytest.mark.parametrize("head", ["embedding_classifier", "classifier"])
def test_one_pass_gives_what_embed_and_the_forward_give(head: str) -> None:
    torch.manual_seed(0)
    args = {"bnneck": True, "normalize": True} if head == "embedding_classifier" else {}
    model = PlpModel(
        num_classes=4,
        in_channels=1,
        image_size=(8, 8),
        embedding_size=6,
        head={"name": head, "args": args},
    )
    model.train()  # BatchNorm statistics that differ from their initial values
    with torch.no_grad():
        model(torch.randn(32, 1, 8, 8))
    images = torch.randn(21, 1, 8, 8)
    loader = DataLoader(TensorDataset(images, torch.arange(21) % 4), batch_size=8)
    one_pass = extract_features(model, loader)
    assert model.training  # restored
    apart = extract_features(_Apart(model), loader)
    model.eval()
    with torch.no_grad():
        expected_features = torch.cat([model.embed(images[i : i + 8]) for i in (0, 8, 16)])
        expected_logits = torch.cat([model(images[i : i + 8]) for i in (0, 8, 16)])
    for split in (one_pass, apart):
        assert split.logits is not None and split.logits.shape == (21, 4)
        np.testing.assert_array_equal(split.features, expected_features.numpy())
        np.testing.assert_array_equal(split.logits, expected_logits.numpy())
        np.testing.assert_array_equal(split.labels, np.arange(21) % 4)
    assert extract_features(model, loader, with_logits=False).logits is None
