"""One evaluation = one consistent state: no mixed checkpoints, nothing written on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import plp_models
from plp_pipelines import RunError, evaluate, load_config, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    config = load_config(
        ROOT / "configs" / "digits.toml", ["trainer.epochs=2", "evaluate.umap=false"]
    )
    return train(config, runs_root=runs, progress_bar=False).run_dir


def _state(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / "metrics.json", run_dir / "report.md", *run_dir.glob("features/*")]
    return {str(path): path.read_bytes() for path in files}


def test_another_checkpoints_method_never_shows_the_old_numbers(run_dir: Path) -> None:
    before = json.loads((run_dir / "metrics.json").read_text())
    best = before["checkpoint"]
    assert {before[m]["checkpoint"] for m in ("accuracy", "reid", "clustering")} == {best}
    # Other weights (results are identified by the weights' sha256, not the file's name).
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    next(t for t in state["state_dict"].values() if t.is_floating_point()).add_(1.0)
    last = run_dir / "checkpoints" / "other.ckpt"
    torch.save(state, last)
    metrics = evaluate(run_dir, checkpoint=last, methods=["clustering"])
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert written["checkpoint"] == written["clustering"]["checkpoint"] == "other.ckpt"
    assert "accuracy" not in written and "reid" not in written  # the best's numbers are gone
    assert not (run_dir / "plots" / "confusion_matrix.png").exists()
    assert "other.ckpt" in (run_dir / "report.md").read_text()
    # Evaluating the same checkpoint again with another method keeps the first one's numbers.
    evaluate(run_dir, checkpoint=last, methods=["accuracy"])
    both = json.loads((run_dir / "metrics.json").read_text())
    assert both["clustering"] == written["clustering"]
    assert both["accuracy"]["checkpoint"] == "other.ckpt"
    assert not list(run_dir.glob(".evaluate-*"))


def test_a_checkpoint_for_other_data_is_refused_before_anything_is_written(
    run_dir: Path, tmp_path: Path
) -> None:
    state = _state(run_dir)
    hyper = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    other = plp_models.PlpModel(**{**hyper, "num_classes": 12})  # same network, 12 classes
    path = tmp_path / "twelve.ckpt"
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, path)
    with pytest.raises(RunError, match=r"twelve\.ckpt was trained with num_classes = 12, but "):
        evaluate(run_dir, checkpoint=path)
    assert _state(run_dir) == state
    assert not list(run_dir.glob(".evaluate-*"))


def test_a_failing_evaluation_leaves_the_previous_results(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _state(run_dir)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while clustering")

    monkeypatch.setattr("plp_eval.clustering_metrics", fail)
    with pytest.raises(RuntimeError, match="killed while clustering"):
        evaluate(run_dir, methods=["reid", "clustering"])
    assert _state(run_dir) == state
    assert not list(run_dir.glob(".evaluate-*"))


def test_a_tiny_test_split_loses_only_what_needs_more_rows(tmp_path: Path) -> None:
    from PIL import Image

    for split, count in (("train", 6), ("test", 1)):
        for name in ("a", "b"):
            for i in range(count):
                path = tmp_path / "images" / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                shade = (40 if name == "a" else 200) + i
                Image.new("RGB", (8, 8), (shade, shade, shade)).save(path)
    config = load_config(
        ROOT / "configs" / "digits.toml",
        [
            "data.name=image_folder",
            f"data.root={tmp_path / 'images'}",
            "data.image_size=[8, 8]",
            "data.batch_size=4",
            "trainer.epochs=1",
        ],
    )
    # Its validation split (one image per class) has no image with a match: retrieval validation is
    # skipped with one warning, the run selects by val_loss and is still evaluated.
    with pytest.warns(UserWarning, match=r"retrieval validation is skipped: no class of the"):
        result = train(config, runs_root=tmp_path / "runs", progress_bar=False)
    metrics = result.metrics
    logged = (result.run_dir / "logs" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val_loss" in logged.split(",") and "val/mAP" not in logged
    assert result.monitor == "val_loss"
    assert metrics["accuracy"]["top-1"] in (0.0, 0.5, 1.0)  # 2 test images
    assert metrics["reid"]["num_queries"] == 2
    assert "skipped" in metrics["clustering"]  # 2 images for 2 classes: nothing to cluster
    assert "umap" not in metrics["plots"] and "cmc" in metrics["plots"]
