"""Evaluation methods are a registry: one file adds a method to configs, CLI, metrics, report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from plp_pipelines import (
    METHODS,
    EvaluationContext,
    EvaluationMethod,
    available_methods,
    check_methods,
    load_config,
)
from plp_pipelines._config import validate_config
from plp_pipelines._errors import ConfigError
from plp_pipelines._methods import build_method, default_methods, query_gallery_splits
from plp_pipelines._report import format_metrics_table, headline_metrics

ROOT = Path(__file__).resolve().parents[3]


class TestCount(EvaluationMethod):
    """Counts the test images per label: a method defined outside plp, as a user would."""

    plots = ("label_counts",)
    headline = (("label_count", "classes", "test classes"),)

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        labels = context.features["test"].labels
        return {"label_count": {"classes": len(set(labels.tolist())), "images": len(labels)}}

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        path = plot_path("label_counts.txt")
        path.write_text(str(len(context.features["test"].labels)))
        return {"label_counts": path}

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        return ["## Label count", "", f"{metrics['label_count']['images']} test images", ""]


@pytest.fixture
def registered() -> Iterator[str]:
    """Register TestCount as ``label_count`` for one test (the registry is process-wide)."""
    available_methods()  # load the built-in ones first
    METHODS.register("label_count", order=90, default=False)(TestCount)
    try:
        yield "label_count"
    finally:
        del METHODS._entries["label_count"]


def test_the_built_in_methods_and_their_order() -> None:
    assert available_methods()[:4] == ["accuracy", "reid", "verification", "clustering"]
    assert default_methods() == ["accuracy", "reid", "verification", "clustering"]
    assert build_method("reid").sections == ("reid", "reid_reranked")
    assert build_method("accuracy").sections == ("accuracy",)
    assert query_gallery_splits("query_gallery") == ("query", "gallery")


def test_unknown_methods_are_one_line_in_both_forms() -> None:
    with pytest.raises(ConfigError, match=r"^unknown method 'reidd'; available: .*did you mean"):
        check_methods(["reid", "reidd"])
    with pytest.raises(ConfigError, match=r"^--method 'x' is not a method; expected one of .*all$"):
        check_methods(["x"], flag="--method", extra=("all",))


def test_a_registered_method_reaches_configs_tables_and_reports(registered: str) -> None:
    assert registered in available_methods() and registered not in default_methods()
    config = validate_config({"evaluate": {"methods": ["reid", registered]}}, "x.toml")
    assert config.evaluate.methods == ["reid", registered]
    metrics = {"reid": {"mAP": 0.5}, registered: {"classes": 3, "images": 9}}
    assert headline_metrics(metrics) == [("reid mAP", 0.5), ("test classes", 3.0)]
    assert headline_metrics(metrics, ["reid"]) == [("reid mAP", 0.5)]
    assert "test classes" in format_metrics_table(metrics)


@pytest.mark.slow
def test_evaluate_runs_a_registered_method(registered: str, tmp_path: Path) -> None:
    from plp_pipelines import evaluate, train

    config = load_config(
        ROOT / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false", "evaluate.umap=false"],
    )
    run = train(config, runs_root=tmp_path, progress_bar=False).run_dir
    metrics = evaluate(run, methods=["accuracy", registered], runs_root=tmp_path)
    written = json.loads((run / "metrics.json").read_text())
    assert written[registered] == {
        "classes": 10,
        "images": 450,
        "checkpoint": metrics["checkpoint"],
        "weights_sha256": metrics["weights_sha256"],
    }
    assert (run / written["plots"]["label_counts"]).read_text() == "450"
    assert "## Label count" in (run / "report.md").read_text()
    # Re-evaluating another method keeps this one's results (same checkpoint), plots included.
    evaluate(run, methods=["clustering"], runs_root=tmp_path)
    again = json.loads((run / "metrics.json").read_text())
    assert again[registered] == written[registered]
    assert again["plots"]["label_counts"] == written["plots"]["label_counts"]
