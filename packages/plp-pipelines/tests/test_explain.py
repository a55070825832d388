"""The explain pipeline: attributions for classifier and embedding-only runs, any sample count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from plp_pipelines import explain
from plp_pipelines._explain import _class_centroids, _embedding_with_gradients
from plp_pipelines.testing import shared_run


class NoGradEmbedder(nn.Module):
    """A model whose ``embed`` is no_grad-decorated, like plp's LightningModules."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * 100.0  # not the evaluation feature

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class Splits:
    """A datamodule stand-in: fixed trainval and test tensors."""

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.splits = splits

    def split_dataloader(self, split: str) -> DataLoader:
        return DataLoader(TensorDataset(*self.splits[split]), batch_size=4)


def test_embedding_with_gradients_is_embed_with_gradients():
    model = NoGradEmbedder()
    x = torch.randn(5, 4, requires_grad=True)
    embedding = _embedding_with_gradients(model)(x)
    torch.testing.assert_close(embedding.detach(), model.embed(x))
    assert embedding.requires_grad and not model.embed(x).requires_grad


def test_class_centroids_come_from_trainval_then_test():
    model = NoGradEmbedder()
    generator = torch.Generator().manual_seed(1)
    trainval = (torch.randn(10, 4, generator=generator), torch.tensor([0, 1] * 5))
    test = (torch.randn(6, 4, generator=generator), torch.tensor([0, 1, 2, 2, 0, 2]))
    centroids = _class_centroids(model, Splits({"trainval": trainval, "test": test}), test[1][:4])
    with torch.no_grad():
        expected = [
            model.linear(trainval[0][trainval[1] == 0]).mean(0),
            model.linear(trainval[0][trainval[1] == 1]).mean(0),
            model.linear(test[0][test[1] == 2]).mean(0),  # class 2 is only in the test split
            model.linear(test[0][test[1] == 2]).mean(0),
        ]
    torch.testing.assert_close(centroids, torch.stack(expected))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, shared_runs: Path) -> dict[str, Path]:
    """One-epoch digits runs: with a classifier, and embedding-only (triplet loss)."""
    root = Path(__file__).resolve().parents[3]
    return {
        kind: shared_run(
            shared_runs,
            root / config_path,
            ["trainer.epochs=1", "evaluate.after_training=false"],
            tmp_path_factory.mktemp(kind),
        )
        for kind, config_path in (
            ("classifier", "configs/digits.toml"),
            ("embedding", "configs/digits_triplet.toml"),
        )
    }


def grey_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "embedding"])
@pytest.mark.parametrize(
    ("algorithm", "samples"),
    [
        ("integrated_gradients", 2),  # batches of any size: packages/plp-viz/tests
        ("gradient_shap", 16),  # the reported crash: 16 references against 16 x 50 rows
        ("layer_gradcam", 1),  # default layer: the last Conv2d
        ("layer_integrated_gradients", 3),
    ],
)
def test_explain_every_model_kind(runs, kind: str, algorithm: str, samples: int):
    path = explain(runs[kind], algorithm=algorithm, samples=samples)
    assert path == runs[kind] / "plots" / f"explain_{algorithm}.png"
    pixels = grey_pixels(path)
    assert pixels.std() > 5
    assert pixels.shape[0] > 100 * samples  # one row (about 240 px) per sample


@pytest.mark.slow
def test_explain_set_changes_this_call_only(runs, shared_runs: Path, tmp_path: Path):
    """``explain --set explain.KEY=VALUE`` sets the defaults of this call; the run's data and
    model are refused in one line. ``--pairs`` ranks as ``metrics.json``'s reid numbers did,
    with the overrides their evaluation recorded."""
    import json

    from plp_pipelines import ConfigError, evaluate, explain_pairs

    run = runs["classifier"]
    config_before = (run / "config.toml").read_text()
    path = explain(run, samples=1, overrides=["explain.algorithm=saliency"])
    assert path == run / "plots" / "explain_saliency.png" and path.is_file()
    assert (run / "config.toml").read_text() == config_before
    for refused in ("data.batch_size=4", "evaluate.reid_metric=cosine", "seed=3"):
        with pytest.raises(ConfigError, match=r"cannot change after training.*explain\.\* keys"):
            explain(run, overrides=[refused])
    with pytest.raises(ConfigError, match=r"explain\.samples"):
        explain(run, overrides=["explain.samples=0"])

    root = Path(__file__).resolve().parents[3]
    copy = shared_run(  # this test's own copy: evaluated here
        shared_runs,
        root / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false"],
        tmp_path,
    )
    evaluate(copy, methods=["reid"], overrides=["evaluate.reid_metric=cosine"], umap=False)
    explain_pairs(copy, queries=1, overrides=["explain.algorithm=saliency"])
    assert json.loads((copy / "plots" / "pair_explain.json").read_text())["metric"] == "cosine"
