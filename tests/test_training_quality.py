"""The default recipes on digits reach their quality bars on CPU, through the config's own objects.

Trained with a bare Lightning Trainer (no run directory, no UMAP) so the check takes seconds:
cross-entropy (configs/digits.toml) must reach test accuracy >= 0.95, and the triplet recipe with
the P x K sampler (configs/digits_triplet.toml) re-ID mAP >= 0.9 (test = query, trainval = gallery).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

import plp_eval
from plp_pipelines import load_config
from plp_pipelines._build import build_datamodule, build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _train(config_name: str) -> tuple[object, object]:
    config = load_config(CONFIGS / config_name)
    pl.seed_everything(config.seed, verbose=False)
    datamodule = build_datamodule(config)
    model = build_model(config, datamodule)
    trainer = pl.Trainer(
        max_epochs=config.trainer.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        use_distributed_sampler=not datamodule.uses_custom_sampler,
    )
    trainer.fit(model, datamodule=datamodule)
    return model.eval(), datamodule


def _embed(model, datamodule, split: str) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    with torch.no_grad():
        for images, batch_labels in datamodule.split_dataloader(split):
            features.append(model.embed(images))
            labels.append(batch_labels)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def test_cross_entropy_recipe_reaches_accuracy_095() -> None:
    model, datamodule = _train("digits.toml")
    with torch.no_grad():
        batches = list(datamodule.split_dataloader("test"))
        logits = torch.cat([model(images) for images, _ in batches])
        labels = torch.cat([labels for _, labels in batches])
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    assert accuracy >= 0.95, accuracy


def test_triplet_recipe_with_pk_sampler_reaches_map_09() -> None:
    model, datamodule = _train("digits_triplet.toml")
    assert not model.has_classifier
    query, query_labels = _embed(model, datamodule, "test")
    gallery, gallery_labels = _embed(model, datamodule, "trainval")
    result = plp_eval.reid_metrics(query, query_labels, gallery, gallery_labels)
    assert result.mean_average_precision >= 0.9, result.to_dict()


def test_configs_state_the_default_settings_of_plp_models() -> None:
    from plp_models import DEFAULT_SETTINGS

    by_config = {"digits": "digits.toml", "mnist": "mnist.toml", "cifar10": "cifar.toml"}
    by_config["market1501"] = "market1501.toml"
    for dataset, name in by_config.items():
        config, defaults = load_config(CONFIGS / name), DEFAULT_SETTINGS[dataset]
        assert config.data.args["batch_size"] == defaults["batch_size"], name
        assert config.trainer.epochs == defaults["epochs"], name
        assert config.model.backbone.name == defaults["backbone"], name
        assert config.model.embedding_size == defaults["embedding_size"], name
        assert config.optimizer.model_dump() == defaults["optimizer"], name
        assert config.scheduler.model_dump() == defaults["scheduler"], name
