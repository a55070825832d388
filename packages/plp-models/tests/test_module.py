import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import plp_models
from plp_data import build_datamodule
from plp_models import PlpModel, PlpModelsError, build_optimizer, build_scheduler
from plp_models._backbones import BACKBONES


def small_model(**kwargs) -> PlpModel:
    defaults = {"num_classes": 10, "in_channels": 1, "image_size": (8, 8), "embedding_size": 16}
    return PlpModel(**{**defaults, **kwargs})


@pytest.mark.parametrize("size", [(8, 8), (28, 28)])
@pytest.mark.parametrize("bnneck", [False, True])
def test_forward_backward_shapes(size: tuple[int, int], bnneck: bool) -> None:
    model = small_model(
        image_size=size, head={"name": "embedding_classifier", "args": {"bnneck": bnneck}}
    )
    images = torch.randn(4, 1, *size)
    logits = model(images)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    assert model.embed(images).shape == (4, 16)


def test_bnneck_feature_is_what_embed_returns() -> None:
    model = small_model(head={"name": "embedding_classifier", "args": {"bnneck": True}}).eval()
    images = torch.randn(5, 1, 8, 8)
    features = model.backbone(images)
    expected = model.head.bnneck(model.head.embedding(features))
    torch.testing.assert_close(model.embed(images), expected)
    normalized = small_model(head={"name": "embedding_classifier", "args": {"normalize": True}})
    norms = normalized.eval().embed(images).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5))


def test_metric_loss_only_model_has_no_classifier() -> None:
    model = small_model(losses=[{"name": "triplet_margin", "args": {"margin": 0.2}}])
    assert not model.has_classifier and model.head.classifier is None
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 16)


def test_checkpoint_alone_rebuilds_an_identical_model(tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    datamodule = build_datamodule("digits", batch_size=128, val_fraction=0.1)
    model = small_model(scheduler={"name": "cosine", "args": {"warmup_epochs": 1}})
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = PlpModel.load_from_checkpoint(tmp_path / "model.ckpt", weights_only=True)
    images = torch.randn(6, 1, 8, 8)
    model.eval()
    restored.eval()
    torch.testing.assert_close(restored(images), model(images), rtol=0, atol=0)
    torch.testing.assert_close(restored.embed(images), model.embed(images), rtol=0, atol=0)


def test_warmup_then_cosine_schedule_matches_hand_computed_factors() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer("sgd", [parameter], lr=1.0)
    scheduler = build_scheduler(
        "cosine", optimizer, total_steps=10, steps_per_epoch=2, warmup_epochs=1
    )
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # Warm-up over 2 steps: 1/2, 2/2; then cosine over the remaining 8 steps.
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert rates == pytest.approx(expected)


def test_step_schedule() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer("adam", [parameter], lr=1.0)
    scheduler = build_scheduler(
        "step", optimizer, total_steps=6, steps_per_epoch=1, step_epochs=2, gamma=0.5
    )
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert build_scheduler("none", optimizer, total_steps=6, steps_per_epoch=1) is None


def test_bad_arguments_raise_clear_errors() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(
        PlpModelsError,
        match=r"unknown optimizer 'adamm'; available: adam, adamw, sgd \(did you mean 'adam'\?\)",
    ):
        build_optimizer("adamm", [parameter])
    optimizer = build_optimizer("sgd", [parameter], lr=0.1)
    with pytest.raises(PlpModelsError, match=r"unknown scheduler 'cos'"):
        build_scheduler("cos", optimizer, total_steps=1, steps_per_epoch=1)
    with pytest.raises(
        PlpModelsError,
        match=r"scheduler 'cosine' takes no argument 'gama'; it takes: warmup_epochs, min_factor",
    ):
        build_scheduler("cosine", optimizer, total_steps=1, steps_per_epoch=1, gama=0.1)
    with pytest.raises(PlpModelsError, match=r"optimizer 'sgd': lr = -0.1: must be > 0 and finite"):
        build_optimizer("sgd", [parameter], lr=-0.1)
    with pytest.raises(PlpModelsError, match=r"scheduler 'step': step_epochs = 0: must be > 0"):
        build_scheduler("step", optimizer, total_steps=1, steps_per_epoch=1, step_epochs=0)
    with pytest.raises(PlpModelsError, match="own warm-up"):
        build_scheduler("one_cycle", optimizer, total_steps=1, steps_per_epoch=1, warmup_epochs=1)
    with pytest.raises(
        PlpModelsError, match=r"unknown backbone 'resnet9'.*available: .*small_convnet"
    ):
        small_model(backbone={"name": "resnet9"})
    with pytest.raises(PlpModelsError, match=r"unknown head"):
        small_model(head={"name": "nope"})
    with pytest.raises(PlpModelsError, match=r"loss 'cross_entropy': unknown keys \['wieght'\]"):
        small_model(losses=[{"name": "cross_entropy", "wieght": 2}])
    with pytest.raises(PlpModelsError, match="at least one loss"):
        small_model(losses=[])
    with pytest.raises(PlpModelsError, match="already registered"):
        BACKBONES.register("small_convnet")(plp_models.SmallConvNet)


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(plp_models) if not name.startswith("_")}
    assert public == set(plp_models.__all__)
