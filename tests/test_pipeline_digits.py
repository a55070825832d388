"""The foundation slice end to end on digits, through tasks.py in a subprocess (as a user would)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def grey_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, invoke) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("runs")
    result = invoke("train", "--config", "configs/digits.toml", "--runs", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    return runs, result.stdout


def test_train_prints_metrics_and_writes_the_run_directory(trained: tuple[Path, str]) -> None:
    runs, stdout = trained
    run_dir = runs / (runs / "LATEST").read_text().strip()
    assert f"run directory: {run_dir}" in stdout
    for label in ("accuracy (top-1)", "reid rank-1", "reid mAP", "clustering NMI"):
        assert label in stdout
    for name in (
        "config.toml",
        "run.json",
        "metrics.json",
        "report.md",
        "checkpoints/last.ckpt",
        "logs/csv/metrics.csv",
        "features/trainval.npz",
        "features/test.npz",
        "plots/umap_test.png",
        "plots/training_curves.png",
        "plots/cmc.png",
        "plots/rank_list.png",
        "plots/confusion_matrix.png",
        "plots/distance_histogram.png",
    ):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"]["top-1"] >= 0.95
    assert metrics["reid"]["rank-1"] >= 0.95 and metrics["reid"]["mAP"] >= 0.8
    assert metrics["clustering"]["nmi"] >= 0.8
    with np.load(run_dir / "features" / "test.npz") as test:
        assert test["features"].shape == (450, 64) and test["labels"].shape == (450,)
        # The saved logits reproduce the reported accuracy.
        accuracy = (test["logits"].argmax(1) == test["labels"]).mean()
        assert accuracy == pytest.approx(metrics["accuracy"]["top-1"], abs=1e-6)
    with np.load(run_dir / "features" / "trainval.npz") as trainval:
        assert trainval["features"].shape == (1347, 64)
    pixels = grey_pixels(run_dir / "plots" / "umap_test.png")
    assert pixels.std() > 10  # not blank
    report = (run_dir / "report.md").read_text()
    assert "| reid mAP |" in report and "umap_test.png" in report


def test_evaluate_newest_run_recomputes_the_same_reid(trained: tuple[Path, str], invoke) -> None:
    runs, _ = trained
    run_dir = runs / (runs / "LATEST").read_text().strip()
    before = json.loads((run_dir / "metrics.json").read_text())
    umap = [run_dir / before["plots"][name] for name in ("umap", "umap_html")]
    drawn = [path.stat().st_mtime_ns for path in umap]
    result = invoke("evaluate", "--method", "reid", "--runs", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reid rank-1" in result.stdout and "accuracy" not in result.stdout
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["reid"] == before["reid"]
    assert after["accuracy"] == before["accuracy"]  # kept from the earlier evaluation
    # Only reid was asked for: no UMAP fit; the same checkpoint's UMAP stays in place.
    assert [path.stat().st_mtime_ns for path in umap] == drawn
    assert {name: after["plots"][name] for name in ("umap", "umap_html")} == {
        name: before["plots"][name] for name in ("umap", "umap_html")
    }
    assert "umap_test.png" in (run_dir / "report.md").read_text()


def _newest(runs: Path) -> Path:
    return runs / (runs / "LATEST").read_text().strip()


def test_explain_graph_and_align_through_tasks(trained: tuple[Path, str], invoke) -> None:
    runs, _ = trained
    run_dir = _newest(runs)
    result = invoke(
        "explain", "--runs", str(runs), "--samples", "4", "--set", "explain.algorithm=saliency"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = Path(result.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert written == run_dir / "plots" / "explain_saliency.png" and written.is_file()
    assert grey_pixels(written).std() > 10

    result = invoke("graph", "--run", str(run_dir), "--runs", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    graph_dir = run_dir / "plots" / "graph"
    assert (graph_dir / "model.gv").is_file() and (graph_dir / "layers.txt").is_file()
    assert "backbone" in (graph_dir / "layers.txt").read_text()

    checkpoints = sorted(str(p) for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) >= 2
    out = runs / "aligned"
    args = [arg for ckpt in checkpoints for arg in ("-k", ckpt)]
    # --set align.*: trainval, subsampled to the test split's size (the same UMAP cost).
    sets = ("--set", "align.split=trainval", "--set", "align.max_samples=450")
    result = invoke("align", *args, *sets, "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    panels = sorted(out.glob("*.png"))
    assert [p.name for p in panels] == ["aligned_umap_trainval.png"]
    assert grey_pixels(panels[0]).std() > 10
