"""Loss terms with miners and cross-batch memory; distillation from a teacher."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import plp_losses
from plp_data import build_datamodule
from plp_eval import reid_metrics
from plp_models import PlpModel, PlpModelsError

MINERS = plp_losses.MINERS.available()
MINER_ARGS = {
    "pair_margin": {"pos_margin": 0.1, "neg_margin": 1.0},
    "triplet_margin": {"margin": 0.3},
}
LOSSES = {"contrastive": {"neg_margin": 1.0}, "triplet_margin": {"margin": 0.3}}


def small_model(**kwargs) -> PlpModel:
    defaults = {
        "num_classes": 10,
        "in_channels": 1,
        "image_size": (8, 8),
        "embedding_size": 16,
        "head": {"name": "embedding", "args": {"normalize": True}},
        "optimizer": {"name": "adam", "args": {"lr": 3e-3}},
        "losses": [{"name": "triplet_margin"}],
    }
    return PlpModel(**{**defaults, **kwargs})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread spares OpenMP's barrier stalls on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    data = build_datamodule(
        "digits",
        batch_size=64,
        val_fraction=0.0,
        sampler={"name": "pk", "args": {"classes_per_batch": 8, "samples_per_class": 8}},
    )
    data.setup()
    return data


def features(model, data, split):
    loader = data.split_dataloader(split)
    model.eval()
    rows = [(model.embed(x), y) for x, y in loader]
    return torch.cat([f for f, _ in rows]).numpy(), torch.cat([y for _, y in rows]).numpy()


def test_map(model, data) -> float:
    query, query_labels = features(model, data, "test")
    gallery, gallery_labels = features(model, data, "trainval")
    return reid_metrics(query, query_labels, gallery, gallery_labels).mean_average_precision


test_map.__test__ = False  # a helper, not a test


def train(model, data, steps: int = 20, seed: int = 0) -> PlpModel:
    """A plain loop over the PK batches: ``steps`` optimiser steps of ``training_step``."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    done, epoch = 0, 0
    while done < steps:
        sampler = data.train_dataloader()
        sampler.batch_sampler.sampler.set_epoch(epoch)
        model.train()
        for batch in sampler:
            loss = model._step(batch, "train")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return model


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("miner", MINERS)
def test_every_miner_with_a_pair_and_a_triplet_loss_trains_digits(digits, miner, loss):
    torch.manual_seed(0)
    spec = {
        "name": loss,
        "args": LOSSES[loss],
        "miner": {"name": miner, "args": MINER_ARGS.get(miner, {})},
    }
    model = small_model(losses=[spec])
    assert isinstance(model.losses[0], plp_losses.MinedLoss)
    before = test_map(model, digits)
    after = test_map(train(model, digits), digits)
    assert after > before + 0.1, (before, after)


def test_a_memory_trains_digits_and_its_queue_is_in_the_checkpoint(digits, tmp_path: Path):
    torch.manual_seed(0)
    spec = {"name": "contrastive", "miner": {"name": "batch_hard"}, "memory": {"size": 256}}
    model = small_model(losses=[spec])
    memory = model.losses[0]
    assert isinstance(memory, plp_losses.CrossBatchMemory) and memory.memory_size == 256
    before = test_map(model, digits)
    after = test_map(train(model, digits), digits)
    assert after > before + 0.1 and int(memory.seen) == 20 * 64
    state = model.state_dict()
    assert torch.equal(state["losses.0.embedding_memory"], memory.embedding_memory)
    restored = small_model(losses=[spec])
    restored.load_state_dict(state)
    assert int(restored.losses[0].seen) == 20 * 64


def test_the_embedding_a_memory_holds_is_the_heads_width():
    model = small_model(
        head={"name": "classifier"},
        losses=[{"name": "cross_entropy"}, {"name": "ntxent", "memory": {"size": 64}}],
    )
    assert model.losses[1].embedding_size == model.backbone.out_features != 16


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            {"name": "cross_entropy", "miner": {"name": "batch_hard"}},
            plp_losses.PlpLossesError,
            r"^miner 'batch_hard' with loss 'cross_entropy' needs a pair or triplet loss",
        ),
        (
            {"name": "center", "memory": {"size": 64}},
            plp_losses.PlpLossesError,
            r"^memory with loss 'center' needs a pair or triplet loss",
        ),
        (
            {
                "name": "triplet_margin",
                "args": {"mining": "batch_hard"},
                "miner": {"name": "pair_margin"},
            },
            plp_losses.PlpLossesError,
            "use mining = 'batch_all'",
        ),
        (
            {"name": "contrastive", "memory": {"length": 64}},
            PlpModelsError,
            r"memory takes size \(required\) and start_iteration, got \['length'\]",
        ),
        ({"name": "contrastive", "minor": {}}, PlpModelsError, r"unknown keys \['minor'\]"),
        (
            {"name": "contrastive", "miner": {"name": "hardest"}},
            plp_losses.PlpLossesError,
            "unknown miner 'hardest'",
        ),
    ],
)
def test_a_bad_term_is_one_line(spec, error, message):
    with pytest.raises(error, match=message):
        small_model(losses=[spec], head={"name": "embedding_classifier"})


def test_distillation_pulls_the_student_towards_the_teacher(digits, tmp_path: Path):
    torch.manual_seed(0)
    teacher = train(small_model(), digits).eval()
    distillation = {"loss": "embedding_mse", "weight": 5.0, "teacher_size": 16}
    student = small_model(
        embedding_size=8, losses=[{"name": "triplet_margin"}], distillation=distillation
    )
    assert isinstance(student.distillation_loss.projection, torch.nn.Linear)
    student.attach_teacher(teacher)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    images, labels = next(iter(digits.train_dataloader()))
    student.train()
    with_teacher = student._step((images, labels), "train")
    student._teacher = ()
    alone = student._step((images, labels), "train")
    features = student.outputs_and_features(images)[2]
    expected = 5.0 * student.distillation_loss(features, teacher.embed(images))
    torch.testing.assert_close(with_teacher - alone, expected)
    # The projection is in the checkpoint (a resumed run needs it) but not in what embed uses.
    path = tmp_path / "student.ckpt"
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, max_epochs=0)
    trainer.strategy.connect(student)
    trainer.save_checkpoint(path)
    loaded = PlpModel.load_from_checkpoint(path)
    assert "distillation_loss.projection.weight" in loaded.state_dict()
    torch.testing.assert_close(loaded.eval().embed(images), student.eval().embed(images))
    with pytest.raises(PlpModelsError, match="built without distillation"):
        small_model().attach_teacher(teacher)


def test_bad_distillation_specs():
    with pytest.raises(PlpModelsError, match="distillation takes loss, teacher_size"):
        small_model(distillation={"loss": "relational"})
    with pytest.raises(plp_losses.PlpLossesError, match="unknown distillation loss 'rkd'"):
        small_model(distillation={"loss": "rkd", "teacher_size": 4})
    with pytest.raises(PlpModelsError, match="weight must be > 0"):
        small_model(distillation={"loss": "relational", "teacher_size": 4, "weight": 0})
