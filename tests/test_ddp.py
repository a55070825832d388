"""DDP on 2 CPU processes: training works and distributed feature extraction equals one process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_ddp_training_and_extraction_equal_a_single_process(tmp_path: Path, invoke) -> None:
    runs = tmp_path / "runs"
    result = invoke(
        "train",
        "--config",
        "configs/digits.toml",
        "--set",
        "trainer.devices=2",
        "--set",
        "trainer.strategy=ddp",
        "--set",
        "trainer.epochs=2",
        "--set",
        "evaluate.umap=false",
        "--runs",
        str(runs),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory:") == 1  # the worker process stays quiet
    run_dir = runs / (runs / "LATEST").read_text().strip()
    features = {
        split: dict(np.load(run_dir / "features" / f"{split}.npz"))
        for split in ("trainval", "test")
    }
    distributed = json.loads((run_dir / "metrics.json").read_text())
    assert distributed["reid"]["num_queries"] == 450

    # The same best checkpoint, evaluated in one process.
    result = invoke("evaluate", "--run", str(run_dir), "--method", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    single = json.loads((run_dir / "metrics.json").read_text())
    for split, arrays in features.items():
        with np.load(run_dir / "features" / f"{split}.npz") as again:
            assert np.array_equal(arrays["labels"], again["labels"]), split  # dataset order
            assert np.array_equal(arrays["sample_ids"], again["sample_ids"]), split
            np.testing.assert_allclose(arrays["features"], again["features"], atol=1e-5)
    for method in ("accuracy", "reid", "clustering"):
        assert single[method].keys() == distributed[method].keys(), method
        for key, value in distributed[method].items():
            if isinstance(value, (int, float, list)):
                np.testing.assert_allclose(single[method][key], value, atol=1e-6, err_msg=key)
            else:
                assert single[method][key] == value, key
