"""A stopped evaluation says so and is finished by ``--resume``; Ctrl-C stops training as SIGTERM.

The signals are sent by the process to itself at a chosen point (a ``sitecustomize`` on
PYTHONPATH wraps one function), so that the test does not race the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plp_pipelines import ConfigError, RunError, evaluate, resume

pytestmark = pytest.mark.slow

SETS = ("--set", "trainer.epochs=1", "--set", "evaluate.umap=false")


def _signal_in(tmp: Path, module: str, function: str, signal_name: str) -> dict[str, str]:
    """Return an environment whose Python sends itself ``signal_name`` in ``module.function``."""
    folder = tmp / "hook"
    folder.mkdir()
    owner, _, attribute = function.rpartition(".")
    target = f"_module.{owner}" if owner else "_module"
    (folder / "sitecustomize.py").write_text(
        "import importlib, os, signal\n"
        f"_module = importlib.import_module({module!r})\n"
        f"_original = getattr({target}, {attribute!r})\n"
        "def _stop(*args, **kwargs):\n"
        f"    os.kill(os.getpid(), signal.{signal_name})\n"
        "    return _original(*args, **kwargs)\n"
        f"setattr({target}, {attribute!r}, _stop)\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stopped_evaluation_says_so_and_resume_finishes_it(
    tmp_path: Path, invoke, wandb_records
) -> None:
    env = _signal_in(tmp_path, "plp_pipelines._evaluate", "save_features", "SIGTERM")
    loggers = ("--set", 'logging.loggers=["csv", "mlflow", "wandb"]')
    result = invoke("train", "--runs", str(tmp_path / "runs"), *SETS, *loggers, env=env)
    (run_dir,) = (tmp_path / "runs").glob("digits/*")
    assert result.returncode == 143, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"plp: evaluation of {run_dir} stopped by SIGTERM: nothing was written, the run's earlier "
        f"results are as they were; finish it with `uv run invoke train --resume --run {run_dir}`"
    ]
    assert json.loads((run_dir / "run.json").read_text())["evaluation"] == "pending"
    assert not (tmp_path / "runs" / "LATEST").exists()  # not the newest run without results
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.glob(".evaluate-*"))
    stale = run_dir / f".evaluate-{_dead_pid()}"  # left by a process killed outright
    (stale / "features").mkdir(parents=True)

    result = invoke("train", "--runs", str(tmp_path / "runs"), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "LATEST").read_text().strip() == str(
        run_dir.relative_to(tmp_path / "runs")
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"]["weights_sha256"] == metrics["weights_sha256"]
    assert json.loads((run_dir / "run.json").read_text())["evaluation"] == "done"
    assert not list(run_dir.glob(".evaluate-*"))
    _assert_published(tmp_path / "runs", run_dir, metrics, wandb_records)

    # overrides: [evaluate] keys for this evaluation only, recorded beside the numbers.
    with pytest.raises(ConfigError, match=r"^--set data\.root: cannot change after training"):
        evaluate(run_dir, overrides=["data.root=/elsewhere"])
    assert metrics["reid"]["metric"] == "euclidean"
    evaluate(run_dir, methods=["reid"], overrides=["evaluate.reid_metric=cosine"])
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["reid"]["metric"] == "cosine"
    assert again["reid"]["overrides"] == again["overrides"] == ["evaluate.reid_metric=cosine"]
    assert again["accuracy"] == metrics["accuracy"]  # the same weights: kept


def _assert_published(runs: Path, run_dir: Path, metrics: dict, wandb_records) -> None:
    """The evaluation ``--resume`` finished went to the run's own MLflow and W&B runs."""
    from mlflow.tracking import MlflowClient

    ids = json.loads((run_dir / "logs" / "trackers.json").read_text())
    client = MlflowClient(f"sqlite:///{runs.resolve() / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert mlflow_run.info.run_id == ids["mlflow"]
    assert mlflow_run.data.metrics["test/reid/mAP"] == pytest.approx(metrics["reid"]["mAP"])
    assert {"report.md", "metrics.json"} <= {a.path for a in client.list_artifacts(ids["mlflow"])}
    # W&B: the training's process (its run finished as preempted), then the resumed evaluation's.
    files = sorted(
        (run_dir / "logs" / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name
    )
    assert [path.name for path in files] == [f"run-{ids['wandb']}.wandb"] * 2
    stopped, finished = (wandb_records(path) for path in files)
    assert "preempting" in [record.WhichOneof("record_type") for record in stopped]
    summary = {
        (item.key or "/".join(item.nested_key)): json.loads(item.value_json)
        for record in finished
        if record.WhichOneof("record_type") == "summary"
        for item in record.summary.update
    }
    assert summary["test/reid/mAP"] == pytest.approx(metrics["reid"]["mAP"])


def test_ctrl_c_stops_training_as_sigterm_does_and_resume_checks_last_ckpt(
    tmp_path: Path, invoke
) -> None:
    env = _signal_in(
        tmp_path, "plp_pipelines._callbacks", "StopOnNonFiniteLoss.on_train_batch_end", "SIGINT"
    )
    result = invoke("train", "--runs", str(tmp_path), *SETS, env=env)
    (run_dir,) = tmp_path.glob("digits/*")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"plp: training stopped by Ctrl-C in epoch 0; {last} kept: resume with "
        f"`uv run invoke train --resume --run {run_dir}`"
    ]
    assert last.is_file() and not (tmp_path / "LATEST").exists()

    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("width = 32", "width = 16"))
    with pytest.raises(RunError, match=r"config\.toml no longer matches .*last\.ckpt: backbone is"):
        resume(run_dir, runs_root=tmp_path, progress_bar=False)
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(RunError, match=r"^cannot load checkpoint .*last\.ckpt: truncated"):
        resume(run_dir, runs_root=tmp_path, progress_bar=False)
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.toml", "logs"]
