"""Retrieval validation, a frozen backbone and an EMA of the weights, against brute force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from plp_data import build_datamodule
from plp_models import (
    ExponentialMovingAverage,
    FreezeBackbone,
    NetworkModel,
    PlpModel,
    PlpModelsError,
    RetrievalValidation,
)


def brute_force(
    features: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray | None = None,
    cameras: np.ndarray | None = None,
) -> dict[str, float]:
    """mAP, rank-1 and MAP@R by a loop over queries: float64 distances, stable sort by index."""
    features = features.astype(np.float64)
    rows = range(len(labels)) if queries is None else np.flatnonzero(queries)
    gallery = np.arange(len(labels)) if queries is None else np.flatnonzero(~queries)
    aps, firsts, maps_at_r = [], [], []
    for query in rows:
        keep = gallery[gallery != query]
        if cameras is not None:
            same = (labels[keep] == labels[query]) & (cameras[keep] == cameras[query])
            keep = keep[~same]
        distances = np.linalg.norm(features[keep] - features[query], axis=1)
        order = keep[np.argsort(distances, kind="stable")]
        hits = labels[order] == labels[query]
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        firsts.append(float(hits[0]))
        r = len(ranks)
        within = ranks[ranks <= r]
        maps_at_r.append(np.sum(np.arange(1, len(within) + 1) / within) / r)
    return {
        "mAP": float(np.mean(aps)),
        "rank1": float(np.mean(firsts)),
        "MAP@R": np.mean(maps_at_r),
    }


def test_leave_one_out_validation_equals_a_brute_force_loop() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # label 3 is alone: left out
    features = rng.normal(size=(len(labels), 5)).astype(np.float32)
    validation = RetrievalValidation(len(labels), metrics=("mAP", "rank1", "MAP@R"))
    validation.add(torch.from_numpy(features[:4]), [torch.zeros(4), torch.from_numpy(labels[:4])])
    validation.add(torch.from_numpy(features[4:]), [torch.zeros(6), torch.from_numpy(labels[4:])])
    values = validation.compute()
    kept = labels != 3
    expected = brute_force(features[kept], labels[kept])
    assert values["val/mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert values["val/rank1"] == pytest.approx(expected["rank1"], abs=1e-12)
    assert values["val/MAP@R"] == pytest.approx(expected["MAP@R"], abs=1e-12)


def test_query_gallery_validation_removes_same_identity_same_camera() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    cameras = np.array([1, 1, 2, 3, 1, 2, 2, 1, 1, 2])
    queries = np.array([1, 0, 1, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    features = rng.normal(size=(len(labels), 4)).astype(np.float32)
    validation = RetrievalValidation(len(labels), queries=queries, metrics=("mAP", "rank1"))
    batch = [torch.zeros(10), torch.from_numpy(labels), torch.from_numpy(cameras)]
    validation.add(torch.from_numpy(features), batch)
    values = validation.compute()
    expected = brute_force(features, labels, queries, cameras)
    assert values == pytest.approx({"val/mAP": expected["mAP"], "val/rank1": expected["rank1"]})


def test_bad_validation_settings_are_one_line() -> None:
    with pytest.raises(PlpModelsError, match=r"unknown validation metric 'map'; available: mAP"):
        RetrievalValidation(4, metrics=("map",))
    with pytest.raises(PlpModelsError, match=r"must mark some, not all, of the 3 validation"):
        RetrievalValidation(3, queries=np.ones(3, dtype=bool))
    validation = RetrievalValidation(5)
    validation.add(torch.zeros(3, 2), [torch.zeros(3), torch.tensor([0, 0, 1])])
    with pytest.raises(PlpModelsError, match=r"saw 3 of the 5 validation images"):
        validation.compute()
    with pytest.raises(PlpModelsError, match=r"ema must be in \(0, 1\), got 1.0"):
        ExponentialMovingAverage(1.0)
    with pytest.raises(PlpModelsError, match=r"freeze_backbone_epochs must be >= 0, got -1"):
        FreezeBackbone(-1)
    network = NetworkModel(torch.nn.Linear(64, 8), num_classes=10, losses=[{"name": "contrastive"}])
    with pytest.raises(PlpModelsError, match=r"NetworkModel has no 'backbone' module to freeze"):
        FreezeBackbone(1).setup(None, network, "fit")  # type: ignore[arg-type]


class Recorder(pl.Callback):
    """Keeps the raw weights after every step and the backbone state at each epoch's end."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.head: list[dict[str, torch.Tensor]] = []
        self.logged: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.backbone.append({k: v.clone() for k, v in pl_module.backbone.state_dict().items()})
        self.head.append({k: v.clone() for k, v in pl_module.head.state_dict().items()})

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.logged.append(float(trainer.callback_metrics["val/mAP"]))


def _fit(
    tmp_path: Path,
    epochs: int,
    callbacks: list[pl.Callback],
    resume: Path | None = None,
) -> tuple[PlpModel, Any]:
    pl.seed_everything(0, verbose=False)
    datamodule = build_datamodule("digits", batch_size=64, val_fraction=0.2, seed=0)
    model = PlpModel(
        num_classes=10,
        in_channels=1,
        image_size=(8, 8),
        backbone={"name": "small_convnet", "args": {"width": 8}},
        embedding_size=16,
        optimizer={"name": "sgd", "args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}},
    )
    split = datamodule.validation_split()
    assert split is not None
    model.retrieval_validation = RetrievalValidation(len(split.labels))
    checkpoints = ModelCheckpoint(tmp_path, filename="{epoch}", save_top_k=-1)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoints, *callbacks],
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=False)
    return model, datamodule


def _validation_features(model: PlpModel, datamodule: Any) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    batches = list(datamodule.val_dataloader())
    with torch.no_grad():
        features = torch.cat([model.embed(batch[0]) for batch in batches]).numpy()
    return features, torch.cat([batch[1] for batch in batches]).numpy()


def test_ema_is_the_average_of_the_steps_and_what_validation_and_checkpoints_hold(
    tmp_path: Path,
) -> None:
    decay = 0.8
    recorder = Recorder()
    model, datamodule = _fit(tmp_path, 2, [ExponentialMovingAverage(decay), recorder])
    average = dict(recorder.steps[0])
    for step in recorder.steps[1:]:
        average = {k: decay * average[k] + (1 - decay) * v if v.is_floating_point() else average[k]
                   for k, v in step.items()}  # fmt: skip
    checkpoint = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    for key, value in average.items():
        if value.is_floating_point():
            torch.testing.assert_close(checkpoint["state_dict"][key], value, msg=key)
            assert torch.equal(checkpoint["current_model_state"][key], recorder.steps[-1][key])
    weight = "backbone.features.0.weight"
    assert not torch.equal(
        checkpoint["state_dict"][weight], checkpoint["current_model_state"][weight]
    )
    # validation ranked the average's features: the last epoch's val/mAP (logged as float32)
    features, labels = _validation_features(model, datamodule)  # the model holds the average now
    assert recorder.logged[-1] == float(np.float32(brute_force(features, labels)["mAP"]))


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_frozen_backbone_and_ema_resume_bit_exactly(tmp_path: Path) -> None:
    recorder = Recorder()
    pl.seed_everything(0, verbose=False)
    initial = PlpModel(
        num_classes=10, in_channels=1, image_size=(8, 8),
        backbone={"name": "small_convnet", "args": {"width": 8}}, embedding_size=16,
    ).backbone.state_dict()  # fmt: skip
    _fit(tmp_path, 2, [FreezeBackbone(1), ExponentialMovingAverage(0.9), recorder])
    # epoch 0: weights and BatchNorm statistics of the backbone untouched, the head trained
    assert "features.1.running_mean" in initial  # a BatchNorm layer
    for key, value in initial.items():
        assert torch.equal(recorder.backbone[0][key], value), key
    assert not torch.equal(
        recorder.head[0]["embedding.weight"], recorder.head[1]["embedding.weight"]
    )
    changed = [k for k, v in initial.items() if not torch.equal(recorder.backbone[1][k], v)]
    assert "features.0.weight" in changed and "features.1.running_mean" in changed

    first = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    _fit(tmp_path, 2, [FreezeBackbone(1), ExponentialMovingAverage(0.9)], tmp_path / "epoch=0.ckpt")
    second = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    for part in ("state_dict", "current_model_state", "averaging_state"):
        assert first[part].keys() == second[part].keys()
        for key, value in first[part].items():
            assert torch.equal(value, second[part][key]), (part, key)
