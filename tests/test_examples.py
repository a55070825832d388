"""examples/custom_model.py: a user's own model and datamodule through train, test and explain."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_custom_model_example_trains_tests_and_explains(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "custom_model", ROOT / "examples" / "custom_model.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = example.main(str(tmp_path))
    assert metrics["accuracy"]["top-1"] >= 0.9 and metrics["reid"]["mAP"] >= 0.8
    run_dir = next((tmp_path / "custom").iterdir())
    assert json.loads((run_dir / "metrics.json").read_text())["reid"] == metrics["reid"]
    for name in (
        "features/trainval.npz",
        "features/test.npz",
        "plots/explain_integrated_gradients.png",
    ):
        assert (run_dir / name).is_file(), name


@pytest.mark.slow
def test_plain_network_example_trains_an_nn_module_with_the_configs_loss(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "plain_network", ROOT / "examples" / "plain_network.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = example.main(str(tmp_path), epochs=6)
    # 1-NN accuracy and mAP of a triplet-trained embedding on digits (well above chance 0.1).
    assert metrics["accuracy"]["top-1"] >= 0.85 and metrics["reid"]["mAP"] >= 0.6
    run_dir = next((tmp_path / "plain_network").iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["made_from"] == "objects"
    assert info["model"] == "plp_models._module.NetworkModel"
    assert "#   network:    plain_network.Embedder" in (run_dir / "config.toml").read_text()


@pytest.mark.slow
def test_market1501_recipe_runs_on_the_testing_set(market_run: Path) -> None:
    """configs/market1501.toml's sampler (P x K = 16 x 4) and query/gallery protocol run on
    plp_data.testing's Market-1501 set (a small backbone and images, no download, one epoch)."""
    metrics = json.loads((market_run / "metrics.json").read_text())
    assert metrics["reid"]["num_queries"] == 20 and metrics["reid"]["num_valid_queries"] == 20
    assert metrics["reid"]["query"] == "query" and metrics["reid"]["gallery"] == "gallery"
    assert 0.0 < metrics["reid"]["mAP"] <= 1.0
