"""Numbers with their uncertainty, end to end: seeds, paired comparison, camera matrix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("trainer.epochs=1", "evaluate.umap=false", 'evaluate.methods=["accuracy", "reid"]')


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory, invoke) -> tuple[Path, list[Path], str]:
    """``invoke train --seeds 0,1`` on digits, one epoch: the runs folder, the runs, stdout."""
    runs = tmp_path_factory.mktemp("seeds")
    sets = [item for value in QUICK for item in ("--set", value)]
    result = invoke("train", "--seeds", "0,1", "--runs", str(runs), *sets)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted(p for p in (runs / "digits").iterdir() if (p / "run.json").is_file())
    return runs, folders, result.stdout


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_seeds_train_one_run_each_and_summarise_them(seed_runs) -> None:
    from scipy import stats

    runs, folders, stdout = seed_runs
    assert len(folders) == 2
    for seed, folder in enumerate(folders):
        assert f"\nseed = {seed}\n" in (folder / "config.toml").read_text()
    (summary_dir,) = [p for p in (runs / "digits").iterdir() if p.name.endswith("-seeds")]
    assert f"summary: {summary_dir / 'summary.md'}" in stdout
    summary = json.loads((summary_dir / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    assert [run["run_dir"] for run in summary["runs"]] == [str(f) for f in folders]
    assert {"reid mAP", "accuracy (top-1)", "reid rank-1"} <= set(summary["metrics"])
    for label, row in summary["metrics"].items():
        values = [_metrics(f)[row["section"]][row["key"]] for f in folders]
        assert row["values"] == values, label
        assert row["mean"] == pytest.approx(np.mean(values), abs=1e-15)
        assert row["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
        assert (row["min"], row["max"]) == (min(values), max(values))
        half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)
        assert row["t_interval"] == pytest.approx([np.mean(values) - half, np.mean(values) + half])
    # Each run's own bootstrap interval stands beside its value.
    first = _metrics(folders[0])
    assert summary["runs"][0]["ci"]["reid mAP"] == first["reid"]["ci"]["mAP"]
    assert first["reid"]["num_identities"] == 10
    text = (summary_dir / "summary.md").read_text()
    assert "| reid mAP |" in text and "seed 1" in text


def test_compare_a_run_with_itself_and_with_another_seed(seed_runs) -> None:
    from plp_pipelines import compare_runs

    runs, (a, b), _ = seed_runs
    same = compare_runs(a, a, runs_root=runs, permutations=500)
    for name, row in same.result["metrics"].items():
        assert (row["difference"], row["ci"], row["p_value"]) == (0.0, [0.0, 0.0], 1.0), name
    other = compare_runs(a, b, runs_root=runs, permutations=2000, seed=3)
    reid_a, reid_b = _metrics(a)["reid"], _metrics(b)["reid"]
    for name, row in other.result["metrics"].items():
        assert row["a"] == pytest.approx(reid_a[name], abs=1e-12), name
        assert row["b"] == pytest.approx(reid_b[name], abs=1e-12), name
        assert row["difference"] == pytest.approx(reid_a[name] - reid_b[name], abs=1e-12)
        assert row["ci"][0] <= row["ci"][1] and 0.0 < row["p_value"] <= 1.0
    assert other.result["num_identities"] == 10 and other.result["exact"]  # 2^10 flips
    written = json.loads((other.folder / "compare.json").read_text())
    assert written == json.loads(json.dumps(other.result))
    assert other.folder.parent == runs / "compare"
    assert "| mAP |" in (other.folder / "compare.md").read_text()
    accuracy = compare_runs(a, b, method="accuracy", runs_root=runs)
    top_1 = accuracy.result["metrics"]["top-1"]
    assert top_1["a"] == pytest.approx(_metrics(a)["accuracy"]["top-1"], abs=1e-6)


def _copy_run(run: Path, to: Path) -> Path:
    """A copy of a run with what compare reads: its config and its features."""
    to.mkdir(parents=True)
    shutil.copy(run / "config.toml", to / "config.toml")
    shutil.copytree(run / "features", to / "features")
    return to


def test_compare_refuses_other_test_sets(seed_runs, tmp_path: Path, invoke) -> None:
    _, (a, _), _ = seed_runs
    other = _copy_run(a, tmp_path / "other")
    test = dict(np.load(other / "features" / "test.npz"))
    test["labels"] = np.roll(test["labels"], 1)
    np.savez(other / "features" / "test.npz", **test)
    result = invoke("compare", str(a), str(other), "--runs", str(tmp_path))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("plp: error: the runs were evaluated on different test sets: test of")
    assert "differ in their labels from row" in line and "\n" not in line
    test["sample_ids"] = test["sample_ids"][::-1].copy()
    np.savez(other / "features" / "test.npz", **test)
    from plp_pipelines import RunError, compare_runs

    with pytest.raises(RunError, match="differ in their sample ids from row 0"):
        compare_runs(a, other, runs_root=tmp_path)


def test_market_camera_matrix_equals_a_computation_from_the_features(market_run: Path) -> None:
    """On a tiny Market-1501 set (queries in camera 1, their matches in cameras 2 and 3, a
    distractor in camera 1) each cell is the mean of 1 / rank of the query's one match among
    that camera's gallery images (cosine distance: the recipe's), computed from the features."""
    metrics = json.loads((market_run / "metrics.json").read_text())
    cameras = metrics["reid"]["camera_map"]
    assert cameras["query_cameras"] == [1] and cameras["gallery_cameras"] == [1, 2, 3]
    query = np.load(market_run / "features" / "query.npz")
    gallery = np.load(market_run / "features" / "gallery.npz")
    expected = [None]  # camera 1 holds only the distractor: no match there

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.float64)
        return rows / np.linalg.norm(rows, axis=-1, keepdims=True)

    for camera in (2, 3):
        chosen = np.flatnonzero(gallery["cameras"] == camera)
        inverse_ranks = []
        for q in range(len(query["labels"])):
            distances = 1.0 - unit(gallery["features"][chosen]) @ unit(query["features"][q])
            match = int(np.flatnonzero(gallery["labels"][chosen] == query["labels"][q])[0])
            ahead = (distances < distances[match]) | (
                (distances == distances[match]) & (np.arange(len(chosen)) < match)
            )
            inverse_ranks.append(1.0 / (1 + ahead.sum()))
        expected.append(float(np.mean(inverse_ranks)))
    assert cameras["mAP"][0][0] is None
    assert cameras["mAP"][0][1:] == pytest.approx(expected[1:], abs=1e-12)
    assert cameras["num_valid_queries"] == [[0, 20, 20]]
    assert (market_run / metrics["plots"]["camera_map"]).is_file()
    assert "plots/camera_map.png" in (market_run / "report.md").read_text()
