"""DDP on 2 CPU processes: training works and distributed feature extraction equals one process.

One DDP run (digits, 2 epochs) also trains with the backbone frozen for the first epoch, an EMA of
the weights and the checkpoint chosen by ``val/mAP``, keeping every epoch's checkpoint: its
retrieval validation is recomputed from those checkpoints, the frozen epoch read from the
weights, and a resume from the first epoch's checkpoint, under DDP too, ends with the same
weights bit for bit (compared at the epoch-1 checkpoints).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

DDP = ("--set", "trainer.devices=2", "--set", "trainer.strategy=ddp")
HABITS = (
    "trainer.ema=0.9",
    "trainer.freeze_backbone_epochs=1",
    "checkpoint.monitor=val/mAP",
    "checkpoint.save_top_k=-1",
)


def test_ddp_training_and_extraction_equal_a_single_process(tmp_path: Path, invoke) -> None:
    runs = tmp_path / "runs"
    result = invoke(
        "train",
        "--config",
        "configs/digits.toml",
        *DDP,
        "--set",
        "trainer.epochs=2",
        "--set",
        "evaluate.umap=false",
        *(item for setting in HABITS for item in ("--set", setting)),
        "--runs",
        str(runs),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = runs / (runs / "LATEST").read_text().strip()
    # Quiet as one process: plp's lines once (the worker process says nothing), no warnings
    # (DDP's grad strides, sync_dist tips), no Lightning lines ("Initializing distributed").
    assert result.stderr == ""
    assert result.stdout.startswith(f"\nrun directory: {run_dir}\nbest checkpoint: ")
    assert result.stdout.endswith(f"\nreport: {run_dir / 'report.md'}\n")
    assert result.stdout.count("run directory:") == 1
    features = {
        split: dict(np.load(run_dir / "features" / f"{split}.npz"))
        for split in ("trainval", "test")
    }
    distributed = json.loads((run_dir / "metrics.json").read_text())
    assert distributed["reid"]["num_queries"] == 450

    _check_validation_freeze_and_ema(run_dir)
    _check_resume_from_the_first_epoch(run_dir, tmp_path / "resumed", invoke)

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


def _checkpoints(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Return the checkpoint of every epoch (``epoch=E-val_mAP=...ckpt``) by epoch."""
    found = {}
    for path in run_dir.glob("checkpoints/epoch=*.ckpt"):
        found[int(path.name.split("-")[0].removeprefix("epoch="))] = torch.load(
            path, weights_only=True
        )
    return found


def _check_validation_freeze_and_ema(run_dir: Path) -> None:
    """Retrieval validation, the frozen first epoch and EMA of the DDP run, from its files."""
    import csv

    import plp_eval
    import plp_models
    from plp_pipelines import load_config
    from plp_pipelines._build import build_datamodule

    with (run_dir / "logs" / "csv" / "metrics.csv").open(newline="") as file:
        logged = {
            int(r["epoch"]): float(r["val/mAP"]) for r in csv.DictReader(file) if r["val/mAP"]
        }
    checkpoints = _checkpoints(run_dir)
    assert sorted(logged) == sorted(checkpoints) == [0, 1]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["monitor"] == "val/mAP" and info["best_epoch"] == max(logged, key=logged.get)

    # val/mAP of each epoch (ranked on two processes) = plp-eval's leave-one-out ranking of the
    # validation images, embedded in this one process by that epoch's (EMA) weights.
    datamodule = build_datamodule(load_config(run_dir / "config.toml"))
    batches = list(datamodule.val_dataloader())
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]).numpy()
    for epoch, checkpoint in checkpoints.items():
        model = plp_models.PlpModel(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
        with torch.no_grad():
            features = model.eval().embed(images).numpy()
        expected = plp_eval.reid_metrics(features, labels, features, labels, query_in_gallery=True)
        assert logged[epoch] == pytest.approx(expected.mean_average_precision, abs=1e-6), epoch

    # Epoch 0, backbone frozen: its raw weights never moved, so their average equals them (up to
    # the rounding of decay * w + (1 - decay) * w), and its BatchNorm layers never counted a
    # batch; the head trained, so its average lags. A trained weight moves ~lr = 3e-3 a step.
    raw, average = checkpoints[0]["current_model_state"], checkpoints[0]["state_dict"]
    backbone = [k for k in raw if k.startswith("backbone.") and raw[k].is_floating_point()]
    assert backbone
    for key in backbone:
        torch.testing.assert_close(average[key], raw[key], rtol=1e-5, atol=1e-7, msg=key)
    counts = [k for k in raw if k.startswith("backbone.") and k.endswith("num_batches_tracked")]
    assert counts and all(int(raw[k]) == 0 for k in counts)
    head = [k for k in raw if k.startswith("head.") and raw[k].is_floating_point()]
    assert head and max(_gap(raw[k], average[k]) for k in head) > 1e-4
    # Epoch 1: the backbone trained, so the average lags its raw weights.
    raw, average = checkpoints[1]["current_model_state"], checkpoints[1]["state_dict"]
    assert all(int(raw[k]) > 0 for k in counts)
    assert max(_gap(raw[k], average[k]) for k in backbone if "weight" in k) > 1e-4


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _check_resume_from_the_first_epoch(run_dir: Path, runs: Path, invoke: Any) -> None:
    """Resume a copy of the run from its first epoch's checkpoint under DDP: the same weights."""
    copy = runs / "digits" / run_dir.name
    (copy / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "config.toml", copy / "config.toml")
    (first,) = run_dir.glob("checkpoints/epoch=0-*.ckpt")
    shutil.copy(first, copy / "checkpoints" / "last.ckpt")
    result = invoke("train", "--runs", str(runs), "--resume", "--run", str(copy), "--skip-evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    # Quiet: no "checkpoint directory not empty", no "[rank: 0]" lines, and no "dirpath has
    # changed": the checkpoint's callback state moves with the run (plp_pipelines._selection).
    assert result.stderr == ""
    # The epoch-1 checkpoints (the copied file is epoch 0's, whose state names no last.ckpt yet,
    # so Lightning writes the resumed one as last-v1.ckpt beside it).
    (resumed_path,) = copy.glob("checkpoints/epoch=1-*.ckpt")
    (original_path,) = run_dir.glob("checkpoints/epoch=1-*.ckpt")
    assert resumed_path.name == original_path.name  # the same val/mAP in the name
    resumed = torch.load(resumed_path, weights_only=True)
    original = torch.load(original_path, weights_only=True)
    assert resumed["epoch"] == original["epoch"] == 1
    for key in ("state_dict", "current_model_state"):
        assert resumed[key].keys() == original[key].keys()
        for name, value in original[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
