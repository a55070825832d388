"""plp-pipelines: the train, test, explain, graph and align recipes; configs; run directories."""

from plp_pipelines._config import Config, load_config
from plp_pipelines._errors import ConfigError, PlpError, RunError
from plp_pipelines._evaluate import evaluate
from plp_pipelines._features import SplitFeatures, extract_features, load_features
from plp_pipelines._report import format_metrics_table
from plp_pipelines._runs import newest_run
from plp_pipelines._train import TrainResult, train

__all__ = [
    # pipelines
    "evaluate",
    "train",
    "TrainResult",
    # configs and runs
    "Config",
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
]
