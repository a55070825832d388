"""The audit method's pieces that need no trained run: layouts by protocol, images by path."""

from __future__ import annotations

import doctest

from plp_pipelines._methods import audit


class Files:
    """A datamodule stand-in whose trainval images are files and test images are not."""

    def split_paths(self, split: str) -> list[str] | None:
        return [f"train/{i}.png" for i in range(3)] if split == "trainval" else None


def test_layouts_by_protocol() -> None:
    assert doctest.testmod(audit, raise_on_error=True).attempted >= 1
    splits, groups, pairs = audit.audit_layout("query_gallery")
    assert splits == ["trainval", "query", "gallery"]  # test is the query again: not twice
    assert groups == [["trainval"], ["query", "gallery"]]  # training identities are others
    assert ("query", "gallery") in pairs
    splits, groups, pairs = audit.audit_layout("test_leave_one_out")
    assert groups == [["trainval"], ["test"]] and ("test", "test") in pairs


def test_images_are_named_by_path_where_the_dataset_has_files() -> None:
    lists = {
        "mislabeled": [{"split": "trainval", "index": 2, "score": 0.9}],
        "outliers": [{"split": "test", "index": 1, "score": 3.0}],
        "leakage": [
            {"first": {"split": "trainval", "index": 0}, "second": {"split": "test", "index": 4}}
        ],
        "duplicate_identities": [
            {"examples": [[{"split": "trainval", "index": 1}], [{"split": "test", "index": 0}]]}
        ],
    }
    named = audit._named(lists, Files(), ["trainval", "test"])
    assert named["mislabeled"][0]["path"] == "train/2.png"
    assert "path" not in named["outliers"][0]  # no files: split and index name it
    assert named["leakage"][0]["first"]["path"] == "train/0.png"
    assert "path" not in named["leakage"][0]["second"]
    assert named["duplicate_identities"][0]["examples"][0][0]["path"] == "train/1.png"
    assert audit.image_name(named["outliers"][0]) == "test[1]"
    assert audit.image_name(named["mislabeled"][0]) == "train/2.png"
    plain = audit._named(lists, object(), ["trainval", "test"])
    assert "path" not in plain["mislabeled"][0]


def test_report_rank_lists_follow_the_junk_rule() -> None:
    from types import SimpleNamespace

    import numpy as np

    from plp_pipelines._report_html import RANK_LIST_LENGTH, _rank_lists

    rng = np.random.default_rng(0)

    def split(count: int, cameras: bool) -> SimpleNamespace:
        return SimpleNamespace(
            features=rng.normal(size=(count, 3)).astype(np.float32),
            labels=rng.integers(0, 3, count),
            cameras=rng.integers(0, 2, count) if cameras else None,
            groups=None,
        )

    for protocol, cameras in (("test_leave_one_out", False), ("query_gallery", True)):
        test = split(40, cameras)
        gallery = test if protocol == "test_leave_one_out" else split(60, cameras)
        context = SimpleNamespace(
            features={"test": test, "gallery": gallery},
            gallery_split="test" if gallery is test else "gallery",
            config=SimpleNamespace(
                evaluate=SimpleNamespace(protocol=protocol, reid_metric="euclidean")
            ),
        )
        context.features[context.gallery_split] = gallery
        rows = np.arange(40)
        lists = _rank_lists(context, rows)
        for row, line in zip(rows, lists, strict=True):
            distances = np.linalg.norm(gallery.features - test.features[row], axis=1)
            junk = np.zeros(len(distances), dtype=bool)
            if protocol == "test_leave_one_out":
                junk[row] = True
            else:
                junk = (gallery.labels == test.labels[row]) & (gallery.cameras == test.cameras[row])
            order = [i for i in np.lexsort((np.arange(len(distances)), distances)) if not junk[i]]
            assert line.tolist() == order[:RANK_LIST_LENGTH]


def test_report_metrics_show_intervals_where_computed() -> None:
    from plp_pipelines._report_html import _metrics_rows

    rows = "".join(
        _metrics_rows(
            {
                "reid": {"mAP": 0.8, "rank-1": 0.9, "ci": {"mAP": [0.75, 0.85]}},
                "accuracy": {"top-1": 0.95, "bootstrap": {"ci": {"top-1": [0.9, 0.97]}}},
            }
        )
    )
    assert "<td>reid mAP</td><td>0.8000</td><td>[0.7500, 0.8500]</td>" in rows
    assert "<td>reid rank-1</td><td>0.9000</td><td></td>" in rows
    assert "<td>accuracy (top-1)</td><td>0.9500</td><td>[0.9000, 0.9700]</td>" in rows


def test_the_audit_method_passes_a_dataset_csvs_groups() -> None:
    """Query and gallery frames of one sequence are the protocol's junk, not leakage."""
    from types import SimpleNamespace

    import numpy as np

    rng = np.random.default_rng(1)

    class Pixels:  # a datamodule stand-in: distinct pixels for every image, in one batch
        def split_dataloader(self, split: str) -> list[tuple[SimpleNamespace]]:
            images = rng.random((len(features[split].labels), 2, 2))
            return [(SimpleNamespace(cpu=lambda: SimpleNamespace(numpy=lambda: images)),)]

    def split(points: np.ndarray, labels: list[int], groups: list[int] | None) -> SimpleNamespace:
        return SimpleNamespace(
            features=points.astype(np.float32),
            labels=np.asarray(labels),
            cameras=None,
            groups=None if groups is None else np.asarray(groups),
        )

    query = np.concatenate([[[0.0, 0.0]], rng.normal(5, 1, (3, 2))])
    gallery = np.concatenate([query[:1] + 0.001, query[:1] - 0.001, rng.normal(5, 1, (8, 2))])
    found = {}
    for grouped in (False, True):
        features = {
            "trainval": split(rng.normal(-20, 1, (6, 2)), [0, 0, 0, 1, 1, 1], None),
            "query": split(query, [0, 1, 1, 1], [3, 20, 21, 22] if grouped else None),
            "gallery": split(gallery, [0, 0, *[1] * 8], [3, 4, *range(5, 13)] if grouped else None),
        }
        context = SimpleNamespace(
            config=SimpleNamespace(
                evaluate=SimpleNamespace(protocol="query_gallery", reid_metric="euclidean")
            ),
            features=features,
            datamodule=Pixels(),
        )
        method = audit.Audit()
        method.compute(context)  # type: ignore[arg-type]
        found[grouped] = {
            (leak["first"]["split"], leak["first"]["index"], leak["second"]["index"])
            for leak in method._lists["leakage"]
            if leak["second"]["split"] == "gallery"
        }
    assert found[False] == {("query", 0, 0), ("query", 0, 1)}
    assert found[True] == {("query", 0, 1)}  # gallery 0 is of the query's own sequence
