"""Best by a metric, EMA and frozen backbone, MLflow and W&B: one digits run read back.

One run (digits, P x K triplet, 3 epochs, ``val/mAP`` chooses the checkpoint, EMA 0.9, backbone
frozen for the first epoch, CSV + MLflow + W&B offline) is trained once for the module; each
test reads it back with an independent tool: Lightning's CSV log, plp-eval's ranking on features
recomputed from the checkpoint, mlflow's own client, W&B's own record format.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from plp_pipelines import load_config, train

    runs = tmp_path_factory.mktemp("runs")
    config = load_config(
        ROOT / "configs" / "digits_triplet.toml",
        [
            f"trainer.epochs={EPOCHS}",
            "checkpoint.monitor=val/mAP",
            "trainer.ema=0.9",
            "trainer.freeze_backbone_epochs=1",
            'logging.loggers=["csv", "mlflow", "wandb"]',
            "evaluate.umap=false",
        ],
    )
    result = train(config, runs_root=runs, progress_bar=False)
    return result, config, runs


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "logs" / "csv" / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def _val_map(run_dir: Path) -> dict[int, float]:
    return {int(r["epoch"]): float(r["val/mAP"]) for r in _csv_rows(run_dir) if r["val/mAP"]}


def test_kept_checkpoint_is_the_argmax_of_val_map_recomputed_from_its_weights(run: Any) -> None:
    import plp_eval
    import plp_models
    from plp_pipelines._build import build_datamodule

    result, config, _ = run
    history = _val_map(result.run_dir)
    assert sorted(history) == list(range(EPOCHS))
    best = max(history, key=lambda epoch: history[epoch])
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["monitor"] == result.monitor == "val/mAP"
    assert info["best_epoch"] == result.best_epoch == best
    assert result.best_checkpoint.name.startswith(f"epoch={best}-val_mAP=")
    assert info["best_score"] == pytest.approx(history[best], abs=0)

    model = plp_models.PlpModel.load_from_checkpoint(result.best_checkpoint, weights_only=True)
    datamodule = build_datamodule(config)
    model.eval()
    with torch.no_grad():
        batches = list(datamodule.val_dataloader())
        features = torch.cat([model.embed(b[0]) for b in batches]).numpy()
    labels = torch.cat([b[1] for b in batches]).numpy()
    metrics = plp_eval.reid_metrics(features, labels, features, labels, query_in_gallery=True)
    assert float(np.float32(metrics.mean_average_precision)) == history[best]


def test_ema_weights_differ_from_the_raw_ones_and_are_evaluated(run: Any) -> None:
    import plp_models
    from plp_pipelines._build import build_datamodule

    result, config, _ = run
    checkpoint = torch.load(result.best_checkpoint, weights_only=True)
    key = "backbone.features.0.weight"
    assert not torch.equal(checkpoint["state_dict"][key], checkpoint["current_model_state"][key])
    saved = np.load(result.run_dir / "features" / "test.npz")["features"]
    datamodule = build_datamodule(config)
    images = torch.cat([b[0] for b in datamodule.split_dataloader("test")])

    def embed(state: dict[str, torch.Tensor]) -> np.ndarray:
        model = plp_models.PlpModel(**checkpoint["hyper_parameters"])
        model.load_state_dict(state)
        with torch.no_grad():
            return model.eval().embed(images).numpy()

    np.testing.assert_allclose(saved, embed(checkpoint["state_dict"]), atol=1e-5)
    assert np.abs(saved - embed(checkpoint["current_model_state"])).max() > 1e-3
    report = (result.run_dir / "report.md").read_text()
    assert "val/mAP" in report and "moving average" in report


def test_mlflow_local_store_holds_params_metric_history_final_metrics_and_artifacts(
    run: Any,
) -> None:
    from mlflow.tracking import MlflowClient

    result, _, runs = run
    info = json.loads((result.run_dir / "run.json").read_text())
    client = MlflowClient(f"sqlite:///{runs.resolve() / 'mlflow.db'}")
    mlflow_run = client.get_run(info["trackers"]["mlflow"])
    assert mlflow_run.data.params["trainer.ema"] == "0.9"
    assert mlflow_run.data.params["checkpoint.monitor"] == "val/mAP"
    assert mlflow_run.data.tags["plp.run_dir"] == str(result.run_dir.resolve())
    history = client.get_metric_history(mlflow_run.info.run_id, "val/mAP")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        list(_val_map(result.run_dir).values()), abs=1e-7
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert mlflow_run.data.metrics["test/reid/mAP"] == pytest.approx(metrics["reid"]["mAP"])
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"report.md", "metrics.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "plots")}
    assert "plots/training_curves.png" in plots


def test_wandb_offline_run_holds_the_history_config_summary_and_artifact(
    run: Any, wandb_records: Any
) -> None:
    result, _, _ = run
    info = json.loads((result.run_dir / "run.json").read_text())
    files = list(
        (result.run_dir / "logs" / "wandb").glob(
            f"offline-run-*/run-{info['trackers']['wandb']}.wandb"
        )
    )
    assert len(files) == 1
    records = wandb_records(files[0])
    assert _wandb_history(records, "val/mAP") == pytest.approx(
        list(_val_map(result.run_dir).values()), abs=1e-7
    )
    config = {  # wandb.init's config rides on the run record, later updates on config records
        item.key: json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") in ("run", "config")
        for item in (record.run if record.HasField("run") else record).config.update
    }
    assert config["trainer.ema"] in (0.9, {"value": 0.9})
    summary = {
        (item.key or "/".join(item.nested_key)): json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") == "summary"
        for item in record.summary.update
    }
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert summary["test/reid/mAP"] == pytest.approx(metrics["reid"]["mAP"])
    artifacts = [
        {entry.path for entry in record.artifact.manifest.contents}
        for record in records
        if record.WhichOneof("record_type") == "artifact"
    ]
    assert any({"report.md", "metrics.json"} <= paths for paths in artifacts)


# A run stopped by SIGTERM after its first checkpoint and resumed: the same tracker runs.
TRACKED = ("--set", "trainer.epochs=3", "--set", "evaluate.umap=false")
ALL_LOGGERS = ("--set", 'logging.loggers=["csv", "mlflow", "wandb"]')


def _plp_console(run_dir: Path) -> str:
    """Return what ``invoke train`` prints for a finished run: plp's lines and nothing else."""
    from plp_pipelines import format_metrics_table

    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = run_dir / "checkpoints" / info["best_checkpoint"]
    lines = [
        "",
        f"run directory: {run_dir}",
        f"best checkpoint: {best} ({info['monitor']} = {info['best_score']:.4f}, "
        f"epoch {info['best_epoch']})",
        f"training batches: the {info['data_pipeline']} data path",
        "",
        format_metrics_table(metrics),
        "",
        f"report: {run_dir / 'report.md'}",
    ]
    return "\n".join(lines) + "\n"


def test_a_stopped_run_resumes_into_the_same_mlflow_and_wandb_runs_on_a_quiet_console(
    tmp_path: Path, invoke: Any, wandb_records: Any, invoke_started: Any
) -> None:
    import os
    import signal
    import time

    import wandb
    from mlflow.tracking import MlflowClient

    # As in CI after the module's run, and in a notebook that used W&B: this process holds a W&B
    # service and WANDB_SERVICE names it. The stopped process must not leave its run open there
    # ("run ID ... is in use" when the resumed process asks for the same id).
    wandb.setup()
    assert os.environ.get("WANDB_SERVICE")
    unset = ("MLFLOW_LOGGING_LEVEL", "WANDB_SILENT")
    process = invoke_started("train", "--runs", str(tmp_path), *TRACKED, *ALL_LOGGERS, unset=unset)
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob("digits/*/checkpoints/last.ckpt")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint within 600 s: {process.communicate()[1][-3000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=600)
    (run_dir,) = tmp_path.glob("digits/*")
    assert process.returncode == 143, stderr[-3000:]
    # Quiet: no MLflow INFO lines, no "wandb:" lines; only plp's one line.
    assert stdout == ""
    stopped = int(stderr.rsplit("SIGTERM in epoch ", 1)[1].split(";", 1)[0])
    assert stderr.splitlines() == [
        f"plp: training stopped by SIGTERM in epoch {stopped}; "
        f"{run_dir / 'checkpoints' / 'last.ckpt'} kept: resume with "
        f"`uv run invoke train --resume --run {run_dir}`"
    ]
    assert 1 <= stopped < 3  # stopped after the first epoch's checkpoint, before the end
    ids = json.loads((run_dir / "logs" / "trackers.json").read_text())

    # The resumed run is as quiet: what plp prints, exactly.
    result = invoke("train", "--runs", str(tmp_path), "--resume", "--run", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    assert result.stdout == _plp_console(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["trackers"] == ids and set(ids) == {"mlflow", "wandb"}
    val_map = _val_map(run_dir)
    assert sorted(val_map) == [0, 1, 2]

    # MLflow: one run in the experiment, finished, its val/mAP history covers every epoch.
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.run_id == ids["mlflow"] and mlflow_run.info.status == "FINISHED"
    history = sorted(client.get_metric_history(ids["mlflow"], "val/mAP"), key=lambda m: m.step)
    assert len({m.step for m in history}) == 3
    assert [m.value for m in history] == pytest.approx(list(val_map.values()), abs=1e-7)
    epochs = sorted(client.get_metric_history(ids["mlflow"], "epoch"), key=lambda m: m.step)
    assert {int(m.value) for m in epochs} == {0, 1, 2}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert mlflow_run.data.metrics["test/reid/mAP"] == pytest.approx(metrics["reid"]["mAP"])

    # W&B: one offline record per process, both of run ids["wandb"]; together every epoch.
    files = sorted(
        (run_dir / "logs" / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name
    )
    assert [path.name for path in files] == [f"run-{ids['wandb']}.wandb"] * 2
    records = [wandb_records(path) for path in files]
    for part in records:
        runs = [record.run for record in part if record.WhichOneof("record_type") == "run"]
        assert runs and all(run.run_id == ids["wandb"] for run in runs)
    # The stopped process finished its W&B run as preempted, exit code 143 (Trackers.close).
    kinds = [record.WhichOneof("record_type") for record in records[0]]
    assert "preempting" in kinds
    (exit_record,) = [r.exit for r in records[0] if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 143
    histories = [_wandb_history(part, "val/mAP") for part in records]
    assert len(histories[0]) == stopped and len(histories[1]) == 3 - stopped
    assert histories[0] + histories[1] == pytest.approx(list(val_map.values()), abs=1e-7)


def _wandb_history(records: list[Any], key: str) -> list[Any]:
    return [
        json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
        if (item.key or "/".join(item.nested_key)) == key
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _mlflow_server(folder: Path) -> Iterator[str]:
    """Start ``mlflow server`` on 127.0.0.1 (sqlite store) and yield its URI; skip if it cannot."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    executable = Path(sys.executable).with_name("mlflow")
    if not executable.is_file():
        pytest.skip(f"no mlflow command beside {sys.executable} (the dev group installs it)")
    uri = f"http://127.0.0.1:{_free_port()}"
    log = folder / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(executable), "server", "--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1],
             "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
             "--artifacts-destination", str(folder / "server-artifacts"), "--workers", "1"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                    if response.read() == b"OK":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"mlflow server did not start: {log.read_text()[-1000:]}")
            time.sleep(1)
        yield uri
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def test_an_mlflow_tracking_server_holds_params_metric_history_and_artifacts(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from plp_pipelines import load_config, train

    with _mlflow_server(tmp_path) as uri:
        config = load_config(
            ROOT / "configs" / "digits.toml",
            [
                "trainer.epochs=2",
                "evaluate.umap=false",
                'logging.loggers=["csv", "mlflow"]',
                f"logging.mlflow.tracking_uri={uri}",
                "logging.mlflow.experiment=plp-server-test",
            ],
        )
        result = train(config, runs_root=tmp_path / "runs", progress_bar=False)
        assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing went to the local store
        info = json.loads((result.run_dir / "run.json").read_text())
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("plp-server-test")
        (mlflow_run,) = client.search_runs([experiment.experiment_id])
        run_id = mlflow_run.info.run_id
        assert run_id == info["trackers"]["mlflow"] and mlflow_run.info.status == "FINISHED"
        assert mlflow_run.data.params["trainer.epochs"] == "2"
        assert mlflow_run.data.params["logging.mlflow.tracking_uri"] == uri
        assert mlflow_run.data.tags["plp.run_dir"] == str(result.run_dir.resolve())
        rows = _csv_rows(result.run_dir)
        for name in ("val_loss", "val/mAP"):
            logged = [float(row[name]) for row in rows if row[name]]
            history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
            assert len(logged) == 2 and [m.value for m in history] == pytest.approx(logged)
        metrics = json.loads((result.run_dir / "metrics.json").read_text())
        assert mlflow_run.data.metrics["test/accuracy/top-1"] == pytest.approx(
            metrics["accuracy"]["top-1"]
        )
        # Artifacts went through the server into its artifact store, byte for byte.
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"report.md", "metrics.json", "plots"} <= artifacts
        copy = Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path)))
        assert copy.read_bytes() == (result.run_dir / "metrics.json").read_bytes()
        assert list((tmp_path / "server-artifacts").rglob("report.md"))
