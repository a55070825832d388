"""``[trainer] compile``: the networks compiled in place, checkpoints interchangeable, one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch import nn

import plp_models
from plp_pipelines import load_config
from plp_pipelines._compile import check_compile, compile_model
from plp_pipelines._errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _model() -> plp_models.PlpModel:
    small = {"name": "small_convnet", "args": {"width": 8}}
    return plp_models.PlpModel(num_classes=10, in_channels=1, image_size=(8, 8), backbone=small)


def test_compiled_in_place_keeps_the_checkpoint_keys() -> None:
    model = _model()
    keys = list(model.state_dict())
    assert compile_model(model) == ("backbone",)
    assert model.backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # no _orig_mod. prefix: plain checkpoints load
    uncompiled = _model()
    uncompiled.load_state_dict(model.state_dict())  # strict: same keys both ways
    model.load_state_dict(uncompiled.state_dict())
    first = model.backbone._compiled_call_impl
    compile_model(model)
    assert model.backbone._compiled_call_impl is first  # a compiled network is left as it is


def test_a_model_without_networks_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no backbone, network module"):
        compile_model(nn.Linear(2, 2))


def test_compile_on_the_cpu_needs_a_cxx_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(ROOT / "configs" / "digits.toml", ["trainer.compile=true"])
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match=r"trainer\.compile: torch\.compile on the CPU needs a C"):
        check_compile(config)
    check_compile(load_config(ROOT / "configs" / "digits.toml"))  # compile = false: no check


@pytest.mark.slow
def test_a_compiled_run_trains_and_its_checkpoint_evaluates_uncompiled(tmp_path: Path) -> None:
    """Compiled and eager evaluations of one checkpoint agree.

    Tolerance: features within 1e-4 (the compiled kernels sum in another order); accuracy and
    rank-1 within one of the 450 test images, mAP within 1e-3 (a near tie may flip).
    """
    from plp_pipelines import evaluate, load_features, train

    overrides = [
        "trainer.epochs=1",
        "trainer.compile=true",
        "evaluate.umap=false",
        'evaluate.methods=["accuracy", "reid"]',
    ]
    config = load_config(ROOT / "configs" / "digits.toml", overrides)
    result = train(config, runs_root=tmp_path, progress_bar=False)
    assert json.loads((result.run_dir / "run.json").read_text())["compiled"] is True
    compiled = result.metrics
    compiled_test = load_features(result.run_dir / "features" / "test.npz")
    eager_config = config.model_copy(
        update={"trainer": config.trainer.model_copy(update={"compile": False})}
    )
    eager = evaluate(result.run_dir, runs_root=tmp_path, config=eager_config)
    eager_test = load_features(result.run_dir / "features" / "test.npz")
    assert eager_test.features.shape == compiled_test.features.shape == (450, 64)
    np.testing.assert_allclose(eager_test.features, compiled_test.features, atol=1e-4)
    one = 1 / 450 + 1e-9
    assert eager["accuracy"]["top-1"] == pytest.approx(compiled["accuracy"]["top-1"], abs=one)
    assert eager["reid"]["rank-1"] == pytest.approx(compiled["reid"]["rank-1"], abs=one)
    assert eager["reid"]["mAP"] == pytest.approx(compiled["reid"]["mAP"], abs=1e-3)
    assert compiled["accuracy"]["top-1"] > 0.3  # it trained (chance: 0.1; 0.50 after 1 epoch)
