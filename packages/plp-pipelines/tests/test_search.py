"""Embed, index and search image files with a trained digits run, end to end."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from plp_data._base import split_indices
from plp_data.testing import write_digits_images
from plp_pipelines import Reading, RunError, embed, index, load_config, search, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits triplet run, trained briefly and evaluated (its test features saved)."""
    config = load_config(
        ROOT / "configs" / "digits_triplet.toml",
        ["trainer.epochs=3", "evaluate.methods=['reid']", "evaluate.umap=false"],
    )
    return train(config, runs_root=tmp_path_factory.mktemp("runs"), progress_bar=False).run_dir


@pytest.fixture(scope="module")
def test_split() -> np.ndarray:
    """The digits test split's indices into scikit-learn's digits, in the split's order."""
    labels = load_digits().target
    return split_indices(labels, 0.25, 0)[1]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, test_split: np.ndarray) -> Path:
    """The test split's digits 0-7 as PNG files (raw 0..16 values), by label."""
    folder = tmp_path_factory.mktemp("gallery")
    labels = load_digits().target
    write_digits_images(folder, [int(i) for i in test_split if labels[i] < 8])
    return folder


def test_embed_equals_the_runs_own_test_features(
    run: Path, test_split: np.ndarray, tmp_path: Path
) -> None:
    files = write_digits_images(tmp_path / "all", [int(i) for i in test_split], by_label=False)
    result = embed(run, images=tmp_path / "all")
    assert result.path == run / "embeddings" / "all.npz" and result.count == len(files)
    with np.load(result.path, allow_pickle=False) as data:
        names = [str(p) for p in data["paths"]]
        features = data["features"]
        assert "labels" not in data
    with np.load(run / "features" / "test.npz") as data:
        expected = data["features"]
    # Files are sorted by name; row i of test.npz is test_split[i].
    order = {f"{index}.png": row for row, index in enumerate(test_split)}
    rows = [order[name] for name in names]
    np.testing.assert_allclose(features, expected[rows], atol=1e-5)


def test_index_search_top1_no_match_and_files(run: Path, gallery: Path, tmp_path: Path) -> None:
    built = index(run, images=gallery, name="digits")
    assert built.folder == run / "index" / "digits" and built.recall_at_10 == 1.0
    meta = json.loads((built.folder / "meta.json").read_text())
    assert meta["kind"] == "flat" and meta["count"] == built.count
    assert len((built.folder / "paths.txt").read_text().splitlines()) == built.count
    own = sorted(gallery.rglob("*.png"))[5]
    unseen = write_digits_images(
        tmp_path / "unseen", [int(np.flatnonzero(load_digits().target == 9)[0])]
    )
    found = search(run, index="digits", query=own, top_k=5, threshold=0.05)
    (answer,) = found.queries
    assert answer.paths[0] == own.relative_to(gallery).as_posix()
    assert answer.distances[0] == pytest.approx(0.0, abs=1e-3)
    assert not answer.no_match
    found = search(run, index="digits", query=unseen[0], top_k=5, threshold=0.05)
    (answer,) = found.queries
    assert answer.no_match and not any(answer.accepted)
    written = json.loads((found.folder / "results.json").read_text())
    assert written["queries"][0]["no_match"] is True and written["threshold"] == 0.05
    assert (found.folder / "results.png").stat().st_size > 0


def test_approximate_index_records_its_recall(run: Path, gallery: Path) -> None:
    built = index(run, images=gallery, name="digits_ivf", kind="ivf")
    meta = json.loads((built.folder / "meta.json").read_text())
    assert meta["kind"] == "ivf" and 0.0 < meta["recall@10"] <= 1.0
    assert meta["recall@10"] == built.recall_at_10


def test_a_changed_checkpoint_refuses_the_old_index(
    run: Path, gallery: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    index(copy, images=gallery, name="old")
    info = json.loads((copy / "run.json").read_text())
    checkpoint = copy / "checkpoints" / info["best_checkpoint"]
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for tensor in state["state_dict"].values():
        if tensor.is_floating_point():
            tensor.mul_(1.01)
    torch.save(state, checkpoint)
    query = sorted(gallery.rglob("*.png"))[0]
    with pytest.raises(RunError, match=r"index 'old' was built with checkpoint .* rebuild it"):
        search(copy, index="old", query=query)


def test_unreadable_images_are_skipped_or_refused(run: Path, tmp_path: Path) -> None:
    write_digits_images(tmp_path / "mixed", [0, 1])
    (tmp_path / "mixed" / "notes.png").write_text("not a picture")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = embed(run, images=tmp_path / "mixed", out=tmp_path / "mixed.npz")
    assert result.count == 2 and result.unreadable == ("notes.png",)
    assert any("skipped 1 unreadable image(s)" in str(w.message) for w in caught)
    with pytest.raises(RunError, match=r"--images: .*notes\.png: not a readable image"):
        embed(run, images=tmp_path / "mixed", reading=Reading(strict=True))
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "cached.png").write_bytes(b"")  # hidden: not looked at
    with pytest.raises(RunError, match=r"empty: no image files in it or below it"):
        embed(run, images=tmp_path / "empty")
    with pytest.raises(RunError, match=r"nowhere does not exist; expected a folder of images"):
        embed(run, images=tmp_path / "nowhere")


def test_search_prints_each_query_with_no_match_marked(tmp_path: Path) -> None:
    from plp_pipelines import QueryResult, SearchResult

    found = QueryResult("a.png", ("g/1.png", "g/2.png"), (0.25, 1.5), (True, False))
    missed = QueryResult("b.png", ("g/2.png",), (2.0,), (False,))
    result = SearchResult(tmp_path, 1.0, (found, missed), ())
    assert result.lines() == [
        "a.png:",
        "    1. 0.2500  g/1.png",
        "    2. 1.5000  g/2.png  (no match)",
        "b.png: no match",
        "    1. 2.0000  g/2.png  (no match)",
        "threshold: 1 (past it: no match)",
        f"results: {tmp_path / 'results.json'}",
    ]
    uncalibrated = SearchResult(tmp_path, None, (), ()).lines()
    assert uncalibrated[0].startswith("threshold: none (evaluate the run with --method verif")
