"""The configured samplers inside a real Lightning fit on digits (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from plp_data import ClassBalancedSampler, PKBatchSampler, PlpDataError, build_datamodule
from plp_losses import TripletMarginLoss


class _Embedder(pl.LightningModule):
    """A linear embedding of the 8x8 digits trained with a batch-hard triplet loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
        self.loss = TripletMarginLoss(margin=0.2, mining="batch_hard")
        self.batches: list[tuple[int, list[int]]] = []
        self.losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        self.batches.append((self.current_epoch, labels.tolist()))
        loss = self.loss(self.net(images), labels)
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        """Never called (``limit_val_batches=0``); present so Lightning accepts the val loader."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _fit(datamodule: pl.LightningDataModule, epochs: int) -> _Embedder:
    model = _Embedder()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return model


def test_pk_sampler_trains_a_triplet_loss_and_reshuffles_per_epoch() -> None:
    sampler = {"name": "pk", "args": {"classes_per_batch": 4, "samples_per_class": 4}}
    dm = build_datamodule("digits", sampler=sampler, val_fraction=0.0, seed=0)
    assert dm.uses_custom_sampler
    model = _fit(dm, epochs=2)
    loader = dm.train_dataloader()
    assert isinstance(loader.batch_sampler, PKBatchSampler)
    per_epoch = len(loader.batch_sampler)
    assert per_epoch == len(dm.train_labels) // 16  # about one pass over the images
    assert len(model.batches) == 2 * per_epoch
    for _, labels in model.batches:
        counts = np.unique(labels, return_counts=True)[1]
        assert len(counts) == 4 and counts.tolist() == [4] * 4
    epoch_0 = [labels for epoch, labels in model.batches if epoch == 0]
    epoch_1 = [labels for epoch, labels in model.batches if epoch == 1]
    assert epoch_0 != epoch_1  # Lightning's set_epoch reached the batch sampler
    assert all(np.isfinite(model.losses))


def test_class_balanced_sampler_is_used_with_the_batch_size() -> None:
    dm = build_datamodule(
        "digits", sampler={"name": "class_balanced"}, batch_size=50, val_fraction=0.0
    )
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ClassBalancedSampler)
    assert next(iter(loader))[0].shape == (50, 1, 8, 8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "pkk"}, "unknown sampler 'pkk'; available: class_balanced, hard_pk, pk"),
        ({"name": "pk", "args": {"p": 4}}, "takes no argument 'p'"),
        ({"nme": "pk"}, "sampler must be"),
    ],
)
def test_bad_sampler_specs_fail_at_construction(spec: dict, message: str) -> None:
    with pytest.raises(PlpDataError, match=message):
        build_datamodule("digits", sampler=spec)


def test_pk_larger_than_the_number_of_classes_names_both_numbers() -> None:
    sampler = {"name": "pk", "args": {"classes_per_batch": 12, "samples_per_class": 2}}
    dm = build_datamodule("digits", sampler=sampler)
    with pytest.raises(PlpDataError, match=r"12.*10|10.*12"):
        dm.train_dataloader()
