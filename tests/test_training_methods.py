"""Training methods through the train pipeline: miners, XBM, hard_pk, distillation, datasets.

- A run with a miner, a cross-batch memory and the hard_pk sampler resumed from its epoch-0
  checkpoint ends with the uninterrupted run's weights, queue and class graph, bit for bit.
- A student distilled from a digits teacher reaches a higher mAP than the same student trained
  alone for the same epochs (fixed seeds), and its export works.
- ``evaluate_datasets`` on the run's own dataset gives the run's own numbers, kept under
  ``eval/<dataset>/`` and in ``metrics.json``; ``concat`` trains on a union with prefixed names.
- A miner on a loss without pairs, a teacher that is not a run or saw other images, or a concat
  part that sets the union's batch size stops the run before its folder exists (one line); the
  README's example of these keys is a valid config.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from plp_pipelines import ConfigError, load_config
from plp_pipelines._config import Config, validate_config

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "configs" / "digits.toml"


def _config(name: str, **sections: dict) -> Config:
    """A small digits recipe on the CPU, changed by ``sections`` (merged one level deep)."""
    raw: dict = {
        "name": name,
        "seed": 0,
        "data": {"name": "digits", "args": {"batch_size": 64, "val_fraction": 0.0}},
        "model": {
            "backbone": {"name": "small_convnet", "args": {"width": 16}},
            "head": {"name": "embedding_classifier"},
            "embedding_size": 16,
        },
        "loss": {"name": "cross_entropy"},
        "optimizer": {"name": "adam", "args": {"lr": 3e-3}},
        "trainer": {"epochs": 1, "accelerator": "cpu"},
        "evaluate": {"methods": ["reid"], "umap": False, "bootstrap": 0},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(raw.get(key), dict) else value
    return validate_config(raw, source=f"{name} (test)")


def _train(config: Config, runs: Path, **kwargs: Any) -> Any:
    from plp_pipelines import train

    return train(config, runs_root=runs, progress_bar=False, **kwargs)


def test_a_teacher_that_is_not_a_run_stops_before_the_run_folder(tmp_path: Path) -> None:
    config = _config("student", distill={"teacher": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"distill\.teacher: run directory .*nope does not exist"):
        _train(config, tmp_path / "runs")
    assert not list(tmp_path.rglob("config.toml"))


def test_a_miner_on_a_loss_without_pairs_stops_before_the_run_folder(tmp_path: Path) -> None:
    config = _config("mined", loss={"miner": {"name": "batch_hard"}})  # on cross_entropy
    message = r"miner 'batch_hard' with loss 'cross_entropy' needs a pair or triplet"
    with pytest.raises(ConfigError, match=message):
        _train(config, tmp_path / "runs")
    assert not list(tmp_path.rglob("config.toml"))


def test_a_concat_part_with_the_unions_batch_size_stops_before_the_run_folder(tmp_path):
    parts = [{"name": "digits", "args": {"batch_size": 4}}]
    config = _config("union", data={"name": "concat", "args": {"datasets": parts}})
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.args\.batch_size: set it on the concat"):
        _train(config, tmp_path / "runs")
    assert not list(tmp_path.rglob("config.toml"))


def test_the_readmes_training_methods_example_is_a_valid_config() -> None:
    from plp_pipelines._components import check_components
    from plp_pipelines._cross_domain import check_datasets

    section = (ROOT / "README.md").read_text().split("### Training methods", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = validate_config(tomllib.loads(example), source="README.md")
    check_components(config)
    check_datasets(config)
    assert config.loss.miner is not None and config.loss.memory is not None
    assert config.distill is not None and config.data.name == "concat"


def _checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
# Lightning's note on resuming into a non-empty checkpoint folder (the CLI's console drops it).
# The epoch-0 checkpoint copied over was written in another folder: its callback state moves
# with it, without Lightning's "dirpath has changed" (warnings are errors here).
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_miner_memory_and_hard_pk_resume_exactly(tmp_path: Path) -> None:
    from plp_pipelines import resume

    sampler = {
        "name": "hard_pk",
        "args": {"classes_per_batch": 4, "samples_per_class": 8, "neighbours": 3},
    }
    config = _config(
        "methods",
        data={
            "name": "digits",
            "args": {"batch_size": 32, "val_fraction": 0.1, "sampler": sampler},
        },
        model={"head": {"name": "embedding", "args": {"normalize": True}}},
        loss={
            "name": "contrastive",
            "miner": {"name": "batch_easy_hard", "args": {"pos_strategy": "hard"}},
            "memory": {"size": 256, "start_iteration": 5},
        },
        trainer={"epochs": 2, "accelerator": "cpu"},
        checkpoint={"save_top_k": -1},  # keeps epoch 0's checkpoint to resume from
        evaluate={"after_training": False},
    )
    whole = _train(config, tmp_path / "whole")
    (first,) = whole.run_dir.glob("checkpoints/epoch=0*.ckpt")
    interrupted = tmp_path / "cut" / "methods" / "run"
    (interrupted / "checkpoints").mkdir(parents=True)
    shutil.copy(whole.run_dir / "config.toml", interrupted / "config.toml")
    shutil.copy(first, interrupted / "checkpoints" / "last.ckpt")
    resumed = resume(interrupted, runs_root=tmp_path / "cut", progress_bar=False)
    runs = (resumed.run_dir, whole.run_dir)

    # Epoch 1's checkpoints (the resumed run's last.ckpt is the copy it started from).
    ours, theirs = (_checkpoint(next(run.glob("checkpoints/epoch=1*.ckpt"))) for run in runs)
    assert ours["epoch"] == theirs["epoch"] == 1
    queue = theirs["state_dict"]["losses.0.embedding_memory"]
    at_first = _checkpoint(first)["state_dict"]["losses.0.embedding_memory"]
    assert queue.abs().sum() > 0 and not torch.equal(queue, at_first)  # filled and moving
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key
    # The datamodule's state: the hard_pk class graph of epoch 1's refresh (after the warm-up).
    graphs = [run["DigitsDataModule"]["sampler"] for run in (ours, theirs)]
    assert graphs[0]["graph_epoch"] == graphs[1]["graph_epoch"] == 1
    assert graphs[1]["graph"].shape == (10, 3) and torch.equal(
        graphs[0]["graph"], graphs[1]["graph"]
    )


STUDENT = {"backbone": {"name": "small_convnet", "args": {"width": 4}}}
UNION_ARGS = {"batch_size": 64, "val_fraction": 0.0}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, shared_runs: Path) -> Path:
    """The session's one-epoch digits run (``configs/digits.toml``) to distil from."""
    from plp_pipelines.testing import shared_run

    recipe = ["trainer.epochs=1", "evaluate.after_training=false"]
    return shared_run(shared_runs, DIGITS, recipe, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The student's recipe (width 4, 1 epoch) trained without a teacher."""
    return _train(_config("alone", model=STUDENT), tmp_path_factory.mktemp("alone"))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["relational", "embedding_mse"])
def test_a_distilled_student_beats_the_same_student_alone(
    teacher: Any, alone: Any, tmp_path: Path, loss: str
) -> None:
    from plp_pipelines import export

    distill = {"teacher": str(teacher), "loss": loss, "weight": 5.0}
    distilled = _train(_config("student", model=STUDENT, distill=distill), tmp_path)
    ours, theirs = distilled.metrics["reid"]["mAP"], alone.metrics["reid"]["mAP"]
    assert ours > theirs + 0.05, (ours, theirs)
    state = _checkpoint(next(distilled.run_dir.glob("checkpoints/last.ckpt")))["state_dict"]
    assert not any(key.startswith("teacher.") for key in state)  # the teacher is not saved
    exported = export(distilled.run_dir, runs_root=tmp_path)
    assert exported.path.is_file() and exported.max_abs_diff < 1e-4


@pytest.mark.slow
def test_a_teacher_of_other_images_stops_before_the_run_folder(teacher: Any, tmp_path) -> None:
    parts = [{"name": "digits"}]
    data = {"name": "concat", "args": {"datasets": parts, "image_size": [16, 16], **UNION_ARGS}}
    distill = {"teacher": str(teacher)}
    message = (
        r"distill\.teacher: the teacher .* was trained with image_size = \[8, 8\], the "
        r"student's data has image_size = \[16, 16\]"
    )
    with pytest.raises(ConfigError, match=message):
        _train(_config("student", data=data, distill=distill), tmp_path / "runs")
    assert not list(tmp_path.rglob("config.toml"))


@pytest.mark.slow
def test_evaluating_on_the_runs_own_dataset_gives_the_runs_numbers(teacher: Path) -> None:
    from plp_pipelines import evaluate, evaluate_datasets

    own = evaluate(teacher, methods=["reid"])["reid"]
    others = evaluate_datasets(teacher, [str(DIGITS)], methods=["reid"])  # its own [data]
    # The same images through concat's DataLoader path (the run's: the device path): equal to
    # float rounding.
    assert others["digits"]["reid"]["mAP"] == pytest.approx(own["mAP"], abs=1e-6)
    assert others["digits"]["folder"] == "eval/digits"
    recorded = json.loads((teacher / "metrics.json").read_text())
    assert recorded["datasets"]["digits"]["reid"] == others["digits"]["reid"]
    assert recorded["reid"]["mAP"] == own["mAP"]  # the run's own numbers stay
    assert (teacher / "eval" / "digits" / "features" / "test.npz").is_file()


@pytest.mark.slow
def test_concat_trains_on_the_union_with_prefixed_names(tmp_path: Path) -> None:
    parts = [{"name": "digits"}, {"name": "digits", "args": {"split_seed": 1}}]
    data = {"name": "concat", "args": {"datasets": parts, **UNION_ARGS}}
    result = _train(_config("union", data=data), tmp_path)
    names = json.loads((result.run_dir / "metrics.json").read_text())["class_names"]
    assert names[:2] == ["digits/0", "digits/1"] and names[10:12] == ["digits#2/0", "digits#2/1"]
    assert len(names) == 20 and result.metrics["reid"]["mAP"] > 0.3
    assert load_config(result.run_dir / "config.toml").data.name == "concat"
