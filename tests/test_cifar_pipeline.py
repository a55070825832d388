"""The headline CIFAR recipe on the real CIFAR loading code, with tiny real-format batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plp_data.testing import write_cifar_batches

pytestmark = pytest.mark.slow


def test_cifar_recipe_trains_one_epoch_on_tiny_batches(tmp_path: Path, invoke) -> None:
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_cifar_batches(data, per_batch=10, num_test=20)
    result = invoke(
        "train",
        "--config",
        "configs/cifar.toml",
        "--set",
        f"data.root={data}",
        "--set",
        "trainer.epochs=1",
        "--runs",
        str(runs),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = runs / (runs / "LATEST").read_text().strip()
    assert run_dir.parent.name == "cifar"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Random pixels: only the bookkeeping is checked, and that every metric was computed.
    assert metrics["reid"]["num_queries"] == 20
    assert 0.0 <= metrics["accuracy"]["top-1"] <= 1.0
    assert {"nmi", "ari"} <= set(metrics["clustering"])
    saved = (run_dir / "config.toml").read_text()
    assert str(data) in saved and "epochs = 1" in saved
