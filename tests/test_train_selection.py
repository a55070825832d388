"""Best by a metric, EMA and frozen backbone, MLflow and W&B: one digits run read back.

One run (digits, P x K triplet, 3 epochs, ``val/mAP`` chooses the checkpoint, EMA 0.9, backbone
frozen for the first epoch, CSV + MLflow + W&B offline) is trained once for the module; each
test reads it back with an independent tool: Lightning's CSV log, plp-eval's ranking on features
recomputed from the checkpoint, mlflow's own client, W&B's own record format.
"""

from __future__ import annotations

import csv
import json
import struct
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


def _wandb_records(path: Path) -> list[Any]:
    """Read a W&B offline ``.wandb`` file: LevelDB-log blocks of W&B protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending += chunk
        if kind in (1, 4):  # a FULL record, or the LAST piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_the_history_config_summary_and_artifact(run: Any) -> None:
    result, _, _ = run
    info = json.loads((result.run_dir / "run.json").read_text())
    files = list(
        (result.run_dir / "logs" / "wandb").glob(
            f"offline-run-*/run-{info['trackers']['wandb']}.wandb"
        )
    )
    assert len(files) == 1
    records = _wandb_records(files[0])
    history = [
        json.loads(item.value_json)
        for record in records
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
        if (item.key or "/".join(item.nested_key)) == "val/mAP"
    ]
    assert history == pytest.approx(list(_val_map(result.run_dir).values()), abs=1e-7)
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
