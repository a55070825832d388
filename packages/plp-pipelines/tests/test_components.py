"""Component names and arguments checked against their registries' typed signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from plp_pipelines import ConfigError, load_config
from plp_pipelines._components import check_components, components_of

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_passes_the_component_check(path: Path) -> None:
    config = load_config(path)
    check_components(config)
    kinds = {component.registry.kind for component in components_of(config)}
    assert {"datamodule", "head", "loss", "optimizer", "scheduler"} <= kinds


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=fast", r"digits\.toml: optimizer\.args\.lr: Input should be a valid number"),
        ("optimizer.lr=-0.1", r"optimizer\.args\.lr: must be > 0 and finite \(given: -0\.1\)"),
        ("optimizer.lr=nan", r"optimizer\.args\.lr: must be > 0 and finite \(given: nan\)"),
        ("optimizer.momentum=0.9", r"unknown key 'optimizer\.args\.momentum': optimizer 'adam'"),
        ("data.batch_size=0", r"data\.args\.batch_size: must be > 0 \(given: 0\)"),
        ("data.num_workers=-1", r"data\.args\.num_workers: must be >= 0 \(given: -1\)"),
        ("data.val_fraction=1.5", r"data\.args\.val_fraction: must be >= 0 and < 1"),
        ("data.pipeline=gpu", r"data\.args\.pipeline: expected 'auto', 'device' or 'workers'"),
        ("scheduler.step_epochs=0", r"unknown key 'scheduler\.args\.step_epochs': scheduler"),
        ("loss.label_smoothing=1.0", r"loss\.args\.label_smoothing: must be >= 0 and < 1"),
        ("model.head.args.bnneck=maybe", r"model\.head\.args\.bnneck: Input should be a valid"),
        ("explain.algorithm=gradcam", r"explain\.algorithm: unknown attribution 'gradcam'"),
        ("loss.miner={name='hardest'}", r"loss\.miner\.name: unknown miner 'hardest'; available"),
        (
            "loss.miner={name='multi_similarity', args={epsilonn=0.1}}",
            r"unknown key 'loss\.miner\.args\.epsilonn': miner 'multi_similarity' takes epsilon",
        ),
        (
            "evaluate.datasets=['cifar10', {name='digitz'}]",
            r"evaluate\.datasets\.1\.name: unknown datamodule 'digitz'; .* \(did you mean 'digits'",
        ),
        (
            "data.sampler={name='pk', args={classes_per_batch=8, samples_per_clas=4}}",
            r"unknown key 'data\.args\.sampler\.args\.samples_per_clas': sampler 'pk' takes "
            r"classes_per_batch, samples_per_class",
        ),
    ],
)
def test_bad_component_values_are_one_line_naming_file_key_and_value(
    override: str, message: str
) -> None:
    config = load_config(ROOT / "configs" / "digits.toml", [override])
    with pytest.raises(ConfigError, match=message):
        check_components(config)


def test_validated_values_are_stored_converted() -> None:
    config = load_config(ROOT / "configs" / "digits.toml", ["optimizer.betas=[0.8, 0.9]"])
    check_components(config)
    assert config.optimizer.args["betas"] == [0.8, 0.9]
    config = load_config(ROOT / "configs" / "digits.toml", ["data.batch_size=32.0"])
    check_components(config)
    assert config.data.args["batch_size"] == 32 and isinstance(config.data.args["batch_size"], int)
