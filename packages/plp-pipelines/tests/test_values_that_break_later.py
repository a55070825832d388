"""Values that pass a type check and break later: refused when the config loads or before a run.

NaN fails every comparison, so a bound such as ``> 0`` lets it through unless NaN is refused
as such; integers beyond 64 bits pass pydantic's ``int`` and overflow in torch; a name with a
newline makes a folder and then a ``config.toml`` that cannot be read back. Each is one line
naming the file and the key, before anything is built.
"""

from __future__ import annotations

import math
import pickle
import tomllib
from pathlib import Path

import pytest
import torch

from plp_pipelines import Config, ConfigError, load_config
from plp_pipelines._build import build_datamodule, build_model
from plp_pipelines._checks import check_model_fits, check_protocol, check_spawn
from plp_pipelines._components import check_components
from plp_pipelines._config import config_to_toml

ROOT = Path(__file__).resolve().parents[3]
DIGITS = ROOT / "configs" / "digits.toml"


def _one_line(caught: pytest.ExceptionInfo[ConfigError], pattern: str) -> None:
    import re

    message = str(caught.value)
    assert "\n" not in message and re.search(pattern, message), message


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("evaluate.rerank_lambda=nan", r"evaluate\.rerank_lambda: Input should be a finite number"),
        ("trainer.gradient_clip_val=inf", r"trainer\.gradient_clip_val: Input should be a finite"),
        ("loss.terms=[{name='cross_entropy', weight=nan}]", r"loss\.terms\.0\.weight: .*finite"),
        ("trainer.epochs=99999999999999999999", r"trainer\.epochs: .*less than or equal to 100000"),
        ("evaluate.max_rank=1000000000000", r"evaluate\.max_rank: .*less than or equal to 100000"),
        ("evaluate.rerank_k1=1000000000", r"evaluate\.rerank_k1: .*less than or equal to 1000"),
        (
            "model.embedding_size=4294967296",
            r"model\.embedding_size: .*less than or equal to 65536",
        ),
        ("explain.samples=100000", r"explain\.samples: .*less than or equal to 200"),
        ('name="a\\nb"', r"name: must be a name of letters.*'\\n' is not allowed"),
        ('name="a b"', r"name: must be a name .*' ' is not allowed \(given: 'a b'\)"),
        ('name=".hidden"', r"name: must be a name .*it starts with '\.'"),
        ('name="-rf"', r"name: must be a name .*it starts with '-'"),
    ],
)
def test_config_values_are_refused_when_loaded(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DIGITS, [override])
    _one_line(caught, rf"^{DIGITS}: {pattern}")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optimizer.args.betas=[0.9, nan]", r"optimizer\.args\.betas\.1: must be >= 0 and < 1"),
        (
            "data={name='cifar10', args={mean=[0.5, nan, 0.5]}}",
            r"data\.args\.mean: must be a "
            r"number \(given NaN\) \(given: \[0\.5, nan, 0\.5\]\)",
        ),
        ("optimizer.args.lr=nan", r"optimizer\.args\.lr: must be > 0 and finite"),
        ("data.args.batch_size=1099511627776", r"data\.args\.batch_size: must be <= 2147483647"),
        (
            "data.args.split_seed=99999999999999999999",
            r"data\.args\.split_seed: must fit in a 64-bit integer",
        ),
        ("scheduler.args.warmup_epochs=inf", r"scheduler\.args\.warmup_epochs: must be .*finite"),
    ],
)
def test_component_arguments_are_refused_before_building(override: str, pattern: str) -> None:
    config = load_config(DIGITS, [override])
    with pytest.raises(ConfigError) as caught:
        check_components(config)
    _one_line(caught, rf"^{DIGITS}: {pattern}")


def test_the_resolved_config_always_reads_back(tmp_path: Path) -> None:
    odd = 'a\nb\t"c"\\d\x7f\x01 é 😀'
    config = load_config(DIGITS)
    config.data.args["root"] = odd
    config.data.args["odd key"] = {"x.y": [odd]}
    text = config_to_toml(config)
    assert tomllib.loads(text)["data"]["args"]["root"] == odd
    written = tmp_path / "config.toml"
    written.write_text(text, encoding="utf-8")
    assert load_config(written) == config


def test_a_protocol_the_dataset_cannot_serve_names_the_key() -> None:
    config = load_config(DIGITS, ["evaluate.protocol=query_gallery"])
    datamodule = build_datamodule(config)
    datamodule.setup("fit")
    with pytest.raises(ConfigError) as caught:
        check_protocol(config, datamodule)
    _one_line(
        caught,
        rf"^{DIGITS}: evaluate\.protocol: 'query_gallery' needs the dataset's own query and "
        r"gallery splits, and DigitsDataModule serves trainval, test; use 'trainval_test'",
    )
    check_protocol(load_config(DIGITS, ["evaluate.protocol=test_leave_one_out"]), datamodule)


def test_ddp_spawn_with_what_cannot_be_pickled_is_one_line() -> None:
    config = load_config(DIGITS, ["trainer.strategy=ddp_spawn", "trainer.devices=2"])
    datamodule = build_datamodule(config)
    model = build_model(config, datamodule)
    check_spawn(config, model, datamodule)  # plp's own objects pickle
    datamodule.transform = lambda image: image  # what a user's datamodule may hold
    with pytest.raises(ConfigError) as caught:
        check_spawn(config, model, datamodule)
    _one_line(
        caught,
        rf"^{DIGITS}: trainer\.strategy: 'ddp_spawn' pickles the datamodule for each process, "
        r"and this DigitsDataModule cannot be pickled \(.*lambda.*\); use strategy = 'ddp'$",
    )
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(datamodule)  # the check agrees with pickle itself
    check_spawn(load_config(DIGITS), model, datamodule)  # other strategies do not pickle


def test_a_backbone_that_cannot_take_the_images_is_one_line() -> None:
    pytest.importorskip("timm")
    config = load_config(DIGITS, ['model.backbone={name="timm:vit_tiny_patch16_224"}'])
    with pytest.raises(ConfigError) as caught:
        check_model_fits(config, build_datamodule(config))
    _one_line(
        caught,
        rf"^{DIGITS}: model\.backbone: timm:vit_tiny_patch16_224 cannot take the data's "
        r"1 x 8 x 8 images \(Input height \(8\) doesn't match model \(224\)\); set "
        r"data\.args\.image_size",
    )


def test_models_that_take_the_images_pass_and_allocate_nothing() -> None:
    config = load_config(DIGITS)
    before = torch.zeros(1).untyped_storage().nbytes()
    check_model_fits(config, build_datamodule(config))
    assert before == 4
    assert Config().trainer.epochs >= 1 and not math.isnan(Config().evaluate.rerank_lambda)
