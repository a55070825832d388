"""A run folder copied or moved elsewhere resumes with its checkpoint callback's whole state."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from plp_pipelines import load_config
from plp_pipelines._selection import Selection

ROOT = Path(__file__).resolve().parents[3]


def test_a_moved_runs_checkpoint_state_moves_with_it(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "digits.toml", ["checkpoint.save_top_k=2"])
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    selection = Selection(monitor="val_loss", mode="min", early_stopping=None)
    saver, _ = selection.callbacks(config, old)
    saver.best_k_models = {
        str(old / "epoch=1.ckpt"): torch.tensor(0.4),
        str(old / "epoch=2.ckpt"): torch.tensor(0.5),
    }
    saver.best_model_path, saver.best_model_score = str(old / "epoch=1.ckpt"), torch.tensor(0.4)
    saver.kth_best_model_path, saver.kth_value = str(old / "epoch=2.ckpt"), torch.tensor(0.5)
    saver.last_model_path = str(old / "last.ckpt")
    state = saver.state_dict()

    loader, _ = selection.callbacks(config, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "dirpath has changed": nothing is dropped
        loader.load_state_dict(state)
    assert loader.last_model_path == str(new / "last.ckpt")  # resumed, it writes last.ckpt again
    assert loader.best_model_path == str(new / "epoch=1.ckpt")
    assert loader.kth_best_model_path == str(new / "epoch=2.ckpt") and loader.kth_value == 0.5
    assert loader.best_k_models == {str(new / "epoch=1.ckpt"): 0.4, str(new / "epoch=2.ckpt"): 0.5}
    assert loader.best_model_score == 0.4
    assert state["dirpath"] == str(old)  # the saved state itself is not changed

    # In the folder it was saved in, the state loads as it is; the key checkpoints file it under
    # is ModelCheckpoint's own, so runs saved before and after this class resume alike.
    again, _ = selection.callbacks(config, old)
    again.load_state_dict(state)
    assert again.last_model_path == str(old / "last.ckpt")
    assert again.state_key == ModelCheckpoint(monitor="val_loss", mode="min").state_key


def test_other_datasets_results_of_other_weights_are_dropped_whatever_the_file_name(
    tmp_path: Path,
) -> None:
    import json

    from plp_pipelines._cross_domain import _record

    metrics = tmp_path / "metrics.json"
    earlier = {
        "mnist": {"checkpoint": "last.ckpt", "weights_sha256": "aaa", "reid": {"mAP": 0.1}},
        "kmnist": {"checkpoint": "last.ckpt", "weights_sha256": "bbb", "reid": {"mAP": 0.2}},
        "broken": "not a section",
    }
    metrics.write_text(json.dumps({"reid": {"mAP": 0.9}, "datasets": earlier}))
    new = {"fashion": {"checkpoint": "last.ckpt", "weights_sha256": "bbb", "reid": {"mAP": 0.3}}}
    _record(metrics, new)
    recorded = json.loads(metrics.read_text())
    # mnist came from other weights under the same file name: gone; kmnist's weights are these.
    assert recorded["datasets"] == {"kmnist": earlier["kmnist"], **new}
    assert recorded["reid"] == {"mAP": 0.9}  # the run's own numbers stay
