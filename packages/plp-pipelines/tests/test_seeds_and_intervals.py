"""Seeds on the command line, a failed seed, and intervals in the printed table and report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plp_pipelines import ConfigError, RunError, format_metrics_table, seeds_of, train_seeds

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("seeds", "repeats", "expected"),
    [("0,1,2", None, [0, 1, 2]), (" 5, 3", None, [5, 3]), (None, "3", [0, 1, 2])],
)
def test_seeds_of(seeds, repeats, expected):
    assert seeds_of(seeds, repeats) == expected


@pytest.mark.parametrize(
    ("seeds", "repeats", "message"),
    [
        (None, None, "give --seeds 0,1,2 or --repeats N"),
        ("0", "2", "give --seeds 0,1,2 or --repeats N"),
        ("0,-1", None, "'-1' is not a non-negative integer"),
        ("0,0", None, "repeats a seed"),
        (None, "0", "--repeats '0' is not a positive integer"),
        (None, "two", "--repeats 'two' is not a positive integer"),
    ],
)
def test_bad_seeds(seeds, repeats, message):
    with pytest.raises(ConfigError, match=message):
        seeds_of(seeds, repeats)


def test_a_failed_seed_stops_the_series_and_keeps_the_finished_runs(tmp_path, monkeypatch):
    import sys
    from types import SimpleNamespace

    trained = []

    def fake_train(config, **kwargs):
        if config.seed == 1:
            raise RunError("the data went away")
        run_dir = tmp_path / "runs" / config.name / f"run-{config.seed}"
        run_dir.mkdir(parents=True)
        trained.append(config.seed)
        metrics = {"reid": {"mAP": 0.5 + config.seed, "ci": {"mAP": [0.4, 0.6]}}}
        return SimpleNamespace(run_dir=run_dir, metrics=metrics)

    # A stand-in for the Lightning module train_seeds imports (importing Lightning takes long).
    monkeypatch.setitem(sys.modules, "plp_pipelines._train", SimpleNamespace(train=fake_train))
    with pytest.raises(RunError, match=r"seed 1 failed \(1 finished run\(s\) kept, summary in "):
        train_seeds(ROOT / "configs" / "digits.toml", [0, 1, 2], runs_root=tmp_path / "runs")
    assert trained == [0]  # seed 2 never started
    (summary,) = (tmp_path / "runs" / "digits").glob("*-seeds/summary.json")
    written = json.loads(summary.read_text())
    assert written["seeds"] == [0]
    assert written["metrics"]["reid mAP"]["mean"] == 0.5
    assert written["metrics"]["reid mAP"]["t_interval"] is None  # one run: no interval
    assert written["runs"][0]["ci"] == {"reid mAP": [0.4, 0.6]}


def test_configs_are_checked_before_the_first_seed_trains(tmp_path):
    with pytest.raises(ConfigError, match="no key 'epoch' in trainer"):
        train_seeds(
            ROOT / "configs" / "digits.toml", [0, 1], overrides=["trainer.epoch=1"],
            runs_root=tmp_path,
        )  # fmt: skip
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_the_printed_table_shows_each_interval():
    metrics = {
        "reid": {"mAP": 0.873, "rank-1": 0.9, "ci": {"mAP": [0.861, 0.885]}},
        "clustering": {"nmi": 0.5},
    }
    assert format_metrics_table(metrics).splitlines() == [
        "reid rank-1     0.9000",  # no interval given: none shown
        "reid mAP        0.8730 [0.8610, 0.8850]",
        "clustering NMI  0.5000",
    ]


def test_compare_refuses_a_method_and_a_run_not_evaluated(tmp_path):
    from plp_pipelines import compare_runs

    with pytest.raises(ConfigError, match="--method 'clustering' cannot be compared; expected"):
        compare_runs(tmp_path, tmp_path, method="clustering")
    run = tmp_path / "digits" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.toml").write_text((ROOT / "configs" / "digits.toml").read_text())
    with pytest.raises(
        RunError, match=r"features/test\.npz not found: run `invoke evaluate` first"
    ):
        compare_runs(run, run, runs_root=tmp_path)


def test_a_negative_bootstrap_count_is_refused():
    from plp_pipelines import load_config

    with pytest.raises(ConfigError, match=r"evaluate\.bootstrap: Input should be greater than or"):
        load_config(ROOT / "configs" / "digits.toml", ["evaluate.bootstrap=-5"])
    assert (
        load_config(ROOT / "configs" / "digits.toml", ["evaluate.bootstrap=0"]).evaluate.bootstrap
        == 0
    )


def test_reid_breakdowns_per_category_and_class_against_the_subsets():
    """The reid method's per-category metrics and class table equal reid_metrics run on each
    category's queries alone, and the report names them."""
    from types import SimpleNamespace

    import numpy as np

    import plp_eval
    from plp_pipelines._methods.reid import Reid

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(6), 8)
    features = rng.normal(size=(6, 4))[labels] + rng.normal(size=(48, 4))
    test = SimpleNamespace(features=features, labels=labels, cameras=None)
    categories = ["even" if label % 2 == 0 else "odd" for label in labels]
    datamodule = SimpleNamespace(split_categories=lambda split: categories)
    config = SimpleNamespace(evaluate=SimpleNamespace(reid_metric="euclidean"))
    context = SimpleNamespace(
        datamodule=datamodule, config=config, data=SimpleNamespace(class_names=list("abcdef")),
        query_split="test", device=None,
    )  # fmt: skip
    method = Reid()
    method._result = plp_eval.reid_metrics(
        features, labels, features, labels, query_in_gallery=True
    )
    found = method._breakdowns(context, test, test)
    assert "camera_map" not in found
    for name in ("even", "odd"):
        rows = np.array([c == name for c in categories])
        alone = plp_eval.reid_metrics(  # the query itself left out as its own group
            features[rows], labels[rows], features, labels,
            query_groups=np.flatnonzero(rows), gallery_groups=np.arange(48),
        )  # fmt: skip
        assert found["per_category"][name]["mAP"] == pytest.approx(alone.mean_average_precision)
        assert found["per_category"][name]["num_queries"] == 24
    classes = found["per_class_ap"]
    worst = classes["worst"]
    assert classes["num_classes"] == 6 and [row["mAP"] for row in worst] == sorted(
        row["mAP"] for row in worst
    )
    assert {row["name"] for row in worst} == set("abcdef")
    report = "\n".join(method.report({"reid": {"mAP": 0.5, **found}}))
    assert "### By category" in report and "| even | 24 |" in report


def test_the_report_says_how_each_interval_was_made():
    import doctest

    from plp_pipelines import _intervals
    from plp_pipelines._methods.accuracy import Accuracy
    from plp_pipelines._methods.reid import Reid

    settings = {"method": "percentile bootstrap over query identities", "resamples": 200}
    accuracy = {"top-1": 0.9, "num_identities": 10, "bootstrap": {**settings, "seed": 3}}
    assert Accuracy().report({"accuracy": accuracy})[0] == (
        "- accuracy intervals: 95% percentile bootstrap over query identities (10 identities, "
        "200 resamples, seed 3); the identities are the test classes (rough with few classes)"
    )
    skipped = {"mAP": 1.0, "ci": None, "ci_skipped": "1 identity with a valid query: no interval"}
    assert "- intervals: 1 identity with a valid query: no interval" in Reid().report(
        {"reid": skipped}
    )
    assert Accuracy().report({"accuracy": {"top-1": 0.9}}) == []
    assert doctest.testmod(_intervals, raise_on_error=True).attempted >= 2
