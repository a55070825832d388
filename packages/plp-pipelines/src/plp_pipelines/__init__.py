"""plp-pipelines: train, test, explain, graph, align, export, embed, index, search; configs; runs.

Configs, errors and run bookkeeping import no torch; the pipelines themselves (``train``,
``evaluate``, ...) are imported on first use, so that a command-line error in a config is
reported in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from plp_pipelines._config import Config, load_config
from plp_pipelines._errors import (
    ConfigError,
    PlpError,
    RunError,
    StoppedError,
    TrainingDivergedError,
    TrainingStoppedError,
)
from plp_pipelines._methods import (
    METHODS,
    EvaluationContext,
    EvaluationMethod,
    available_methods,
    check_methods,
)
from plp_pipelines._report import format_metrics_table
from plp_pipelines._runs import RUNS_ROOT, newest_run
from plp_pipelines._seeds import SeedRuns, seeds_of, summary_table, train_seeds

if TYPE_CHECKING:
    from plp_pipelines._align import align
    from plp_pipelines._compare import ComparedRuns, compare_runs
    from plp_pipelines._cross_domain import evaluate_datasets
    from plp_pipelines._embed import EmbedResult, Reading, embed
    from plp_pipelines._evaluate import evaluate
    from plp_pipelines._explain import explain
    from plp_pipelines._export import ExportResult, export
    from plp_pipelines._features import SplitFeatures, extract_features, load_features
    from plp_pipelines._graph import graph
    from plp_pipelines._pair_explain import explain_pairs
    from plp_pipelines._search import IndexResult, QueryResult, SearchResult, index, search
    from plp_pipelines._train import TrainResult, resume, train

__all__ = [
    # pipelines
    "align",
    "compare_runs",
    "evaluate",
    "evaluate_datasets",
    "explain",
    "explain_pairs",
    "export",
    "graph",
    "resume",
    "train",
    "train_seeds",
    "ComparedRuns",
    "ExportResult",
    "SeedRuns",
    "TrainResult",
    "seeds_of",
    "summary_table",
    # your own images: embed, index, search
    "embed",
    "index",
    "search",
    "Reading",
    "EmbedResult",
    "IndexResult",
    "QueryResult",
    "SearchResult",
    # evaluation methods
    "METHODS",
    "EvaluationContext",
    "EvaluationMethod",
    "available_methods",
    "check_methods",
    # configs and runs
    "Config",
    "RUNS_ROOT",
    "load_config",
    "newest_run",
    # features and reports
    "SplitFeatures",
    "extract_features",
    "format_metrics_table",
    "load_features",
    # errors
    "ConfigError",
    "PlpError",
    "RunError",
    "StoppedError",
    "TrainingDivergedError",
    "TrainingStoppedError",
]

# Public names whose modules import torch / Lightning, loaded on first access.
_LAZY = {
    "align": "_align",
    "compare_runs": "_compare",
    "ComparedRuns": "_compare",
    "embed": "_embed",
    "EmbedResult": "_embed",
    "Reading": "_embed",
    "index": "_search",
    "search": "_search",
    "IndexResult": "_search",
    "QueryResult": "_search",
    "SearchResult": "_search",
    "explain": "_explain",
    "explain_pairs": "_pair_explain",
    "export": "_export",
    "ExportResult": "_export",
    "graph": "_graph",
    "evaluate": "_evaluate",
    "evaluate_datasets": "_cross_domain",
    "resume": "_train",
    "train": "_train",
    "TrainResult": "_train",
    "SplitFeatures": "_features",
    "extract_features": "_features",
    "load_features": "_features",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"plp_pipelines.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'plp_pipelines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
