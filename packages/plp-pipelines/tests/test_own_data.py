"""A run on a dataset CSV: features name their files, the junk rule, verification in the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import plp_eval
from plp_data.testing import write_csv_dataset
from plp_pipelines import embed, index, load_config, search, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A csv_example run on a CSV with cameras, sequences, boxes and queries in the gallery."""
    data = tmp_path_factory.mktemp("data")
    path = write_csv_dataset(
        data,
        train_classes=range(6),
        validation_classes=range(6, 10),
        per_class=6,
        cameras=True,
        sequences=True,
        boxes=True,
        query_in_gallery=True,
        size=(20, 20),
    )
    config = load_config(
        ROOT / "configs" / "csv_example.toml",
        [
            f"data.args.path={path}",
            "data.args.image_size=[16, 16]",
            "trainer.epochs=2",
            "model.backbone.args.width=8",
        ],
    )
    result = train(config, runs_root=tmp_path_factory.mktemp("runs"), progress_bar=False)
    return result.run_dir, path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _mean_average_precision(distances, q_labels, g_labels, junk) -> float:  # type: ignore[no-untyped-def]
    """Brute force: full sort per query (ties by index), junk removed, AP over the ranking."""
    aps = []
    for i, row in enumerate(distances):
        order = [j for j in np.lexsort((np.arange(len(row)), row)) if not junk[i, j]]
        hits = [rank for rank, j in enumerate(order, 1) if g_labels[j] == q_labels[i]]
        if hits:
            aps.append(np.mean([(n + 1) / h for n, h in enumerate(hits)]))
    return float(np.mean(aps))


def test_features_name_their_files_and_carry_the_groups(run: tuple[Path, Path]) -> None:
    run_dir, path = run
    rows = _rows(path)
    sequences = sorted({r["sequence"] for r in rows})
    for split, chosen in (
        ("query", [r for r in rows if r["is_query"] == "True"]),
        ("gallery", [r for r in rows if r["is_gallery"] == "True"]),
        ("trainval", [r for r in rows if r["split"] == "train"]),
    ):
        with np.load(run_dir / "features" / f"{split}.npz", allow_pickle=False) as data:
            assert data["paths"].tolist() == [r["path"] for r in chosen], split
            assert data["groups"].tolist() == [sequences.index(r["sequence"]) for r in chosen]


def test_the_junk_rule_and_verification_follow_the_protocol(run: tuple[Path, Path]) -> None:
    run_dir, _ = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    query = dict(np.load(run_dir / "features" / "query.npz"))
    gallery = dict(np.load(run_dir / "features" / "gallery.npz"))
    unit_q = query["features"] / np.linalg.norm(query["features"], axis=1, keepdims=True)
    unit_g = gallery["features"] / np.linalg.norm(gallery["features"], axis=1, keepdims=True)
    distances = 1.0 - unit_q.astype(np.float64) @ unit_g.T.astype(np.float64)
    same_label = query["labels"][:, None] == gallery["labels"][None, :]
    junk = query["groups"][:, None] == gallery["groups"][None, :]  # own sequence (and itself)
    junk |= same_label & (query["cameras"][:, None] == gallery["cameras"][None, :])
    assert junk[
        np.arange(len(junk)), [list(gallery["paths"]).index(p) for p in query["paths"]]
    ].all()
    expected = _mean_average_precision(distances, query["labels"], gallery["labels"], junk)
    assert metrics["reid"]["mAP"] == pytest.approx(expected, abs=1e-6)
    verification = metrics["verification"]
    assert verification["positive_pairs"] == int((same_label & ~junk).sum())
    assert verification["negative_pairs"] == int((~same_label & ~junk).sum())
    assert verification["target_FMR"] == 1e-3 and verification["query"] == "query"
    assert "open_set" in verification  # query_gallery: DIR@FAR's counts at least
    assert (run_dir / "plots" / "roc.png").stat().st_size > 0
    report = (run_dir / "report.md").read_text()
    assert "## Verification" in report and "positive" in report
    # The same numbers from the saved features, by plp-eval directly.
    direct = plp_eval.verification_metrics(
        query["features"],
        query["labels"],
        gallery["features"],
        gallery["labels"],
        query["cameras"],
        gallery["cameras"],
        metric="cosine",
        query_groups=query["groups"],
        gallery_groups=gallery["groups"],
    )
    assert verification["EER"] == direct.eer
    # The rank list names its files: each row's results are the protocol's ranking, junk out.
    listed = json.loads((run_dir / "plots" / "rank_list.json").read_text())["queries"]
    assert metrics["plots"]["rank_list_files"].endswith("rank_list.json") and listed
    for row in listed:
        i = list(query["paths"]).index(row["query"])
        order = [j for j in np.lexsort((np.arange(len(junk[i])), distances[i])) if not junk[i, j]]
        assert [r["path"] for r in row["results"]] == [gallery["paths"][j] for j in order[:8]]
        assert [r["match"] for r in row["results"]] == [bool(same_label[i, j]) for j in order[:8]]


def test_embed_index_and_search_a_dataset_csv(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, path = run
    rows = _rows(path)
    embedded = embed(run_dir, images=path, out=tmp_path / "all.npz")  # every row, labelled
    with np.load(embedded.path, allow_pickle=False) as data:
        assert data["paths"].tolist() == [r["path"] for r in rows]
        assert data["labels"].tolist() == [int(r["label"]) for r in rows]
    built = index(run_dir, images=path, name="csv")  # the gallery rows
    assert built.count == sum(r["is_gallery"] == "True" for r in rows)
    found = search(run_dir, index="csv", query=path, top_k=3, draw=False)  # the query rows
    queries = [r["path"] for r in rows if r["is_query"] == "True"]
    assert [answer.query for answer in found.queries] == queries
    for answer in found.queries:  # each query is a gallery row too: itself first, cropped alike
        assert answer.paths[0] == answer.query
        assert answer.distances[0] == pytest.approx(0.0, abs=1e-4)
