"""Untrusted checkpoints, divergence, determinism and killed runs (issue: reliability).

The runs here go through ``invoke`` in subprocesses, as a user's would; the divergence case uses
the Python API with a model that turns its loss into NaN in the second epoch.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import plp_models
from plp_data import build_datamodule
from plp_pipelines import TrainingDivergedError, load_config, train
from plp_pipelines._checkpoints import read_checkpoint
from plp_pipelines._errors import RunError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = "trainer.epochs=5"
NO_UMAP = "evaluate.umap=false"  # the metrics are what is compared; UMAP costs a numba JIT
_SETS = ("--set", EPOCHS, "--set", NO_UMAP)


class _Payload:
    """Pickles to a call that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path: Path, invoke) -> None:
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}, evil)
    with pytest.raises(RunError, match=r"refused checkpoint .*evil\.ckpt.*weights_only=True"):
        read_checkpoint(evil)
    with pytest.raises(Exception, match="Weights only load failed"):
        plp_models.PlpModel.load_from_checkpoint(evil, weights_only=True)
    result = invoke("align", "-k", str(evil), "-k", str(evil))
    assert result.returncode == 2
    assert "refused checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()  # the payload never ran


class _DivergingModel(plp_models.PlpModel):
    """A PlpModel whose loss becomes NaN from the second epoch on."""

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= 1 else loss


def test_a_nan_loss_stops_training_naming_epoch_and_step(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "digits.toml", ["trainer.epochs=3"])
    datamodule = build_datamodule("digits", seed=0)
    model = _DivergingModel(num_classes=10, in_channels=1, image_size=(8, 8), embedding_size=16)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 1, step \d+") as error:
        train(config, model=model, datamodule=datamodule, runs_root=tmp_path, progress_bar=False)
    assert "last.ckpt" in str(error.value)
    (last,) = tmp_path.glob("digits/*/checkpoints/last.ckpt")  # the last good epoch is kept
    assert read_checkpoint(last)["epoch"] == 0
    assert not (tmp_path / "LATEST").exists()


def _metrics(runs: Path) -> dict[str, object]:
    run_dir = runs / (runs / "LATEST").read_text().strip()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {key: metrics[key] for key in ("accuracy", "reid", "clustering", "checkpoint")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, invoke) -> dict[str, object]:
    runs = tmp_path_factory.mktemp("uninterrupted")
    result = invoke("train", "--runs", str(runs), "--set", EPOCHS, "--set", NO_UMAP)
    assert result.returncode == 0, result.stderr[-3000:]
    return _metrics(runs)


def test_same_config_and_seed_give_identical_metrics(
    uninterrupted: dict[str, object], tmp_path: Path, invoke
) -> None:
    result = invoke("train", "--runs", str(tmp_path), "--set", EPOCHS, "--set", NO_UMAP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(tmp_path) == uninterrupted


def _train_until_the_first_checkpoint(runs: Path, invoke_started) -> Any:
    """Start ``invoke train`` in its own process; return it once ``last.ckpt`` exists."""
    process = invoke_started("train", "--runs", str(runs), *_SETS)
    deadline = time.monotonic() + 300
    while not list(runs.glob("digits/*/checkpoints/last.ckpt")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("training ended, or made no checkpoint within 300 s")
        time.sleep(0.05)
    return process


def test_a_killed_run_resumes_to_the_uninterrupted_metrics(
    uninterrupted: dict[str, object], tmp_path: Path, invoke, invoke_started
) -> None:
    process = _train_until_the_first_checkpoint(tmp_path, invoke_started)
    process.kill()  # SIGKILL to its process group
    process.wait()
    (run_dir,) = tmp_path.glob("digits/*")
    assert not (run_dir / "run.json").exists()  # killed before the end of training
    assert not (tmp_path / "LATEST").exists()  # a crashed run is never the newest
    # Every checkpoint on disk is whole (written to a temp file, then renamed).
    for checkpoint in run_dir.glob("checkpoints/*.ckpt"):
        read_checkpoint(checkpoint)

    result = invoke("train", "--runs", str(tmp_path), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "LATEST").read_text().strip() == str(run_dir.relative_to(tmp_path))
    assert _metrics(tmp_path) == uninterrupted


def test_sigterm_stops_with_143_and_the_run_resumes_to_the_uninterrupted_metrics(
    uninterrupted: dict[str, object], tmp_path: Path, invoke, invoke_started
) -> None:
    process = _train_until_the_first_checkpoint(tmp_path, invoke_started)
    process.send_signal(signal.SIGTERM)  # how schedulers and CI preempt a job
    _, stderr = process.communicate(timeout=300)
    (run_dir,) = tmp_path.glob("digits/*")
    assert process.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"plp: training stopped by SIGTERM in epoch {_epoch_of(stderr)}; "
        f"{run_dir / 'checkpoints' / 'last.ckpt'} kept: resume with "
        f"`uv run invoke train --resume --run {run_dir}`"
    )
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "run.json").exists() and not (tmp_path / "LATEST").exists()

    result = invoke("train", "--runs", str(tmp_path), "--resume", "--run", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(tmp_path) == uninterrupted
    # The CSV log keeps the epochs before the stop: one row per epoch with a training loss.
    with (run_dir / "logs" / "csv" / "metrics.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if row.get("train_loss")]
    assert sorted(int(row["epoch"]) for row in rows) == list(range(5))


def _epoch_of(stderr: str) -> str:
    return stderr.rsplit("SIGTERM in epoch ", 1)[1].split(";", 1)[0]
